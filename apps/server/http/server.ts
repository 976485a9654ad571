/**
 * The HTTP listener of a worker: serves the `http` fd handed over by the
 * supervisor (or binds `server.addr` itself in standalone mode) and drains
 * without dropping a request.
 *
 * One listener (net.Server, or tls.Server when `server.tls.enabled`) accepts
 * every connection and hands it to a protocol engine (protocols.ts): the
 * HTTP/1.1 engine is an `http.Server`, the HTTP/2 engine an `Http2Server`;
 * both call the same request listener (the App's `handle`). Limits apply on
 * every path: max connections on the listener, headers timeout on the
 * preface sniff / TLS handshake and the HTTP/1.1 parser, request timeout,
 * keep-alive (HTTP/1.1) or idle (HTTP/2) timeout, max header size.
 */
import {
  createServer,
  type IncomingMessage,
  type Server,
  type ServerOptions,
  type ServerResponse,
} from 'node:http';
import {
  createServer as createHttp2Server,
  type Http2Server,
  type ServerOptions as Http2ServerOptions,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type IncomingHttpHeaders,
  type ServerHttp2Stream,
} from 'node:http2';
import {
  type AddressInfo,
  createServer as createNetServer,
  type Server as NetServer,
  type Socket,
} from 'node:net';
import { createServer as createTlsServer, type TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';
import { clientErrorListener } from '../../../supervisor/client-error.js';
import type { Config } from '../../../supervisor/config/schema.js';
import { durationMs, parseAddress, sizeBytes } from '../../../supervisor/config/units.js';
import { HypError } from '../../../supervisor/errors.js';
import type { TicketKeys } from '../../../supervisor/ipc.js';
import type { Logger } from '../../../supervisor/log.js';
import { checkContinue } from '../body.js';
import { TlsManager } from '../tls/manager.js';
import { clientCertificateRefusal, opensslReason, peersOf } from '../tls/peer.js';
import { ConnectionTracker } from './connections.js';
import { emptyRequestOptions } from './empty-requests.js';
import { HttpProtectionMetrics } from './protection-metrics.js';
import { alpnFor, Http2Sessions, type Protocol, sniffPreface } from './protocols.js';
import { overrunDetail } from './slices.js';
import { SendStallWatch } from './stall.js';
import { StreamStallWatch } from './stream-stall.js';
import { isWebSocketUpgrade } from './upgrade.js';

export type RequestListener = (
  req: IncomingMessage | Http2ServerRequest,
  res: ServerResponse | Http2ServerResponse,
) => void;

/** Where a listener comes from: an inherited fd or an address to bind. */
export type ListenTarget = { fd: number } | { host?: string | undefined; port: number };

/** An HTTP/2 request as the engine's 'stream' event delivers it (no compat objects). */
export type StreamListener = (
  stream: ServerHttp2Stream,
  headers: IncomingHttpHeaders,
  rawHeaders: string[],
) => void;

export interface HttpServerOptions {
  config: Config;
  handler: RequestListener;
  /**
   * HTTP/2 requests as bare streams (App's `handleStream`); without it they
   * reach `handler` through Node's compat API. CONNECT and `Expect` requests
   * always take the compat path, with Node's own answers.
   */
  streamHandler?: StreamListener | undefined;
  /**
   * Registry for TLS metrics (`hyp_tls_reload_failures_total`) and the
   * protections' (`hyp_http_send_timeouts_total`,
   * `hyp_http_connections_refused_total`, `hyp_http_client_errors_total`).
   */
  registry?: Registry | undefined;
  log?: Logger | undefined;
  /** Session-ticket keys already received from the supervisor. */
  ticketKeys?: TicketKeys | undefined;
}

/** How long a keep-alive socket idle during drain is given to send one more request. */
const drainIdleGraceMs = 500;

/**
 * How long a peer is given to close its side once the worker has ended a
 * connection (sent its FIN): Node's HTTP/2 session close, and an answer to a
 * client error, wait for the peer's close, which a hostile peer never sends.
 */
const closeGraceMs = 2000;

export class HttpServer {
  /** The HTTP/1.1 engine (also where WebSocket `upgrade` events arrive). */
  readonly server: Server;
  /** The HTTP/2 engine; absent with `server.protocol: http1`. */
  readonly http2: Http2Server | undefined;
  /** The accepting socket: plain TCP, or TLS. */
  readonly listener: NetServer;
  readonly tls: TlsManager | undefined;
  readonly protocol: Protocol;
  private readonly tracker = new ConnectionTracker();
  private readonly sessions = new Http2Sessions();
  /** Accepted sockets not yet handed to an engine (sniffing the preface). */
  private readonly pending = new Set<Socket>();
  /**
   * Sockets handed to the HTTP/2 engine. A session destroyed at the drain
   * deadline after its GOAWAY only ends its socket, and waits for writes a
   * peer that stopped reading never takes: these are destroyed here.
   */
  private readonly http2Sockets = new Set<Socket>();
  private readonly headersTimeoutMs: number;
  private state: 'idle' | 'listening' | 'draining' | 'closed' = 'idle';
  private readonly log: Logger | undefined;

  constructor(opts: HttpServerOptions) {
    const { server: cfg } = opts.config;
    const limits = cfg.limits;
    this.protocol = cfg.protocol;
    const requestTimeoutMs = durationMs(limits.request_timeout);
    // The headers are part of the request: Node refuses headersTimeout > requestTimeout.
    const headersTimeoutMs = durationMs(limits.headers_timeout);
    this.headersTimeoutMs =
      requestTimeoutMs > 0 ? Math.min(headersTimeoutMs, requestTimeoutMs) : headersTimeoutMs;
    const maxHeaderSize = sizeBytes(limits.max_header_size);
    const protections = new HttpProtectionMetrics(opts.registry, opts.log);
    // The keep-alive timeout is the tracker's sweep's where it can be (connections.ts), not a timer per request.
    const keepAliveMs = durationMs(limits.keep_alive_timeout);
    const sweptKeepAlive = this.tracker.enforceKeepAlive(keepAliveMs);

    this.server = createServer({
      maxHeaderSize,
      headersTimeout: this.headersTimeoutMs,
      requestTimeout: requestTimeoutMs,
      keepAliveTimeout: sweptKeepAlive ? 0 : keepAliveMs,
      // Node checks headers/request timeouts on this interval (default 30 s,
      // coarser than a short headers_timeout would promise).
      connectionsCheckingInterval:
        this.headersTimeoutMs > 0
          ? Math.min(30_000, Math.max(100, Math.floor(this.headersTimeoutMs / 4)))
          : 30_000,
      noDelay: true,
      // Node ≥ 24.9: only WebSocket handshakes leave HTTP (older Node ignores this).
      shouldUpgradeCallback: isWebSocketUpgrade,
      // Node ≥ 24.12: bodyless requests skip the stream lifecycle (empty-requests.ts).
      ...emptyRequestOptions(),
    } as ServerOptions);
    this.tracker.attach(this.server);
    const handle = this.tracker.track(opts.handler);
    this.server.on('request', handle);
    this.server.on('checkContinue', checkContinue(sizeBytes(limits.body_limit), handle));
    // Requests Node's parser refuses get Node's status with a coded JSON body and a debug line; never a crash.
    this.server.on(
      'clientError',
      clientErrorListener({
        maxHeaderSize,
        maxHeaderSetting: 'server.limits.max_header_size',
        timeoutMessage: 'request headers or body did not arrive in time',
        log: opts.log,
        onRefused: (code) => protections.clientError('http1', code),
      }),
    );

    this.log = opts.log;
    const sendTimeoutMs = durationMs(limits.send_timeout);
    this.stalls = new SendStallWatch(sendTimeoutMs, opts.registry, (socket, pending) =>
      this.log?.info(
        {
          code: 'HYP_E_SEND_TIMEOUT',
          request_id: answeringRequestId(socket),
          remote: socket.remoteAddress,
          pending_bytes: pending,
        },
        new HypError('HYP_E_SEND_TIMEOUT', { timeout: limits.send_timeout }).message,
      ),
    );

    if (this.protocol !== 'http1') {
      const h2 = cfg.http2;
      const options: Http2ServerOptions = {
        settings: {
          maxConcurrentStreams: h2.max_concurrent_streams,
          maxFrameSize: h2.max_frame_size,
          maxHeaderListSize: maxHeaderSize,
        },
      };
      this.http2 = createHttp2Server(options);
      this.sessions.attach(this.http2, {
        idleTimeoutMs: durationMs(h2.idle_timeout),
        requestTimeoutMs,
        firstRequestTimeoutMs: this.headersTimeoutMs,
        sendStalls:
          sendTimeoutMs > 0
            ? new StreamStallWatch(sendTimeoutMs, (stream, pending) => {
                this.stalls.countStream();
                this.log?.info(
                  {
                    code: 'HYP_E_STREAM_SEND_TIMEOUT',
                    request_id: sentRequestId(stream),
                    remote: stream.session?.socket?.remoteAddress,
                    stream: stream.id,
                    pending_bytes: pending,
                  },
                  new HypError('HYP_E_STREAM_SEND_TIMEOUT', { timeout: limits.send_timeout }).message,
                );
              })
            : undefined,
        onOverrun: (stream, announced, sent) => {
          const e = new HypError('HYP_E_RESPONSE_LENGTH', { detail: overrunDetail(announced, sent) });
          this.log?.error({ code: e.code, request_id: sentRequestId(stream), stream: stream.id }, e.message);
        },
        // The peer's fault (a flood, a protocol error): debug, as a 4xx answer is logged.
        onSessionError: (err) => {
          this.log?.debug(
            { code: 'HYP_E_BAD_REQUEST', http2: err.code },
            `HTTP/2 session ended: ${err.message}`,
          );
          if (!connectionGone(err)) protections.clientError('http2', 'HYP_E_BAD_REQUEST');
        },
      });
      if (opts.streamHandler)
        this.http2.on('stream', this.sessions.trackStream(opts.streamHandler, opts.handler));
      else this.http2.on('request', this.sessions.track(opts.handler));
    }

    if (cfg.tls.enabled) {
      this.tls = new TlsManager({
        config: cfg.tls,
        at: 'server.tls',
        alpn: alpnFor(this.protocol),
        handshakeTimeoutMs: this.headersTimeoutMs,
        registry: opts.registry,
        log: opts.log,
      });
      if (opts.ticketKeys) this.tls.setTicketKeys(opts.ticketKeys);
      const tlsServer = createTlsServer(this.tls.serverOptions(), (socket) =>
        this.onSecureConnection(socket),
      );
      // Failed handshakes (refused versions, missing client certificates) end there.
      const peerOf = cfg.tls.client_auth === 'require' ? peersOf(tlsServer) : undefined;
      tlsServer.on('tlsClientError', (err, socket) => {
        // A client certificate that does not verify is refused after the handshake:
        // Node closes the socket and reports "socket hang up", as if the client had left.
        const unverified = peerOf && clientCertificateRefusal(socket);
        if (unverified) {
          const remote = peerOf?.(socket) || 'a client';
          const e = new HypError('HYP_E_TLS_CLIENT_CERT', {
            remote,
            reason: unverified,
            ca_key: 'server.tls.ca_file',
          });
          opts.log?.warn({ code: e.code, remote, reason: unverified, ca_file: cfg.tls.ca_file }, e.message);
        } else {
          opts.log?.debug({ err: opensslReason(err), remote: socket.remoteAddress }, 'TLS handshake failed');
        }
        socket.destroy();
      });
      this.tls.attach(tlsServer);
      this.listener = tlsServer;
    } else {
      this.listener = createNetServer({ noDelay: true }, (socket) => this.onConnection(socket));
    }
    if (limits.max_connections > 0) {
      this.listener.maxConnections = limits.max_connections;
      protections.watchDrops(this.listener, limits.max_connections);
    }
  }

  /** `server.limits.send_timeout`: connections whose answer stopped going out. */
  private readonly stalls: SendStallWatch;

  private onConnection(socket: Socket): void {
    socket.once('finish', destroyAfterGrace);
    this.stalls.watch(socket);
    if (this.protocol === 'http1') return void this.server.emit('connection', socket);
    if (this.protocol === 'http2') return void this.toHttp2(socket);
    this.pending.add(socket);
    socket.once('close', this.pendingClosed);
    sniffPreface(socket, this.headersTimeoutMs, this.dispatch);
  }

  /** 'close' of a socket still sniffing (taken off once it has an engine). */
  private readonly pendingClosed = deleteOnClose(this.pending);

  private readonly dispatch = (socket: Socket, h2: boolean): void => {
    this.pending.delete(socket);
    socket.off('close', this.pendingClosed);
    if (h2) return void this.toHttp2(socket);
    this.server.emit('connection', socket);
    socket.resume();
  };

  private onSecureConnection(socket: TLSSocket): void {
    socket.once('finish', destroyAfterGrace);
    this.stalls.watch(socket);
    if (socket.alpnProtocol === 'h2' && this.http2) this.toHttp2(socket);
    else if (this.protocol !== 'http2') this.server.emit('connection', socket);
    else socket.destroy();
  }

  private toHttp2(socket: Socket): void {
    this.http2Sockets.add(socket);
    socket.once('close', this.http2Closed);
    this.http2?.emit('connection', socket);
  }

  private readonly http2Closed = deleteOnClose(this.http2Sockets);

  listen(target: ListenTarget): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.listener.once('error', onError);
      const done = () => {
        this.listener.off('error', onError);
        // After listen, errors come from accept (EMFILE, ...): log, keep serving.
        this.listener.on('error', (err) => this.log?.error({ err }, 'http listener error'));
        this.state = 'listening';
        // The HTTP/1.1 engine never listens itself; 'listening' starts its
        // connection tracking, which enforces headers and request timeouts.
        this.server.emit('listening');
        resolve(this.listener.address() as AddressInfo);
      };
      if ('fd' in target) this.listener.listen({ fd: target.fd }, done);
      else this.listener.listen({ host: target.host, port: target.port }, done);
    });
  }

  /** New session-ticket keys from the supervisor (TLS only). */
  setTicketKeys(keys: TicketKeys): void {
    this.tls?.setTicketKeys(keys);
  }

  get connections(): number {
    return this.tracker.connections + this.sessions.connections + this.pending.size;
  }

  get inflight(): number {
    return this.tracker.inflight + this.sessions.inflight;
  }

  /**
   * Stop accepting (the supervisor's copy of the socket keeps the backlog for
   * the next generation), finish in-flight requests — HTTP/1.1 with
   * `Connection: close`, HTTP/2 after a GOAWAY — end idle keep-alive sockets,
   * and resolve when none is left or at the deadline (then the rest are
   * destroyed).
   */
  async drain(deadline: number): Promise<void> {
    if (this.state === 'draining' || this.state === 'closed') return this.whenIdle();
    this.state = 'draining';
    // The listener is a plain net/tls server: closing it never touches
    // connections (http.Server's close would run closeIdleConnections(),
    // which races requests that are still arriving).
    if (this.listener.listening) this.listener.close();
    this.tls?.close();
    this.tracker.startDrain(drainIdleGraceMs);
    this.sessions.startDrain();
    this.drainPending();
    const remaining = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.whenIdle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, remaining));
      }),
    ]);
    clearTimeout(timer);
    this.tracker.destroyAll();
    this.sessions.destroyAll();
    for (const socket of this.http2Sockets) socket.destroy();
    for (const socket of this.pending) socket.destroy();
    this.stalls.close();
    this.state = 'closed';
  }

  /** Sockets still sniffing: those that sent nothing within the grace are ended; the rest get their engine's drain. */
  private drainPending(): void {
    if (this.pending.size === 0) return;
    const timer = setTimeout(() => {
      for (const socket of this.pending) if (socket.bytesRead === 0) socket.destroy();
    }, drainIdleGraceMs);
    timer.unref();
  }

  private async whenIdle(): Promise<void> {
    await Promise.all([this.tracker.whenIdle(), this.sessions.whenIdle()]);
    while (this.pending.size > 0) {
      await new Promise((resolve) => setTimeout(resolve, 20));
      await Promise.all([this.tracker.whenIdle(), this.sessions.whenIdle()]);
    }
  }
}

/** A 'close' listener that drops its socket from `set`: one function per set, not a closure per socket. */
function deleteOnClose(set: Set<Socket>): (this: Socket) => void {
  return function (this: Socket) {
    set.delete(this);
  };
}

/**
 * An HTTP/2 session error that is the connection dying underneath (a reset,
 * a broken pipe, a TLS alert from the peer), not something the peer sent:
 * not counted as a client error.
 */
function connectionGone(err: NodeJS.ErrnoException): boolean {
  return (
    err.syscall !== undefined ||
    /^E[A-Z]+$/.test(err.code ?? '') ||
    (err.code?.startsWith('ERR_SSL_') ?? false)
  );
}

/** The `x-request-id` a stream answered with, for its log lines. */
function sentRequestId(stream: ServerHttp2Stream): string | undefined {
  const id = stream.sentHeaders?.['x-request-id'];
  return typeof id === 'string' ? id : undefined;
}

/**
 * The `x-request-id` of the HTTP/1.1 answer going out on `socket` (Node's
 * `_httpMessage`: attached until its last write completes, so a stuck one
 * still is), for its log lines. A head written in one `writeHead` call
 * (`c.json()` and friends) keeps no header map: the id is read from the
 * head's text then. Undefined on an HTTP/2 socket or between answers.
 */
function answeringRequestId(socket: Socket): string | undefined {
  const res = (socket as Socket & { _httpMessage?: ServerResponse | null })._httpMessage;
  if (!res) return undefined;
  const id = res.getHeader('x-request-id');
  if (typeof id === 'string') return id;
  const head = (res as ServerResponse & { _header?: string | null })._header;
  if (typeof head !== 'string') return undefined;
  const at = head.search(requestIdLine);
  if (at < 0) return undefined;
  const start = head.indexOf(':', at) + 1;
  const end = head.indexOf('\r\n', start);
  return head.slice(start, end < 0 ? undefined : end).trim();
}

const requestIdLine = /\r\nx-request-id:/i;

/** 'finish' of an accepted socket: the worker has ended it; the peer gets `closeGraceMs` to close too. */
function destroyAfterGrace(this: Socket): void {
  setTimeout(destroyOpen, closeGraceMs, this).unref();
}

function destroyOpen(socket: Socket): void {
  if (!socket.destroyed) socket.destroy();
}

export function listenTargetFor(addr: string): ListenTarget {
  const parsed = parseAddress(addr);
  if (!parsed) throw new TypeError(`not an address: ${addr}`);
  return { host: parsed.host, port: parsed.port };
}
