/**
 * Protocol selection and HTTP/2 session tracking.
 *
 * One listener accepts every connection; a connection is then handed to a
 * protocol engine with `engine.emit('connection', socket)`:
 *   - cleartext `auto`: the first 24 bytes decide — the HTTP/2 connection
 *     preface (h2c with prior knowledge) or anything else (HTTP/1.1). The
 *     bytes read are unshifted back before the hand-off;
 *   - TLS: the ALPN result decides (`h2` or `http/1.1`).
 * HTTP/3 will arrive on its own UDP listener (`h3`), beside this one.
 */
import {
  constants,
  type Http2Server,
  Http2ServerRequest,
  Http2ServerResponse,
  type Http2Stream,
  type IncomingHttpHeaders,
  type ServerHttp2Session,
  type ServerHttp2Stream,
} from 'node:http2';
import type { Socket } from 'node:net';
import { type ErrorCode, HypError } from '../../../supervisor/errors.js';
import { internalMissing } from '../node-internals.js';
import { installSlices, type OverrunListener } from './slices.js';
import type { StreamStallWatch } from './stream-stall.js';

export type Protocol = 'http1' | 'http2' | 'auto';

/** ALPN ids offered over TLS, in server preference order. */
export function alpnFor(protocol: Protocol): string[] {
  if (protocol === 'http1') return ['http/1.1'];
  if (protocol === 'http2') return ['h2'];
  return ['h2', 'http/1.1'];
}

/** RFC 9113 §3.4: the client connection preface. */
export const h2Preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n', 'latin1');

/**
 * Read just enough of a fresh cleartext socket to tell h2c prior knowledge
 * from HTTP/1.x, put the bytes back, and call `done`. A socket that sends
 * nothing conclusive within `timeoutMs` is destroyed (slowloris before the
 * first request line). The time is counted from the connection, not from the
 * last byte: a client that trickles the preface a byte at a time is not
 * given the timeout again for each byte.
 */
export function sniffPreface(
  socket: Socket,
  timeoutMs: number,
  done: (socket: Socket, h2: boolean) => void,
): void {
  let seen: Buffer | undefined;
  const timer = timeoutMs > 0 ? setTimeout(destroy, timeoutMs, socket).unref() : undefined;
  const finish = (h2: boolean) => {
    socket.off('data', onData);
    socket.off('error', onError);
    socket.off('close', onClose);
    clearTimeout(timer);
    socket.pause();
    if (seen) socket.unshift(seen);
    done(socket, h2);
  };
  const onData = (chunk: Buffer) => {
    seen = seen ? Buffer.concat([seen, chunk]) : chunk;
    const n = Math.min(seen.length, h2Preface.length);
    if (seen.compare(h2Preface, 0, n, 0, n) !== 0) finish(false);
    else if (n === h2Preface.length) finish(true);
  };
  // A reset before the engine owns the socket must not become an uncaught 'error'.
  const onError = () => socket.destroy();
  const onClose = () => clearTimeout(timer);
  socket.on('error', onError);
  socket.on('data', onData);
  socket.once('close', onClose);
}

function destroy(socket: Socket): void {
  socket.destroy();
}

export interface Http2SessionLimits {
  /** Close (GOAWAY) a session that has had no open request for this long; 0: never. */
  idleTimeoutMs: number;
  /** A request whose body has not fully arrived after this long is answered 408 (or reset); 0: never. */
  requestTimeoutMs: number;
  /**
   * Close (GOAWAY) a session whose first request has not begun this long
   * after it was set up (`headers_timeout`, as a fresh HTTP/1.1 connection
   * gets): a client that sends the preface and nothing else is not held
   * for the whole idle timeout. 0 or absent: never.
   */
  firstRequestTimeoutMs?: number;
  /** `send_timeout` for streams starved of flow-control window; absent: none. */
  sendStalls?: StreamStallWatch | undefined;
  /** A response body went past its own `content-length`; its stream was reset (slices.ts). */
  onOverrun?: OverrunListener | undefined;
  /**
   * nghttp2 ended a session for what its peer sent (a protocol error, a
   * PING/SETTINGS/RST flood: ERR_HTTP2_ERROR), Node did (ERR_HTTP2_*), or
   * the sweep did (too many streams refused before any handler).
   * The session is destroyed either way; this only reports it.
   */
  onSessionError?: ((err: NodeJS.ErrnoException, session: ServerHttp2Session) => void) | undefined;
}

/** Per session: requests open on it, and since when it has had none (ms since epoch). */
interface SessionUse {
  open: number;
  idleSince: number;
  /** No request has begun on it yet. */
  fresh: boolean;
  /** Streams Node handed over ('stream' or 'request'), whether or not a handler ran. */
  begun: number;
  /** Streams refused before any handler when the current `refusedWindowMs` began, and when it began. */
  refusedBefore: number;
  refusedSince: number;
  /** Bytes Node may still count against the session's memory budget after their streams closed (slices.ts). */
  abandoned: number;
  /** Its server's `onOverrun`. */
  onOverrun: OverrunListener | undefined;
}

/**
 * How much of Node's `maxSessionMemory` (10 MiB by default) a session may
 * lose to cancelled answers before it is closed with GOAWAY: new requests
 * then go to a fresh connection instead of being refused.
 */
const abandonedBudget = 4 * 1024 * 1024;

/** Node lost count of up to `bytes` of the session's memory (see slices.ts). */
function chargeAbandoned(session: TrackedSession, bytes: number): void {
  const use = session[kUse];
  if (use === undefined) return;
  use.abandoned += bytes;
  if (use.abandoned >= abandonedBudget && !session.closed) session.close();
}

/** A response on the session overran its `content-length` (slices.ts): its server is told. */
function reportOverrun(stream: ServerHttp2Stream, announced: number, sent: number): void {
  (stream.session as TrackedSession | undefined)?.[kUse]?.onOverrun?.(stream, announced, sent);
}

/** One request in flight whose response had not ended when its handler returned. */
interface Pending {
  readonly owner: Http2Sessions;
  readonly use: SessionUse;
  readonly timer: NodeJS.Timeout | undefined;
}

const kUse = Symbol('hyp.h2.use');
const kPending = Symbol('hyp.h2.pending');
type TrackedSession = ServerHttp2Session & { [kUse]?: SessionUse };
type TrackedResponse = Http2ServerResponse & { [kPending]?: Pending | undefined };
type TrackedStream = ServerHttp2Stream & { [kPending]?: Pending | undefined };
const onStreamClose = onResponseClose;

/** What Node's compat dispatch does for CONNECT and `Expect` (and then 'request'). */
function compatDispatch(
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  rawHeaders: string[],
  handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
): void {
  const req = new Http2ServerRequest(stream, headers, {}, rawHeaders);
  const res = new Http2ServerResponse(stream);
  if (headers[':method'] === 'CONNECT') {
    const refusal = new HypError('HYP_E_METHOD_NOT_ALLOWED', {
      method: 'CONNECT',
      path: headers[':authority'] ?? '',
    });
    refuse(res, constants.HTTP_STATUS_METHOD_NOT_ALLOWED, refusal.code, refusal.message);
  } else if (headers.expect === '100-continue') {
    res.writeContinue();
    handler(req, res);
  } else {
    const refusal = new HypError('HYP_E_EXPECTATION_FAILED', {
      expect: JSON.stringify(String(headers.expect)),
    });
    refuse(res, refusal.status, refusal.code, refusal.message);
  }
}

/** A JSON error answer to a request no handler sees (as the app's own: `{"error":{code,message}}`). */
function refuse(res: Http2ServerResponse, status: number, code: ErrorCode, message: string): void {
  const body = JSON.stringify({ error: { code, message } });
  res.writeHead(status, {
    'content-type': 'application/json; charset=utf-8',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** The stream closes right after; its 'close' does the accounting. */
function ignoreStreamError(): void {}

function onResponseClose(this: TrackedResponse | TrackedStream): void {
  const p = this[kPending];
  if (p === undefined) return;
  this[kPending] = undefined;
  if (p.timer) clearTimeout(p.timer);
  p.owner.requestDone(p.use);
}

/** A stream handed over by Node, waiting for the end of the read it came in (`Http2Sessions.dispatchQueued`). */
interface QueuedStream {
  stream: ServerHttp2Stream;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) => void;
  /** CONNECT and `Expect` requests: Node's compat objects, then this (`Http2Sessions.track`). */
  compat: ((req: Http2ServerRequest, res: Http2ServerResponse) => void) | undefined;
  use: SessionUse;
  timer: NodeJS.Timeout | undefined;
}

/**
 * Counts HTTP/2 sessions (connections) and requests (streams), closes
 * sessions idle for `idleTimeoutMs`, and drains: GOAWAY, then let open
 * streams finish.
 *
 * Idle means no open request, as Go's `IdleTimeout`: a session holding a
 * quiet long-lived stream (server-sent events) is not idle; one that only
 * pings is. One sweep timer checks every session, so a request costs two
 * counter updates and no timer work (Node's `session.setTimeout` re-arms a
 * timer on every frame: ~3 % of an h2c hello-world).
 */
export class Http2Sessions {
  private readonly sessions = new Set<TrackedSession>();
  private streams = 0;
  private draining = false;
  private idleWaiters: Array<() => void> = [];
  private limits: Http2SessionLimits = { idleTimeoutMs: 0, requestTimeoutMs: 0 };
  private sweep: NodeJS.Timeout | undefined;
  /** Streams of the current read, waiting for `dispatchQueued`. */
  private queued: QueuedStream[] = [];

  attach(server: Http2Server, limits: Http2SessionLimits): void {
    this.limits = limits;
    // Node's 'stream' listeners run in order: this one before any handler's first write.
    server.once('stream', (stream: ServerHttp2Stream) =>
      installSlices(stream, chargeAbandoned, reportOverrun),
    );
    server.on('session', (session: TrackedSession) => {
      const use: SessionUse = {
        open: 0,
        idleSince: Date.now(),
        fresh: true,
        begun: 0,
        refusedBefore: 0,
        refusedSince: Date.now(),
        abandoned: 0,
        onOverrun: limits.onOverrun,
      };
      session[kUse] = use;
      this.sessions.add(session);
      const firstMs = limits.firstRequestTimeoutMs ?? 0;
      const first =
        firstMs > 0
          ? setTimeout(() => {
              if (use.fresh && !session.closed) session.close();
            }, firstMs).unref()
          : undefined;
      session.once('close', () => {
        clearTimeout(first);
        this.sessions.delete(session);
        if (this.sessions.size === 0) this.stopSweep();
        this.checkIdle();
      });
      // An errored session is destroyed and closes; nothing to rethrow.
      const onSessionError = limits.onSessionError;
      session.on('error', (err: NodeJS.ErrnoException) => onSessionError?.(err, session));
      this.startSweep();
      if (this.draining) setImmediate(() => session.close());
    });
  }

  /**
   * `handler` wrapped so every request it serves is counted, as the one
   * 'request' listener of the HTTP/2 engine. `counted`: its streams are
   * already counted as begun (`trackStream`'s compat requests).
   */
  track(handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void, counted = false) {
    return (req: Http2ServerRequest, res: Http2ServerResponse): void => {
      const stream = req.stream;
      const use = (stream.session as TrackedSession | undefined)?.[kUse];
      if (use !== undefined && !counted) use.begun++;
      if (use === undefined) {
        handler(req, res);
        return;
      }
      this.streams++;
      use.open++;
      use.fresh = false;
      const timer = this.requestTimer(stream);
      try {
        handler(req, res);
      } finally {
        // Answered synchronously (the common case): done now, no listener.
        if (res.writableEnded && timer === undefined) this.requestDone(use);
        else {
          (res as TrackedResponse)[kPending] = { owner: this, use, timer };
          res.on('close', onResponseClose);
        }
      }
    };
  }

  /**
   * The engine's 'stream' listener: every request counted as in `track`,
   * served by `onStream` on the bare stream. CONNECT and `Expect` requests
   * get Node's compat objects and answers, and then `handler`.
   */
  trackStream(
    onStream: (stream: ServerHttp2Stream, headers: IncomingHttpHeaders, rawHeaders: string[]) => void,
    handler: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  ) {
    const compat = this.track(handler, true);
    return (
      stream: ServerHttp2Stream,
      headers: IncomingHttpHeaders,
      _flags: number,
      rawHeaders: string[],
    ): void => {
      // A peer's RST_STREAM with an error code (or a protocol error) makes the
      // stream emit 'error', on a later tick even when it is already destroyed
      // here; with no listener, that would kill the worker. Node's compat
      // request listens for the same reason.
      stream.on('error', ignoreStreamError);
      // Node emits 'stream' on a later tick than it parsed the HEADERS: a
      // RST_STREAM read in between has already destroyed the stream (and
      // detached its session). Nothing to serve; Node's compat response
      // would throw ERR_HTTP2_INVALID_STREAM at `writeContinue`, uncaught.
      if (stream.destroyed || stream.closed) return;
      const use = (stream.session as TrackedSession | undefined)?.[kUse];
      const viaCompat = headers[':method'] === 'CONNECT' || headers.expect !== undefined;
      if (use === undefined) {
        if (viaCompat) compatDispatch(stream, headers, rawHeaders, compat);
        else onStream(stream, headers, rawHeaders);
        return;
      }
      use.begun++;
      let timer: NodeJS.Timeout | undefined;
      // Compat requests are counted by `track` when they are dispatched.
      if (!viaCompat) {
        this.streams++;
        use.open++;
        use.fresh = false;
        timer = this.requestTimer(stream);
      }
      this.queued.push({
        stream,
        headers,
        rawHeaders,
        use,
        timer,
        onStream,
        compat: viaCompat ? compat : undefined,
      });
      if (this.queued.length === 1) setImmediate(this.dispatchQueued);
    };
  }

  /**
   * Streams reach their handler once Node has worked through the whole read
   * they arrived in (one immediate per read, not per stream). Node hands a
   * stream over once its HEADERS frame is parsed (on Node 26 a tick later),
   * not after the whole read; a RST_STREAM right behind it in the same read
   * (rapid reset, CVE-2023-44487: HEADERS + RST_STREAM pairs, thousands per
   * connection before nghttp2's reset limit ends it) has by then destroyed
   * the stream, and no handler runs for it. A handler
   * that throws does not keep the others in the read from theirs; the first
   * error is rethrown afterwards, as the 'stream' event would have.
   */
  private readonly dispatchQueued = (): void => {
    const queued = this.queued;
    this.queued = [];
    let failure: { err: unknown } | undefined;
    for (const q of queued) {
      try {
        this.dispatch(q);
      } catch (err) {
        failure ??= { err };
      }
    }
    if (failure !== undefined) throw failure.err;
  };

  private dispatch({ stream, headers, rawHeaders, onStream, compat, use, timer }: QueuedStream): void {
    const gone = stream.destroyed || stream.closed;
    if (compat !== undefined) {
      if (!gone) compatDispatch(stream, headers, rawHeaders, compat);
      return;
    }
    if (gone) {
      clearTimeout(timer);
      this.requestDone(use);
      return;
    }
    try {
      onStream(stream, headers, rawHeaders);
    } finally {
      if (stream.writableEnded && timer === undefined) this.requestDone(use);
      else {
        (stream as TrackedStream)[kPending] = { owner: this, use, timer };
        stream.on('close', onStreamClose);
      }
    }
  }

  /** As HTTP/1.1's requestTimeout: the time to receive the whole request (none for a bodiless one). */
  private requestTimer(stream: Http2Stream): NodeJS.Timeout | undefined {
    const { requestTimeoutMs } = this.limits;
    if (requestTimeoutMs <= 0 || stream.endAfterHeaders) return undefined;
    const timer = setTimeout(expire, requestTimeoutMs, stream);
    timer.unref();
    stream.once('end', () => clearTimeout(timer));
    return timer;
  }

  /** @internal A request's response ended (or its stream closed). */
  requestDone(use: SessionUse): void {
    this.streams--;
    if (--use.open === 0) use.idleSince = Date.now();
  }

  get connections(): number {
    return this.sessions.size;
  }

  get inflight(): number {
    return this.streams;
  }

  /** GOAWAY on every session; each closes once its open streams are done. */
  startDrain(): void {
    if (this.draining) return;
    this.draining = true;
    for (const s of this.sessions) s.close();
  }

  whenIdle(): Promise<void> {
    if (this.sessions.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  /**
   * One timer for every session: closes those idle for `idleTimeoutMs`,
   * resets their streams starved for `send_timeout` (stream-stall.ts), and
   * destroys those nghttp2 has ended. On Node 20, a session that answered a
   * peer's connection error with GOAWAY stops reading its socket and emits
   * nothing, so it would hold its socket (and a `max_connections` slot)
   * until the idle timeout, even after the peer has gone; Node 22+ destroys
   * it itself. Such a session (ended, yet neither side closed it) is
   * reported to `onSessionError` as Node 22+ reports it.
   */
  private startSweep(): void {
    if (this.sweep !== undefined) return;
    const idleMs = this.limits.idleTimeoutMs;
    // Sessions close between idleMs and idleMs + one tick after their last request.
    const tickMs = idleMs > 0 ? Math.max(10, Math.min(1000, Math.floor(idleMs / 10))) : 1000;
    const stalls = this.limits.sendStalls;
    let stallsChecked = Date.now();
    this.sweep = setInterval(() => {
      const now = Date.now();
      const checkStalls = stalls !== undefined && now - stallsChecked >= stalls.every;
      if (checkStalls) stallsChecked = now;
      for (const s of this.sessions) {
        if (s.destroyed) continue;
        if (ended(s)) {
          if (!s.closed) this.limits.onSessionError?.(endedSilently, s);
          s.destroy();
          continue;
        }
        if (checkStalls) stalls.check(s, now);
        const use = s[kUse]!;
        if (refusedTooMany(s, use, now)) continue;
        if (idleMs > 0 && !this.draining && use.open === 0 && now - use.idleSince >= idleMs && !s.closed)
          s.close();
      }
    }, tickMs);
    this.sweep.unref();
  }

  private stopSweep(): void {
    clearInterval(this.sweep);
    this.sweep = undefined;
  }

  private checkIdle(): void {
    if (this.sessions.size !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /**
   * The drain deadline. A session with streams still open ends with GOAWAY
   * INTERNAL_ERROR, so their clients see them fail: with NO_ERROR, a client
   * takes a stream cut mid-answer for a whole one (Node's ends it cleanly).
   */
  destroyAll(): void {
    for (const s of this.sessions) {
      // With no error, Node sends NO_ERROR whatever the code (its 'error' is
      // swallowed by the session's listener).
      if ((s[kUse]?.open ?? 0) > 0) s.destroy(drainCut, constants.NGHTTP2_INTERNAL_ERROR);
      else s.destroy();
    }
  }
}

const drainCut = new Error('streams still open at the drain deadline');

/**
 * Node 20: nghttp2 sent GOAWAY for the peer's connection error (a rapid
 * reset, a frame on a closed stream) and Node emitted no error; Node 22+
 * reports the same end as ERR_HTTP2_ERROR.
 */
const endedSilently: NodeJS.ErrnoException = Object.assign(
  new Error('nghttp2 sent GOAWAY for a connection error'),
  { code: 'ERR_HTTP2_ERROR' },
);

/**
 * How many of a peer's streams may end before they reach a handler, refused
 * by Node or nghttp2 (a header block over `max_header_size`, a malformed
 * request, one over `max_concurrent_streams`), within `refusedWindowMs`,
 * before its session is cut. None of these reach JavaScript, so nothing
 * else counts them: nghttp2 must still decode each header block (up to 8
 * CONTINUATION frames) to keep HPACK in step, and a peer refused over and
 * over kept its connection (Node 26). A rate, not a total: a long-lived
 * session of a client that now and then races the stream limit or sends
 * an oversized header is not cut for what it did hours apart.
 */
const refusedLimit = 100;
const refusedWindowMs = 10_000;
const refusedFlood = new Error(
  `${refusedLimit} streams refused before any handler within ${refusedWindowMs / 1000} s (headers over max_header_size, malformed, or over max_concurrent_streams)`,
);

/**
 * The peer opened `refusedLimit` more streams than Node handed over within
 * the current window (the sweep's checks start a new one every
 * `refusedWindowMs`): GOAWAY ENHANCE_YOUR_CALM and the session is destroyed
 * (its 'error' is logged as any other session error). Stream ids after a
 * GOAWAY of ours are ignored by nghttp2 and never counted, so a closing
 * session is left alone.
 */
function refusedTooMany(session: ServerHttp2Session, use: SessionUse, now: number): boolean {
  if (session.closed) return false;
  const refused = Math.ceil((session.state.lastProcStreamID ?? 0) / 2) - use.begun;
  if (refused - use.refusedBefore >= refusedLimit) {
    session.destroy(refusedFlood, constants.NGHTTP2_ENHANCE_YOUR_CALM);
    return true;
  }
  if (now - use.refusedSince >= refusedWindowMs) {
    use.refusedBefore = refused;
    use.refusedSince = now;
  }
  return false;
}

/** Node's native session (`session[kHandle]`), which it does not expose. */
interface NativeSession {
  hasPendingData?: () => boolean;
}
let kHandle: symbol | undefined;

/**
 * nghttp2 wants neither to read nor to write: it has sent a GOAWAY for a
 * connection error, or GOAWAY has gone either way and no stream is left.
 * Nothing more can happen on the session.
 */
function ended(session: ServerHttp2Session): boolean {
  kHandle ??= Object.getOwnPropertySymbols(session).find((s) => s.description === 'kHandle');
  const handle =
    kHandle === undefined
      ? undefined
      : (session as unknown as Record<symbol, NativeSession | undefined>)[kHandle];
  // a destroyed session has dropped its handle: that is no missing internal
  if (typeof handle?.hasPendingData !== 'function') {
    if (!session.destroyed) missingPendingData();
    return false;
  }
  return !handle.hasPendingData();
}

function missingPendingData(): void {
  internalMissing(
    'Http2Session[kHandle].hasPendingData',
    'closing HTTP/2 sessions that can do nothing more',
    'such a session is closed by its idle timeout instead',
  );
}

function expire(stream: Http2Stream): void {
  if (stream.closed || stream.destroyed) return;
  const server = stream as Http2Stream & {
    headersSent?: boolean;
    respond?: (h: Record<string, string | number>) => void;
  };
  if (!server.headersSent && typeof server.respond === 'function') {
    server.respond({ ':status': 408, 'content-length': 0 });
    stream.end();
  } else {
    stream.close(constants.NGHTTP2_CANCEL);
  }
}
