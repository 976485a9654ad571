/**
 * The connection context a TCP handler receives (golib's `socket.Context`):
 * pull-style reads (`read()`, `for await`), writes that wait for the socket
 * to drain, close / half-close, addresses, an AbortSignal fired on drain,
 * shutdown or idle, and per-connection state.
 *
 * Reads apply backpressure: a chunk the handler has not asked for yet is
 * queued and the socket paused, so a slow handler holds at most one chunk
 * plus the stream's high-water mark, whatever the peer sends.
 */
import type { Socket } from 'node:net';
import type { PeerCertificate } from 'node:tls';
import { HypError } from '../../../supervisor/errors.js';
import { flushedBytes } from '../flushed.js';
import { verifiedPeerCertificate } from '../tls/peer.js';
import type { Sweepable } from './sweeper.js';
import type { ConnState, TcpNetwork } from './types.js';

/** What a connection needs from the service that accepted it. */
export interface ConnectionHost {
  readonly idleMs: number;
  /**
   * How long writes still queued when the connection is released may take
   * before it is destroyed; 0: no timer (the idle sweeper bounds it).
   */
  readonly releaseGraceMs: number;
  /**
   * `max_buffered`: bytes a `write()` may find queued (not yet taken by the
   * kernel) before it; past it the connection is failed. 0: unlimited.
   */
  readonly maxBuffered: number;
  /** Bytes and activity are counted here (plain numbers, read at scrape time). */
  readonly stats: { bytesIn: number; bytesOut: number };
  readonly onInfo: ((local: string, remote: string, state: ConnState) => void) | undefined;
  connectionIdle(conn: TcpConnection<object>, idleForMs: number): void;
  /** Socket closed and handler settled: the connection is gone. */
  connectionDone(conn: TcpConnection<object>): void;
  reportError(err: Error, conn: TcpConnection<object>): void;
  /** `queued` bytes waited in `conn`'s send buffer when another write came: the error to fail it with. */
  sendBufferExceeded(conn: TcpConnection<object>, queued: number): Error;
}

const done: Promise<void> = Promise.resolve();
const noop = () => {};
const endOfStream: IteratorResult<Buffer, undefined> = { done: true, value: undefined };

/** `promise`, marked handled: its rejection still reaches whoever awaits it, and nobody else. */
function handled<T>(promise: Promise<T>): Promise<T> {
  promise.catch(noop);
  return promise;
}

/**
 * Socket errors by which a peer resets, leaves or vanishes from a connection
 * (ETIMEDOUT: the kernel gave up retransmitting or probing with keep-alive,
 * a pulled cable, a NAT that forgot the flow): they end it, they are no
 * service error.
 */
const peerGoneErrnos: ReadonlySet<string> = new Set(['ECONNRESET', 'EPIPE', 'ECONNABORTED', 'ETIMEDOUT']);

function peerGoneErrno(err: Error | null | undefined): string | undefined {
  const code = (err as NodeJS.ErrnoException | null | undefined)?.code;
  return code !== undefined && peerGoneErrnos.has(code) ? code : undefined;
}

export function formatEndpoint(address: string | undefined, port: number | undefined): string {
  if (address === undefined) return '';
  return address.includes(':') ? `[${address}]:${port}` : `${address}:${port}`;
}

export class TcpConnection<S extends object = Record<string, unknown>>
  implements Sweepable, AsyncIterable<Buffer>
{
  /** Per-connection state, from the service's `state()` option or `{}`. */
  readonly state: S;
  /** Reads and `write()` calls; with the bytes the kernel took, what the idle sweeper watches (`progress()`). */
  activity = 0;
  /** @internal Idle sweeper bookkeeping. */
  sweepSlot = -1;
  /** @internal */
  sweepSeen = 0;
  /** @internal */
  sweepSince = 0;
  readonly idleMs: number;

  private _socket: Socket;
  private _network: TcpNetwork = 'tcp';
  private readonly raw: Socket;
  /** Whether reads and writes are bound (plain: at once; TLS: once the handshake completed). */
  private bound = false;
  /** Read at accept: a socket the peer reset no longer knows either address (its handle is gone). */
  private readonly _remote: string;
  private readonly _local: string;
  private readonly queue: Buffer[] = [];
  private readEnded = false;
  private closed = false;
  /** The pending read: resolved with a chunk (`read()`) or an iterator result (`for await`). */
  private waiter: ((value: Buffer | null | IteratorResult<Buffer, undefined>) => void) | undefined;
  private waitAsResult = false;
  private drainWaiter: Promise<void> | undefined;
  private controller: AbortController | undefined;
  private abortReason: Error | undefined;
  private failure: Error | undefined;
  /** Seen on the socket's 'error' event: see `peerGone`. */
  private peerErrno: string | undefined;
  /**
   * @internal Set when the service itself closed the connection: `idle`
   * (`idle_timeout` with no progress), `shutdown` (still open at the drain
   * deadline). A handler failing on the closed socket then is no bug of the app.
   */
  closedBy: 'idle' | 'shutdown' | undefined = undefined;
  private released = false;
  /** Socket close and handler completion; the connection is done when both happened. */
  private pending = 2;

  /**
   * @param raw the accepted TCP socket: addresses come from it and its
   *   `close` ends the connection (it also fires when a TLS layer closes)
   * @param tls true when `secured(tlsSocket)` will follow; until then no reads or writes
   */
  constructor(
    raw: Socket,
    private readonly host: ConnectionHost,
    state: S,
    tls: boolean,
  ) {
    this._socket = raw;
    this.raw = raw;
    this._remote = formatEndpoint(raw.remoteAddress, raw.remotePort);
    this._local = formatEndpoint(raw.localAddress, raw.localPort);
    this.state = state;
    this.idleMs = host.idleMs;
    raw.on('close', () => this.onClose());
    if (tls)
      raw.on('error', noop); // the TLS layer reports handshake failures
    else this.bind(raw);
  }

  /** The underlying socket (the `TLSSocket` once secured); prefer the context's methods. */
  get socket(): Socket {
    return this._socket;
  }

  /**
   * mTLS: the certificate the client presented, when it verified against
   * `tcp.<name>.tls.ca_file`; undefined without TLS, without a certificate,
   * or with one that did not verify.
   */
  get clientCert(): PeerCertificate | undefined {
    return this._network === 'tcp+tls' ? verifiedPeerCertificate(this._socket) : undefined;
  }

  /** `host:port` of the peer (`[::1]:port` for IPv6), as it was when the connection was accepted. */
  get remoteAddress(): string {
    return this._remote;
  }

  /** `host:port` this connection was accepted on. */
  get localAddress(): string {
    return this._local;
  }

  /** `tcp`, or `tcp+tls` once the TLS handshake has completed. */
  get network(): TcpNetwork {
    return this._network;
  }

  /** golib's `RemoteHost()`: `tcp://127.0.0.1:40000` or `tcp+tls://…`. */
  get remoteHost(): string {
    return `${this._network}://${this.remoteAddress}`;
  }

  /** golib's `LocalHost()`. */
  get localHost(): string {
    return `${this._network}://${this.localAddress}`;
  }

  /**
   * Fired when the service drains or stops, the idle sweeper closes this
   * connection or it is failed (`fail()`, HYP_E_TCP_SEND_BUFFER); `reason` says which.
   */
  get signal(): AbortSignal {
    if (this.controller === undefined) {
      this.controller = new AbortController();
      if (this.abortReason) this.controller.abort(this.abortReason);
    }
    return this.controller.signal;
  }

  isConnected(): boolean {
    return !this.closed && !this._socket.destroyed;
  }

  /** The next chunk, or `null` once the peer finished sending or the connection closed. */
  read(): Promise<Buffer | null> {
    const chunk = this.queue.shift();
    if (chunk !== undefined) return Promise.resolve(this.consumed(chunk));
    if (this.readEnded || this.closed) return Promise.resolve(null);
    return this.wait(false) as Promise<Buffer | null>;
  }

  [Symbol.asyncIterator](): AsyncIterator<Buffer, undefined> {
    // `next` resolves straight to the iterator result: one promise per chunk, not two.
    return {
      next: (): Promise<IteratorResult<Buffer, undefined>> => {
        const chunk = this.queue.shift();
        if (chunk !== undefined) return Promise.resolve({ done: false, value: this.consumed(chunk) });
        if (this.readEnded || this.closed) return Promise.resolve(endOfStream);
        return this.wait(true) as Promise<IteratorResult<Buffer, undefined>>;
      },
      return: () => Promise.resolve(endOfStream),
    };
  }

  /**
   * Write `data`; the promise settles once the socket can take more (backpressure).
   * It rejects once the connection is closed: with the error it was failed
   * with (`fail()`, HYP_E_TCP_SEND_BUFFER, a framing violation), else
   * HYP_E_TCP_CLOSED; a caller that does not await it (fire-and-forget, like
   * `socket.write`) causes no unhandled rejection.
   *
   * The send side is bounded (`max_buffered`): a write that finds more than
   * that many bytes still queued before it — written without waiting for a
   * peer that does not keep up — fails the connection (a byte stream cannot
   * drop one write without corrupting the rest). Only the bytes queued
   * before the write count: one large write is accepted whatever its size,
   * and an awaited write resumes its caller once the queue has drained, so
   * awaited writes never reach the bound.
   */
  write(data: Uint8Array | string): Promise<void> {
    const socket = this._socket;
    if (this.closed || !socket.writable) return this.writeRefused();
    const limit = this.host.maxBuffered;
    // `writableLength` (a TLSSocket's: cleartext) counts what libuv still holds too: not yet the kernel's.
    if (limit > 0 && socket.writableLength > limit) {
      this.fail(this.host.sendBufferExceeded(this, socket.writableLength));
      return this.writeRefused();
    }
    this.activity++;
    this.host.stats.bytesOut += typeof data === 'string' ? Buffer.byteLength(data) : data.byteLength;
    this.info('write');
    if (socket.write(data)) return done;
    this.drainWaiter ??= new Promise<void>((resolve, reject) => {
      const settle = () => {
        socket.off('drain', settle);
        socket.off('close', settle);
        this.drainWaiter = undefined;
        if (socket.destroyed) reject(this.failure ?? new HypError('HYP_E_TCP_CLOSED'));
        else resolve();
      };
      socket.on('drain', settle);
      socket.on('close', settle);
    });
    return handled(this.drainWaiter);
  }

  /**
   * Stop reading: queued and further input is discarded. The socket keeps
   * flowing (`onData` drops what arrives): a paused one would fill the
   * window, and a peer that writes before it reads would stall for good.
   */
  closeRead(): void {
    if (this.readEnded) return;
    this.queue.length = 0;
    this.endRead();
    this._socket.resume();
  }

  /** Half-close: send FIN after pending writes; reading goes on. */
  closeWrite(): void {
    if (this.closed || !this._socket.writable) return;
    this.info('close-write');
    this._socket.end();
  }

  /** Flush pending writes, then close. Resolves once the socket is closed. */
  close(): Promise<void> {
    const socket = this._socket;
    if (socket.destroyed) return done;
    const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
    this.release();
    return closed;
  }

  /**
   * @internal The handler returned: flush, then close. A peer that does not
   * read would keep the flush (and the connection) pending until the idle
   * sweep, forever without one: with writes still queued, a grace timer
   * (`releaseGraceMs`) destroys the socket if it has not closed by then.
   */
  release(): void {
    const socket = this._socket;
    if (socket.destroyed || this.released) return;
    this.released = true;
    if (socket.writable) socket.end(() => socket.destroy());
    // Half-closed by `closeWrite()` with writes still queued: they go first.
    else if (socket.writableEnded && !socket.writableFinished) socket.once('finish', () => socket.destroy());
    else {
      socket.destroy();
      return;
    }
    const graceMs = this.host.releaseGraceMs;
    if (graceMs > 0 && socket.writableLength > 0) {
      const timer = setTimeout(() => socket.destroy(), graceMs);
      timer.unref();
      socket.once('close', () => clearTimeout(timer));
    }
  }

  /** Close at once, dropping unsent data. */
  destroy(): void {
    this._socket.destroy();
  }

  /**
   * Give up on this connection because of `err` (a framing violation, a
   * protocol error): report it to `onError`, fire the signal, close at once.
   */
  fail(err: Error): void {
    if (this.failure !== undefined) return;
    this.failure = err;
    this.host.reportError(err, this);
    this.abort(err);
    this._socket.destroy();
  }

  /**
   * @internal The errno (`ECONNRESET`, `EPIPE`, `ECONNABORTED`, `ETIMEDOUT`)
   * with which the peer reset, left or vanished from this connection, read from the socket's state:
   * set as soon as a read or write of the socket failed that way (before
   * its 'error' event and its close); undefined while the peer has not.
   */
  get peerGone(): string | undefined {
    return this.peerErrno ?? peerGoneErrno(this._socket.errored) ?? peerGoneErrno(this.raw.errored);
  }

  /** The error given to `fail()`, if any. */
  get failedWith(): Error | undefined {
    return this.failure;
  }

  /** A write on a closed connection: rejected (marked handled) with why it closed. */
  private writeRefused(): Promise<void> {
    return handled(Promise.reject(this.failure ?? new HypError('HYP_E_TCP_CLOSED')));
  }

  // ---- service side -------------------------------------------------------

  /** @internal The TLS handshake finished: reads and writes go through `tlsSocket`. */
  secured(tlsSocket: Socket): void {
    this._socket = tlsSocket;
    this._network = 'tcp+tls';
    this.bind(tlsSocket);
  }

  private bind(socket: Socket): void {
    this.bound = true;
    socket.on('data', (chunk: Buffer) => this.onData(chunk));
    socket.on('end', () => this.endRead());
    socket.on('error', (err: NodeJS.ErrnoException) => {
      // A peer that resets or vanishes ends its connection; that is not a service error.
      const errno = peerGoneErrno(err);
      if (errno === undefined) this.host.reportError(err, this);
      else this.peerErrno ??= errno;
    });
  }

  /** @internal Fire the signal (idempotent); the first reason wins. */
  abort(reason: Error): void {
    if (this.abortReason) return;
    this.abortReason = reason;
    this.controller?.abort(reason);
  }

  /**
   * @internal What the idle sweeper compares between passes: reads and
   * writes, plus the bytes of pending writes the kernel has taken — one
   * large write to a slow but steady reader is progress, not idleness. The
   * accepted socket carries the bytes, encrypted ones under TLS too. Bytes
   * of the TLS handshake do not count (`handshake_timeout` bounds it).
   */
  progress(): number {
    return this.bound ? this.activity + flushedBytes(this.raw) : this.activity;
  }

  /** @internal The sweeper found this connection idle. */
  onIdle(idleForMs: number): void {
    this.host.connectionIdle(this, idleForMs);
  }

  /** @internal Resolves once the socket has closed (whether or not the handler has returned). */
  whenClosed(): Promise<void> {
    if (this.closed) return done;
    return new Promise<void>((resolve) => this.raw.once('close', () => resolve()));
  }

  /** @internal The handler (or the handshake that never reached it) settled. */
  handlerSettled(): void {
    if (--this.pending === 0) this.host.connectionDone(this);
  }

  /** @internal Report a state change to `onInfo`. */
  info(state: ConnState): void {
    this.host.onInfo?.(this.localAddress, this.remoteAddress, state);
  }

  private consumed(chunk: Buffer): Buffer {
    if (this.queue.length === 0 && !this.readEnded) this._socket.resume();
    this.info('read');
    return chunk;
  }

  private wait(asResult: boolean): Promise<Buffer | null | IteratorResult<Buffer, undefined>> {
    if (this.waiter !== undefined) return Promise.reject(new HypError('HYP_E_TCP_READ_PENDING'));
    if (this._socket.isPaused()) this._socket.resume();
    this.waitAsResult = asResult;
    return new Promise((resolve) => {
      this.waiter = resolve;
    });
  }

  private onData(chunk: Buffer): void {
    this.activity++;
    this.host.stats.bytesIn += chunk.length;
    if (this.readEnded) return;
    const waiter = this.waiter;
    if (waiter !== undefined) {
      this.waiter = undefined;
      this.info('read');
      waiter(this.waitAsResult ? { done: false, value: chunk } : chunk);
      return;
    }
    this.queue.push(chunk);
    this._socket.pause();
  }

  private endRead(): void {
    if (this.readEnded) return;
    this.readEnded = true;
    this.info('close-read');
    this.wakeReader();
  }

  private onClose(): void {
    if (this.closed) return;
    this.closed = true;
    this.endRead();
    this.info('close');
    if (--this.pending === 0) this.host.connectionDone(this);
  }

  private wakeReader(): void {
    const waiter = this.waiter;
    if (waiter === undefined) return;
    this.waiter = undefined;
    waiter(this.waitAsResult ? endOfStream : null);
  }
}
