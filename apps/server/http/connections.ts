/**
 * HTTP/1.1 connection tracking, the keep-alive timeout and race-free drain.
 *
 * Node's own `server.close()` calls `closeIdleConnections()`, which destroys
 * a keep-alive socket at once, racing a next request the client has already
 * sent, so the client sees a reset. Here, once drain starts, a socket counts
 * as idle only when no request is in flight, Node's parser has not begun a
 * next message on it, AND no byte has arrived since drain started or since
 * its last response finished (`socket.bytesRead` moves as soon as a partial
 * request lands). During drain a response carries `Connection: close` when
 * its head goes out, if it answers the newest request on its socket: a
 * pipelined request queued behind it is answered, never dropped with the
 * socket. Sockets that stay idle for `idleGraceMs` are ended; the rest close
 * themselves after their last response.
 *
 * Outside drain a request costs two counter updates and three stores: the
 * idle marks are taken only once drain has started.
 *
 * The keep-alive timeout is enforced here too, by one sweep over the sockets,
 * instead of by Node. Node arms a timer on the socket when a response
 * finishes and disarms it when the next request arrives: two
 * `socket.setTimeout` calls per request, each making a new timer and bound
 * function, about 4 % of a hello-world request (measured on Node 26.10, wrk,
 * one core). The sweep closes a socket that has been quiet — no request in
 * flight, nothing queued to write, no byte read or written — for the timeout
 * plus Node's own one-second allowance, as Node's timer would (its timer is
 * refreshed by every read and write, so a request arriving slowly keeps the
 * socket, as here). A connection that has not been answered yet is left to
 * the headers timeout, as Node leaves it. The socket closes between that
 * moment and one sweep tick (a tenth of the timeout, 10 ms – 1 s) later,
 * never earlier. The response still advertises `Keep-Alive: timeout=N`:
 * Node writes it from a field of the response (`_keepAliveTimeout`), which
 * `track` sets; a probe at start checks that the field still does that, and
 * where it does not (a Node whose internals moved) Node's own timer stays.
 */
import { IncomingMessage, type Server, ServerResponse } from 'node:http';
import { Socket } from 'node:net';
import { internalMissing } from '../node-internals.js';

interface Tracked {
  readonly tracker: ConnectionTracker;
  readonly socket: Socket;
  inflight: number;
  /** During drain: `socket.bytesRead` when the socket last became idle. */
  idleBytes: number;
  /** During drain: when it last became idle (ms since epoch). */
  idleSince: number;
  /** The response to the newest request on the socket, until it is done. */
  last: ServerResponse | undefined;
  /** Keep-alive sweep: `socket.bytesRead` and `bytesWritten` when it last saw them move. */
  seenRead: number;
  seenWritten: number | undefined;
  /** Keep-alive sweep: when it last saw the socket busy or its byte counts move (ms since epoch). */
  quietSince: number;
}

/** Node's allowance past the advertised keep-alive timeout (`keepAliveTimeoutBuffer`, 1 s on Node 20–26). */
export const keepAliveAllowanceMs = 1000;

/** Node's internal `ConnectionsList` of an `http.Server` (node_http_parser.cc). */
interface ConnectionsList {
  active(): Array<{ socket?: Socket }>;
}

const kTracked = Symbol('hyp.tracked');
const kWriteHead = Symbol('hyp.writeHead');
type TrackedResponse = ServerResponse & {
  [kTracked]?: Tracked | undefined;
  /** During drain: the `writeHead` that `writeHeadClosing` stands in front of. */
  [kWriteHead]?: ServerResponse['writeHead'];
};
/** A socket's own entry, found per request by a property read rather than a map lookup. */
type TrackedSocket = Socket & { [kTracked]?: Tracked | undefined };
/** The field Node's `_storeHeader` writes `Keep-Alive: timeout=N` from (seconds = ms / 1000, floored). */
type KeepAliveResponse = ServerResponse & { _keepAliveTimeout: number };

/**
 * Whether setting `_keepAliveTimeout` on a response makes Node advertise
 * `Keep-Alive: timeout=N` in its head: tried once on a response with no
 * socket behind it (specs pass their own). Where it does not, the loss is
 * reported (HYP_W_NODE_INTERNALS) and Node keeps its own keep-alive timer.
 */
export function probeKeepAliveHeader(
  res: ServerResponse = new ServerResponse(new IncomingMessage(new Socket())),
): boolean {
  res.shouldKeepAlive = true;
  (res as KeepAliveResponse)._keepAliveTimeout = 7000;
  res.writeHead(200, ['content-length', '0']);
  const head = (res as ServerResponse & { _header?: unknown })._header;
  if (typeof head === 'string' && /\r\nKeep-Alive: timeout=7\r\n/i.test(head)) return true;
  internalMissing(
    'ServerResponse._keepAliveTimeout',
    "the keep-alive timeout enforced by hyp's connection sweep rather than a timer per request",
    "Node's own keep-alive timer runs, two socket timers per request",
  );
  return false;
}

let keepAliveHeaderWorks: boolean | undefined;

function onResponseClose(this: TrackedResponse): void {
  const t = this[kTracked];
  if (t === undefined) return;
  this[kTracked] = undefined;
  if (t.last === this) t.last = undefined;
  t.tracker.requestDone(t);
}

/**
 * During drain: ask for `Connection: close` as the head goes out (Node's own
 * `end()` and `flushHeaders()` come through `writeHead` too), unless a later
 * request arrived on the socket — closing after this response would drop it.
 */
function writeHeadClosing(this: TrackedResponse, ...args: unknown[]): ServerResponse {
  const t = (this.req.socket as TrackedSocket)[kTracked];
  if (t !== undefined && t.last === this && !this.headersSent) this.setHeader('connection', 'close');
  return (this[kWriteHead] as (...a: unknown[]) => ServerResponse).apply(this, args);
}

function closeWhenLast(res: TrackedResponse): void {
  if (res.headersSent || res[kWriteHead] !== undefined) return;
  res[kWriteHead] = res.writeHead;
  res.writeHead = writeHeadClosing as ServerResponse['writeHead'];
}

export class ConnectionTracker {
  /** Open HTTP/1.1 sockets; each also carries its entry as `socket[kTracked]`. */
  private readonly sockets = new Set<Tracked>();
  private draining = false;
  private inflightTotal = 0;
  private sweep: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];
  private server: Server | undefined;
  private connectionsKey: symbol | undefined;
  /** The advertised keep-alive timeout while the sweep enforces it (else 0: Node's timer, or none). */
  private keepAliveMs = 0;
  private keepAliveSweep: NodeJS.Timeout | undefined;

  /**
   * Enforce the keep-alive timeout `timeoutMs` with the sweep, unless the
   * probe says Node's head would then lose its `Keep-Alive: timeout=N`.
   * Returns whether it does; if so, the server's own `keepAliveTimeout`
   * must be 0, or both would run.
   */
  enforceKeepAlive(timeoutMs: number): boolean {
    if (timeoutMs <= 0) return false;
    keepAliveHeaderWorks ??= probeKeepAliveHeader();
    if (!keepAliveHeaderWorks) return false;
    this.keepAliveMs = timeoutMs;
    const closeAfterMs = timeoutMs + keepAliveAllowanceMs;
    const tickMs = Math.max(10, Math.min(1000, Math.floor(timeoutMs / 10)));
    this.keepAliveSweep = setInterval(() => this.closeQuiet(closeAfterMs), tickMs);
    this.keepAliveSweep.unref();
    return true;
  }

  /**
   * Close every socket quiet for `closeAfterMs`. Busy, or with byte counts
   * that moved since the last tick: quiet from now (the bytes may have
   * moved just before this tick, so a close is never early).
   */
  private closeQuiet(closeAfterMs: number): void {
    const now = Date.now();
    for (const t of this.sockets) {
      const socket = t.socket;
      const read = socket.bytesRead;
      const written = socket.bytesWritten;
      if (t.inflight > 0 || socket.writableLength > 0 || read !== t.seenRead || written !== t.seenWritten) {
        t.seenRead = read;
        t.seenWritten = written;
        t.quietSince = now;
        continue;
      }
      // Never answered: the headers timeout's, as with Node's own timer.
      if (!written) continue;
      if (now - t.quietSince >= closeAfterMs) socket.destroy();
    }
  }

  /** Track the server's connections (pair with `track` for its requests). */
  attach(server: Server): void {
    this.server = server;
    server.on('connection', (socket: TrackedSocket) => {
      const t: Tracked = {
        tracker: this,
        socket,
        inflight: 0,
        idleBytes: 0,
        idleSince: Date.now(),
        last: undefined,
        seenRead: 0,
        seenWritten: 0,
        quietSince: Date.now(),
      };
      socket[kTracked] = t;
      this.sockets.add(t);
      // In-flight responses of a closing socket emit their own 'close' (requestDone).
      socket.once('close', () => this.forget(socket));
    });
    // An upgraded socket (WebSocket) leaves HTTP: its hub drains it with
    // spread close frames, so HTTP drain must neither end it as "idle" nor wait for it.
    server.prependListener('upgrade', (req: IncomingMessage) => this.forget(req.socket));
  }

  private forget(socket: TrackedSocket): void {
    const t = socket[kTracked];
    if (t === undefined) return;
    socket[kTracked] = undefined;
    this.sockets.delete(t);
    this.checkIdle();
  }

  /**
   * `handler` wrapped so every request it serves is counted, as the one
   * 'request' listener of the server (a second listener would make every
   * emit copy the listener array).
   */
  track(handler: (req: IncomingMessage, res: ServerResponse) => void) {
    return (req: IncomingMessage, res: ServerResponse): void => {
      const t = (req.socket as TrackedSocket)[kTracked];
      // Not (or no longer) an HTTP/1.1 socket of ours: an upgraded one, say.
      if (t === undefined) {
        handler(req, res);
        return;
      }
      t.inflight++;
      this.inflightTotal++;
      t.last = res;
      if (this.keepAliveMs > 0) (res as KeepAliveResponse)._keepAliveTimeout = this.keepAliveMs;
      if (this.draining) closeWhenLast(res);
      try {
        handler(req, res);
      } finally {
        // Answered synchronously (the common case): done now. No socket read can
        // happen before the response's 'close' (a nextTick later), so the idle
        // mark is the same as it would be then.
        if (res.writableEnded) {
          t.last = undefined;
          this.requestDone(t);
        } else {
          // One listener, no closure per request: 'close' follows every finished
          // or aborted response (on a nextTick, before any further socket read).
          (res as TrackedResponse)[kTracked] = t;
          res.on('close', onResponseClose);
        }
      }
    };
  }

  /** @internal A response on a tracked socket closed. */
  requestDone(t: Tracked): void {
    t.inflight--;
    this.inflightTotal--;
    if (!this.draining) return;
    t.idleBytes = t.socket.bytesRead;
    t.idleSince = Date.now();
  }

  get connections(): number {
    return this.sockets.size;
  }

  get inflight(): number {
    return this.inflightTotal;
  }

  /** Stop keep-alive: in-flight responses not yet started carry `Connection: close`; idle sockets end. */
  startDrain(idleGraceMs: number): void {
    if (this.draining) return;
    this.draining = true;
    const now = Date.now();
    for (const t of this.sockets) {
      const socket = t.socket;
      t.idleBytes = socket.bytesRead;
      t.idleSince = now;
      if (t.inflight === 0) continue;
      // The response on the socket now, and the newest one (pipelined requests
      // may queue between them; those are not last, so they keep it open).
      const res = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
      if (res) closeWhenLast(res);
      if (t.last) closeWhenLast(t.last);
    }
    const tick = () => this.closeIdle(idleGraceMs);
    this.sweep = setInterval(tick, Math.max(50, Math.min(idleGraceMs, 250)));
    this.sweep.unref();
    tick();
  }

  private closeIdle(idleGraceMs: number): void {
    const now = Date.now();
    const arriving = this.messagesBegun();
    for (const t of this.sockets) {
      const socket = t.socket;
      if (t.inflight > 0 || arriving.has(socket)) continue;
      if (socket.bytesRead !== t.idleBytes) continue; // a request is arriving
      // A response that went out before drain promised keep-alive; give the
      // client a moment to reuse the socket and get `Connection: close`.
      if (now - t.idleSince < idleGraceMs) continue;
      socket.end();
      socket.destroySoon();
    }
  }

  /**
   * Sockets on which Node's HTTP parser has begun a message whose request is
   * not yet out (headers still arriving), from the server's own connection
   * list (`http.Server` keeps one for its header and request timeouts). Where
   * a Node version lacks it, the byte marks alone decide.
   */
  private messagesBegun(): Set<Socket> {
    const begun = new Set<Socket>();
    const server = this.server as (Server & Record<symbol, unknown>) | undefined;
    if (server === undefined) return begun;
    this.connectionsKey ??= Object.getOwnPropertySymbols(server).find(
      (s) => s.description === 'http.server.connections',
    );
    const list = this.connectionsKey && (server[this.connectionsKey] as ConnectionsList | undefined);
    if (typeof list?.active !== 'function') {
      internalMissing(
        'http.Server[http.server.connections].active',
        'telling a request whose headers are arriving from an idle connection at drain',
        'at drain, an idle connection is told apart by the bytes it has read alone',
      );
      return begun;
    }
    for (const parser of list.active()) if (parser.socket) begun.add(parser.socket);
    return begun;
  }

  /** Resolves when no socket is left. */
  whenIdle(): Promise<void> {
    if (this.sockets.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.idleWaiters.push(resolve));
  }

  private checkIdle(): void {
    if (this.sockets.size !== 0) return;
    const waiters = this.idleWaiters;
    this.idleWaiters = [];
    for (const w of waiters) w();
  }

  /** The deadline passed: drop whatever is left. */
  destroyAll(): void {
    for (const t of this.sockets) t.socket.destroy();
    this.stop();
  }

  stop(): void {
    if (this.sweep) clearInterval(this.sweep);
    clearInterval(this.keepAliveSweep);
  }
}
