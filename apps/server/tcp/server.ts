/**
 * One named TCP service (golib's `socket/server/tcp`): accepts on a
 * supervisor-held fd (or its own bound socket in standalone mode), applies
 * the accept-time policy (draining, per-IP rate limit, max_connections),
 * optionally wraps the socket in TLS, runs the handler with a
 * `TcpConnection`, and drains gracefully.
 *
 * States: `stopped` (before `listen`) → `running` → `draining` → `stopped`.
 */
import { type AddressInfo, createServer, type Server, type Socket } from 'node:net';
import type { TLSSocket, Server as TlsServer } from 'node:tls';
import type { Registry } from 'prom-client';
import type { TcpServiceConfig } from '../../../supervisor/config/schema.js';
import { formatAddress, parseAddress, parseDuration, parseSize } from '../../../supervisor/config/units.js';
import { type ErrorCode, errorMessage, HypError } from '../../../supervisor/errors.js';
import type { TicketKeys } from '../../../supervisor/ipc.js';
import type { Logger } from '../../../supervisor/log.js';
import { clientCertificateRefusal, opensslReason } from '../tls/peer.js';
import { type ConnectionHost, formatEndpoint, TcpConnection } from './connection.js';
import { type RefuseReason, registerTcpStats, TcpStats } from './metrics.js';
import { ConnectionRateLimiter } from './ratelimit.js';
import { type IdleSweeper, idleSweeper } from './sweeper.js';
import { createTcpTls, type TcpTls } from './tls.js';
import type { ConnState, TcpHandler, TcpServiceOptions, TcpServiceState } from './types.js';

export interface TcpServiceInit<S extends object = Record<string, unknown>> {
  name: string;
  config: TcpServiceConfig;
  handler: TcpHandler<S>;
  options?: TcpServiceOptions<S>;
  log: Logger;
  registry: Registry;
  /** TLS seam; built from `config.tls` when absent and `config.tls.enabled`. */
  tls?: TcpTls;
  /** Defaults to the worker-wide sweeper. */
  sweeper?: IdleSweeper;
  /** The supervisor's session-ticket keys, when they arrived before the service was built. */
  ticketKeys?: TicketKeys | undefined;
}

/**
 * The accepted socket a `TLSSocket` of our `tls.Server` wraps: Node keeps it
 * as `_parent` (not public API, but stable from Node 20 through 26; the
 * TLS specs fail if it goes).
 */
function acceptedSocket(tlsSocket: TLSSocket): Socket | undefined {
  const parent = (tlsSocket as TLSSocket & { _parent?: unknown })._parent;
  return typeof parent === 'object' && parent !== null ? (parent as Socket) : undefined;
}

/**
 * What a handler's return value settles with: a native promise as it is,
 * any other thenable (a promise of another realm, a library's) adopted, a
 * plain value `undefined` (returned at once). Throws when reading `then` throws.
 */
function settlement(result: unknown): PromiseLike<unknown> | undefined {
  if (result instanceof Promise) return result;
  if ((typeof result === 'object' && result !== null) || typeof result === 'function') {
    if (typeof (result as { then?: unknown }).then === 'function') return Promise.resolve(result);
  }
  return undefined;
}

/**
 * Codes of the errors a handler meets because its socket was closed under
 * it: the socket's own errno, a write on a destroyed or ended stream, a
 * stream helper (`pipeline`, `finished`) seeing it close, `conn.write` on a
 * closed connection.
 */
const closedSocketCodes: ReadonlySet<string> = new Set([
  'ECONNRESET',
  'EPIPE',
  'ECONNABORTED',
  'ETIMEDOUT',
  'ERR_STREAM_DESTROYED',
  'ERR_STREAM_PREMATURE_CLOSE',
  'ERR_STREAM_WRITE_AFTER_END',
  'ERR_SOCKET_CLOSED',
  'HYP_E_TCP_CLOSED',
]);

/** How the debug line of a peer-gone handler failure says the peer went, by the socket's errno. */
const peerWent: Readonly<Record<string, string>> = { ECONNRESET: 'reset', ETIMEDOUT: 'stopped answering on' };

/** Wrappers followed down to the closed-socket error: the handler's error and up to 3 causes under it. */
const maxWrapDepth = 3;
/** More errors than this in one AggregateError are not searched: the failure stays the handler's. */
const maxAggregated = 16;
/** The engine's errors for a bug: one of them is the handler's failure, whatever its `cause`. */
const bugErrors = [TypeError, RangeError, ReferenceError, SyntaxError] as const;

/**
 * The closed-socket code `error` carries, its own or that of the error it
 * wraps: an app's `new Error('echo failed', { cause })`, a library's
 * wrapper, an `AggregateError` all of whose errors are closed-socket ones
 * (a bug among them is still a bug). A wrapper with a code of its own is
 * judged by that code; an engine error (a `TypeError`...) is never a
 * wrapper of the reset.
 */
function closedSocketCode(error: unknown, depth = 0): string | undefined {
  if (typeof error !== 'object' || error === null) return undefined;
  const code = (error as { code?: unknown }).code;
  if (code !== undefined) return typeof code === 'string' && closedSocketCodes.has(code) ? code : undefined;
  if (depth === maxWrapDepth || bugErrors.some((type) => error instanceof type)) return undefined;
  if (error instanceof AggregateError) {
    const errors: unknown[] = Array.isArray(error.errors) ? error.errors : [];
    if (errors.length > maxAggregated) return undefined;
    let found: string | undefined;
    for (const each of errors) {
      found = closedSocketCode(each, depth + 1);
      if (found === undefined) return undefined;
    }
    return found;
  }
  return closedSocketCode((error as { cause?: unknown }).cause, depth + 1);
}

/**
 * Whether `error` is the consequence of the peer having reset or left
 * `conn`: the socket says the peer went (its errno) and the error is one a
 * closed socket gives, or wraps one (`closedSocketCode`). An error of
 * another kind (a TypeError, the app's own), or a closed-socket code while
 * the peer is still there (an upstream connection of the handler that
 * reset), is the handler's failure. Returns the socket's errno and the
 * closed-socket code found.
 */
function peerGoneFailure(
  conn: TcpConnection<object>,
  error: Error,
): { errno: string; code: string } | undefined {
  const errno = conn.peerGone;
  if (errno === undefined) return undefined;
  const code = closedSocketCode(error);
  return code === undefined ? undefined : { errno, code };
}

export type ListenTarget = { fd: number } | { host?: string | undefined; port: number };

const namePattern = /^[a-z][a-z0-9-]*$/;
const noop = () => {};

function invalid(name: string, option: string, detail: string): HypError {
  return new HypError('HYP_E_TCP_INVALID_OPTION', { name, option, detail });
}

/** The longest keep-alive delay Linux takes (TCP_KEEPIDLE, seconds): 9h6m7s. */
const maxKeepAliveMs = 32_767_000;

/**
 * `keep_alive` as the kernel can take it (0: off). It counts whole seconds,
 * 1 to 32767: Node sends `ms / 1000` truncated, and the kernel refuses 0 (a
 * delay below 1 s) and anything above 32767 with EINVAL, which Node ignores
 * — the socket then kept the system's `tcp_keepalive_time` (2 hours by
 * default). The nearest delay it can take instead.
 */
function keepAliveDelay(ms: number): number {
  return ms === 0 ? 0 : Math.min(Math.max(ms, 1000), maxKeepAliveMs);
}

function readDuration(name: string, key: string, text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined)
    throw invalid(name, `tcp.${name}.${key}`, `expected a duration such as 5s, got ${JSON.stringify(text)}`);
  return ms;
}

export class TcpService<S extends object = Record<string, unknown>> implements ConnectionHost {
  readonly name: string;
  readonly idleMs: number;
  /** `handshake_timeout`: a TLS handshake not complete by then is dropped, however the peer trickles it (0: none). */
  private readonly handshakeMs: number;
  readonly releaseGraceMs: number;
  readonly maxBuffered: number;
  readonly stats: TcpStats;
  readonly onInfo: ((local: string, remote: string, state: ConnState) => void) | undefined;

  private _state: TcpServiceState = 'stopped';
  private started = false;
  private readonly config: TcpServiceConfig;
  private readonly handler: TcpHandler<S>;
  private readonly options: TcpServiceOptions<S>;
  private readonly log: Logger;
  private readonly sweeper: IdleSweeper;
  private readonly server: Server;
  private readonly tls: TcpTls | undefined;
  private readonly tlsServer: TlsServer | undefined;
  /**
   * TLS connections between accept and handshake, by accepted socket. Not by
   * remote `host:port`: a peer that resets and reconnects from the same port
   * reuses it while the old socket's `close` is still to come, and a socket
   * reset before it was processed knows no address at all.
   */
  private readonly handshaking = new WeakMap<Socket, TcpConnection<S>>();
  private readonly limiter: ConnectionRateLimiter | undefined;
  private readonly keepAliveMs: number;
  private readonly shutdownMs: number;
  private readonly live = new Set<TcpConnection<S>>();
  private allDone: (() => void) | undefined;
  private draining: Promise<void> | undefined;
  /** While `listen()` is under way: settles (never rejects) once it has succeeded or failed. */
  private listening: Promise<void> | undefined;
  private idleReason: HypError | undefined;

  constructor(init: TcpServiceInit<S>) {
    const { name, config } = init;
    if (typeof name !== 'string' || !namePattern.test(name)) {
      throw invalid(
        String(name),
        'name',
        'expected lowercase letters, digits and dashes, starting with a letter',
      );
    }
    if (typeof init.handler !== 'function') throw new HypError('HYP_E_TCP_INVALID_HANDLER', { name });
    if (!config.addr) throw new HypError('HYP_E_TCP_UNKNOWN_SERVICE', { name });
    if (parseAddress(config.addr) === undefined) {
      throw new HypError('HYP_E_TCP_INVALID_ADDRESS', { name, addr: config.addr });
    }
    if (!Number.isInteger(config.max_connections) || config.max_connections < 1) {
      throw invalid(
        name,
        `tcp.${name}.max_connections`,
        `expected an integer >= 1, got ${config.max_connections}`,
      );
    }
    this.name = name;
    this.config = config;
    this.handler = init.handler;
    this.options = init.options ?? {};
    this.log = init.log.child({ tcp_service: name });
    this.idleMs = readDuration(name, 'idle_timeout', config.idle_timeout);
    this.keepAliveMs = keepAliveDelay(readDuration(name, 'keep_alive', config.keep_alive));
    this.shutdownMs = readDuration(name, 'shutdown_timeout', config.shutdown_timeout);
    this.handshakeMs = readDuration(name, 'handshake_timeout', config.handshake_timeout);
    // With an idle timeout the sweeper bounds a returned handler's flush; without one, shutdown_timeout does.
    this.releaseGraceMs = this.idleMs > 0 ? 0 : this.shutdownMs;
    const maxBuffered = parseSize(config.max_buffered);
    if (maxBuffered === undefined) {
      throw invalid(
        name,
        `tcp.${name}.max_buffered`,
        `expected a size such as 16MiB (0: unlimited), got ${JSON.stringify(config.max_buffered)}`,
      );
    }
    this.maxBuffered = maxBuffered;
    const { per_ip_per_second: perSecond, burst } = config.rate_limit;
    if (!(perSecond >= 0)) {
      throw invalid(name, `tcp.${name}.rate_limit.per_ip_per_second`, `expected >= 0, got ${perSecond}`);
    }
    if (perSecond > 0 && !(burst >= 1)) {
      throw invalid(name, `tcp.${name}.rate_limit.burst`, `expected >= 1, got ${burst}`);
    }
    this.limiter = perSecond > 0 ? new ConnectionRateLimiter(perSecond, burst) : undefined;
    const onInfo = this.options.onInfo;
    // A throwing user callback is reported, never thrown into a socket event (that would crash the worker).
    this.onInfo =
      onInfo &&
      ((local, remote, state) => {
        try {
          onInfo(local, remote, state);
        } catch (err) {
          this.callbackFailed('onInfo', err);
        }
      });
    this.sweeper = init.sweeper ?? idleSweeper;
    this.tls =
      init.tls ??
      (config.tls.enabled
        ? createTcpTls(config.tls, `tcp.${name}.tls`, { registry: init.registry, log: this.log })
        : undefined);
    this.stats = new TcpStats(name);
    registerTcpStats(init.registry, this.stats);
    // allowHalfOpen: a peer's FIN ends reading only; the handler may still answer.
    this.server = createServer({ allowHalfOpen: true }, (raw) => this.accept(raw));
    if (this.tls) {
      this.tlsServer = this.tls.createServer();
      if (init.ticketKeys) this.tls.setTicketKeys(init.ticketKeys);
      this.tlsServer.on('secureConnection', (s: TLSSocket) => this.secureConnection(s));
      this.tlsServer.on('tlsClientError', (err: Error, s: TLSSocket) => this.tlsClientError(err, s));
    }
    // Runtime errors of the listener (EMFILE on accept, …); listen() reports its own.
    this.server.on('error', (err) => {
      if (this.server.listening) this.reportError(err);
    });
  }

  get state(): TcpServiceState {
    return this._state;
  }

  /** Install the supervisor's shared TLS session-ticket keys (no-op without TLS). */
  setTicketKeys(keys: TicketKeys): void {
    this.tls?.setTicketKeys(keys);
  }

  /** Connections accepted by this worker and not yet done (handshakes included). */
  openConnections(): number {
    return this.live.size;
  }

  /** Same as `openConnections()`, for the worker's heartbeat (`Drainable`). */
  get connections(): number {
    return this.live.size;
  }

  address(): AddressInfo {
    const addr = this.server.address();
    if (addr === null || typeof addr === 'string') throw new HypError('HYP_E_TCP_CLOSED');
    return addr;
  }

  /** Accept on an inherited fd, or bind `host:port` (standalone); default: `config.addr`. */
  listen(target?: ListenTarget): Promise<void> {
    if (this.started) {
      return Promise.reject(new HypError('HYP_E_TCP_SERVER_CLOSED', { name: this.name, state: this._state }));
    }
    this.started = true;
    const where: ListenTarget = target ?? parseAddress(this.config.addr)!;
    const shown = 'fd' in where ? `fd ${where.fd}` : formatAddress({ host: where.host, port: where.port });
    const listening = new Promise<void>((resolve, reject) => {
      const onError = (err: Error) => {
        this._state = 'stopped';
        reject(
          new HypError(
            'HYP_E_LISTEN',
            { name: this.name, addr: shown, detail: errorMessage(err) },
            { cause: err },
          ),
        );
      };
      this.server.once('error', onError);
      this.server.listen(where, () => {
        this.server.off('error', onError);
        this._state = 'running';
        this.serverInfo(`listening on ${shown}`);
        resolve();
      });
    });
    // A drain that began meanwhile waits for the listen to finish, then closes it.
    this.listening = listening.then(
      () => {
        this.listening = undefined;
      },
      () => {
        this.listening = undefined;
      },
    );
    return listening.then(() => {
      if (this.draining !== undefined)
        throw new HypError('HYP_E_TCP_SERVER_CLOSED', { name: this.name, state: 'draining' });
    });
  }

  /**
   * Stop accepting, fire every connection's signal, wait for handlers until
   * `deadline` (epoch ms) or `shutdown_timeout`, whichever is first, then
   * close what is left and report HYP_E_SHUTDOWN_TIMEOUT.
   */
  drain(deadline: number = Date.now() + this.shutdownMs): Promise<void> {
    this.started = true; // a drained service never listens again
    this.draining ??= this.runDrain(Math.min(deadline, Date.now() + this.shutdownMs));
    return this.draining;
  }

  /** Stop now: stop accepting and close every connection at once. */
  close(): Promise<void> {
    return this.drain(Date.now());
  }

  // ---- ConnectionHost ------------------------------------------------------

  connectionIdle(conn: TcpConnection<object>, idleForMs: number): void {
    this.stats.idleCloses++;
    // One shared reason: a sweep may close thousands of connections in one pass.
    this.idleReason ??= new HypError('HYP_E_TCP_IDLE', { timeout: this.config.idle_timeout });
    conn.abort(this.idleReason);
    conn.closedBy = 'idle';
    if (this.log.isLevelEnabled('debug')) {
      this.log.debug({ remote: conn.remoteAddress, idle_ms: idleForMs }, 'closing idle connection');
    }
    conn.destroy();
  }

  connectionDone(conn: TcpConnection<object>): void {
    this.live.delete(conn as TcpConnection<S>);
    this.sweeper.delete(conn);
    this.stats.open = this.live.size;
    if (this.live.size === 0) this.allDone?.();
  }

  sendBufferExceeded(conn: TcpConnection<object>, queued: number): Error {
    this.stats.sendBufferCloses++;
    return new HypError('HYP_E_TCP_SEND_BUFFER', {
      name: this.name,
      remote: conn.remoteAddress,
      pending: queued,
      limit: this.config.max_buffered,
    });
  }

  reportError(err: Error, conn?: TcpConnection<object>): void {
    this.stats.errors++;
    if (conn !== undefined && this.tls !== undefined && conn.network === 'tcp') {
      err = new HypError(
        'HYP_E_TCP_HANDSHAKE',
        { remote: conn.remoteAddress, detail: err.message },
        { cause: err },
      );
    }
    if (this.options.onError) {
      try {
        this.options.onError(err);
      } catch (cbErr) {
        this.log.error({ err: cbErr }, 'tcp onError callback threw');
      }
    } else {
      this.log.warn({ err, remote: conn?.remoteAddress }, errorMessage(err));
    }
  }

  // ---- accept path ---------------------------------------------------------

  private accept(raw: Socket): void {
    const refusal = this.refusal(raw);
    if (refusal !== undefined) {
      this.refuse(raw, refusal);
      return;
    }
    raw.setNoDelay(this.config.no_delay);
    if (this.keepAliveMs > 0) raw.setKeepAlive(true, this.keepAliveMs);
    if (this.options.updateConn) {
      try {
        this.options.updateConn(raw);
      } catch (err) {
        this.callbackFailed('updateConn', err);
      }
    }
    let state = {} as S;
    if (this.options.state) {
      try {
        state = this.options.state();
      } catch (err) {
        // No state, no handler: close this connection only.
        this.callbackFailed('state', err);
        raw.on('error', noop);
        raw.destroy();
        return;
      }
    }
    this.stats.accepted++;
    const conn = new TcpConnection<S>(raw, this, state, this.tlsServer !== undefined);
    this.live.add(conn);
    this.stats.open = this.live.size;
    if (this.idleMs > 0) this.sweeper.add(conn);
    conn.info('new');
    if (this._state !== 'running') conn.abort(new HypError('HYP_E_DRAINING'));
    if (this.tlsServer === undefined) {
      this.run(conn);
      return;
    }
    // Kept after `close` (weakly): a handshake error is reported after the
    // reset that caused it, and names the peer by the address read now.
    this.handshaking.set(raw, conn);
    if (conn.remoteAddress === '') this.log.debug('accepted a connection already reset by its peer');
    // A timer of our own: Node's `handshakeTimeout` (off here) reports
    // 'tlsClientError' but leaves the socket open (Node 20 and 26).
    const deadline =
      this.handshakeMs > 0
        ? setTimeout(() => this.handshakeExpired(raw, conn), this.handshakeMs).unref()
        : undefined;
    raw.once('close', () => {
      clearTimeout(deadline);
      if (conn.network === 'tcp') conn.handlerSettled(); // the handshake never completed
    });
    // The TLSSocket inherits allowHalfOpen from `raw`: a half-open handshake
    // would never notice the peer's FIN and hang until the idle sweeper.
    // Half-close is restored once the handshake completes (secureConnection).
    raw.allowHalfOpen = false;
    this.tlsServer.emit('connection', raw);
  }

  private handshakeExpired(raw: Socket, conn: TcpConnection<S>): void {
    if (conn.network !== 'tcp' || raw.destroyed) return;
    this.reportError(
      new HypError('HYP_E_TCP_HANDSHAKE', {
        remote: conn.remoteAddress || 'a client',
        detail: `not completed within handshake_timeout (${this.config.handshake_timeout})`,
      }),
    );
    raw.destroy();
  }

  private secureConnection(tlsSocket: TLSSocket): void {
    const raw = acceptedSocket(tlsSocket);
    const conn = raw && this.handshaking.get(raw);
    if (conn === undefined) {
      // Only if Node stopped linking a TLSSocket to the socket it wraps: loud, never a silent drop.
      this.reportError(
        new HypError('HYP_E_TCP_HANDSHAKE', {
          remote: formatEndpoint(tlsSocket.remoteAddress, tlsSocket.remotePort) || 'a client',
          detail: 'the TLS socket matches no accepted connection',
        }),
      );
      tlsSocket.destroy();
      return;
    }
    this.handshaking.delete(raw!);
    tlsSocket.allowHalfOpen = true;
    conn.secured(tlsSocket);
    this.run(conn);
  }

  private tlsClientError(err: Error, tlsSocket: TLSSocket): void {
    // The address read at accept: after a reset the TLSSocket has lost its own.
    const raw = acceptedSocket(tlsSocket);
    const conn = raw && this.handshaking.get(raw);
    const remote =
      conn?.remoteAddress || formatEndpoint(tlsSocket.remoteAddress, tlsSocket.remotePort) || 'a client';
    // A client certificate that does not verify is refused after the handshake:
    // Node closes the socket and reports "socket hang up", as if the client had left.
    const unverified = clientCertificateRefusal(tlsSocket);
    const detail = unverified
      ? `client certificate does not verify against tcp.${this.name}.tls.ca_file (${unverified})`
      : opensslReason(err);
    this.reportError(new HypError('HYP_E_TCP_HANDSHAKE', { remote, detail }, { cause: err }));
  }

  private refusal(raw: Socket): RefuseReason | undefined {
    if (this._state !== 'running') return 'draining';
    if (this.limiter !== undefined && !this.limiter.take(raw.remoteAddress ?? '')) return 'rate_limit';
    if (this.live.size >= this.config.max_connections) return 'max_connections';
    return undefined;
  }

  /** Close politely: FIN, then release the socket once it is flushed. */
  private refuse(raw: Socket, reason: RefuseReason): void {
    this.stats.refused(reason);
    raw.on('error', noop);
    raw.end(() => raw.destroy());
    const code: ErrorCode =
      reason === 'rate_limit'
        ? 'HYP_E_TCP_RATE_LIMITED'
        : reason === 'max_connections'
          ? 'HYP_E_TCP_MAX_CONNECTIONS'
          : 'HYP_E_DRAINING';
    const err = new HypError(code, { ip: raw.remoteAddress, limit: this.config.max_connections });
    const peer = formatEndpoint(raw.remoteAddress, raw.remotePort) || 'a client that already left';
    this.serverInfo(`refused ${peer}: ${err.message}`);
  }

  private run(conn: TcpConnection<S>): void {
    conn.info('handler');
    let pending: PromiseLike<unknown> | undefined;
    try {
      pending = settlement(this.handler(conn));
    } catch (err) {
      this.handlerFailed(conn, err);
      return;
    }
    if (pending === undefined) this.handlerReturned(conn);
    else {
      pending.then(
        () => this.handlerReturned(conn),
        (err: unknown) => this.handlerFailed(conn, err),
      );
    }
  }

  private handlerReturned(conn: TcpConnection<S>): void {
    // The handler owns the connection for its whole life: returning closes it.
    conn.release();
    conn.handlerSettled();
  }

  private handlerFailed(conn: TcpConnection<S>, err: unknown): void {
    const error = err instanceof Error ? err : new Error(String(err));
    // The error given to fail() was reported there.
    if (error !== conn.failedWith) this.reportHandlerFailure(conn, error);
    conn.destroy();
    conn.handlerSettled();
  }

  /**
   * A handler failure: one debug line when the socket was closed under it
   * (by the peer, or by the service itself), else HYP_E_TCP_HANDLER to
   * onError or the log, with its stack.
   */
  private reportHandlerFailure(conn: TcpConnection<S>, error: Error): void {
    const peerGone = peerGoneFailure(conn, error);
    if (peerGone !== undefined) {
      this.handlerPeerGone(conn, error, peerGone.errno, peerGone.code);
      return;
    }
    const closedBy = conn.closedBy;
    const code = closedBy === undefined ? undefined : closedSocketCode(error);
    if (closedBy !== undefined && code !== undefined) {
      this.handlerClosedByService(conn, error, closedBy, code);
      return;
    }
    this.reportError(
      new HypError(
        'HYP_E_TCP_HANDLER',
        // '' when the peer reset before the accept: the socket never knew its address.
        { name: this.name, remote: conn.remoteAddress || 'a client', detail: error.message },
        { cause: error },
      ),
      conn,
    );
  }

  /**
   * The handler failed because its peer reset or left (the demo's echo loop
   * writing to a reset socket): not the app's bug, and any client can cause
   * one per connection, so one debug line without a stack, not a warning.
   */
  private handlerPeerGone(conn: TcpConnection<S>, error: Error, errno: string, code: string): void {
    this.stats.handlerPeerGone++;
    if (!this.log.isLevelEnabled('debug')) return;
    const remote = conn.remoteAddress || 'a client';
    const detail = `${error.message} (the peer ${peerWent[errno] ?? 'left'} the connection: ${errno})`;
    this.log.debug(
      { code: 'HYP_E_TCP_HANDLER', errno, error_code: code, remote },
      new HypError('HYP_E_TCP_HANDLER', { name: this.name, remote, detail }).message,
    );
  }

  /**
   * The handler failed on a socket the service closed itself: idle past
   * `idle_timeout` (already counted in hyp_tcp_idle_closes_total), or still
   * open at the drain deadline (reported once as HYP_E_SHUTDOWN_TIMEOUT). A
   * client that never reads could otherwise cause one warning per connection.
   */
  private handlerClosedByService(
    conn: TcpConnection<S>,
    error: Error,
    closedBy: 'idle' | 'shutdown',
    code: string,
  ): void {
    if (!this.log.isLevelEnabled('debug')) return;
    const remote = conn.remoteAddress || 'a client';
    const why =
      closedBy === 'idle'
        ? `the service closed it, idle for ${this.config.idle_timeout}`
        : 'the service closed it at the drain deadline';
    this.log.debug(
      { code: 'HYP_E_TCP_HANDLER', closed_by: closedBy, error_code: code, remote },
      new HypError('HYP_E_TCP_HANDLER', { name: this.name, remote, detail: `${error.message} (${why})` })
        .message,
    );
  }

  private serverInfo(message: string): void {
    if (!this.options.onServerInfo) return void this.log.debug(message);
    try {
      this.options.onServerInfo(message);
    } catch (err) {
      this.callbackFailed('onServerInfo', err);
    }
  }

  private callbackFailed(callback: string, err: unknown): void {
    this.reportError(
      new HypError(
        'HYP_E_TCP_CALLBACK',
        { name: this.name, callback, detail: errorMessage(err) },
        { cause: err },
      ),
    );
  }

  // ---- drain -----------------------------------------------------------------

  private async runDrain(deadline: number): Promise<void> {
    // Drained while `listen()` was under way: without this wait the listen
    // completed after the drain and the "drained" service kept accepting.
    // Otherwise the state turns `draining` synchronously, within `drain()`.
    if (this.listening !== undefined) await this.listening;
    if (this._state === 'running') this._state = 'draining';
    this.serverInfo(`draining ${this.live.size} connections`);
    // The listening handle closes at once; our copy of an inherited fd goes,
    // the supervisor's stays, and the next generation keeps accepting on it.
    if (this.server.listening) this.server.close();
    const reason = new HypError('HYP_E_DRAINING');
    for (const conn of this.live) conn.abort(reason);
    const waitMs = Math.max(0, deadline - Date.now());
    if (this.live.size > 0) {
      let timer: NodeJS.Timeout | undefined;
      const finished = await new Promise<boolean>((resolve) => {
        this.allDone = () => resolve(true);
        timer = setTimeout(() => resolve(false), waitMs);
      });
      clearTimeout(timer);
      this.allDone = undefined;
      if (!finished) {
        const remaining = this.live.size;
        if (waitMs > 0) {
          this.reportError(
            new HypError('HYP_E_SHUTDOWN_TIMEOUT', {
              what: `tcp service ${this.name} (${remaining} connections left)`,
              timeout: `${waitMs}ms`,
            }),
          );
        }
        for (const conn of this.live) {
          conn.closedBy = 'shutdown';
          conn.destroy();
        }
        await this.settle();
      }
    }
    this.tls?.close();
    this._state = 'stopped';
    this.serverInfo('stopped');
  }

  /**
   * Wait for destroyed connections to close (close events are asynchronous).
   * Only their sockets are waited for: a handler stuck on something other
   * than its socket must not hold the drain past its deadline.
   */
  private async settle(): Promise<void> {
    const left = [...this.live];
    await Promise.all(left.map((conn) => conn.whenClosed()));
    for (const conn of left) this.connectionDone(conn);
  }
}
