/**
 * Public types of hyp's raw TCP services: the handler, the lifecycle
 * callbacks (golib's `FuncError` / `FuncInfo` / `FuncInfoServer`) and the
 * socket-tuning hook.
 */
import type { Socket } from 'node:net';
import type { TcpConnection } from './connection.js';

/**
 * Connection states reported to `onInfo`, in golib's order. The server never
 * reports `dial` (a client-side state); it is listed so clients built on the
 * same types can.
 */
export type ConnState =
  | 'dial'
  | 'new'
  | 'read'
  | 'close-read'
  | 'handler'
  | 'write'
  | 'close-write'
  | 'close';

export type TcpServiceState = 'running' | 'draining' | 'stopped';

/** `tcp` for plain TCP, `tcp+tls` once the TLS handshake completed. */
export type TcpNetwork = 'tcp' | 'tcp+tls';

export type TcpHandler<S extends object = Record<string, unknown>> = (conn: TcpConnection<S>) => unknown;

export interface TcpServiceOptions<S extends object = Record<string, unknown>> {
  /** Errors that concern the service or one connection (handler failures, framing errors, TLS failures, …). */
  onError?: (...errors: Error[]) => void;
  /** Every connection state change, with the local and remote address (`host:port`). */
  onInfo?: (local: string, remote: string, state: ConnState) => void;
  /** Service-level events: listening, draining, refused connections, stopped. */
  onServerInfo?: (message: string) => void;
  /**
   * Tune each accepted socket before the handler runs. Defaults already
   * applied: `setNoDelay(no_delay)` and `setKeepAlive(keep_alive)` from config.
   */
  updateConn?: (socket: Socket) => void;
  /** Initial per-connection state; `{}` when absent. */
  state?: () => S;
}

/** What `app.tcp(name, handler, options)` records for the worker runtime. */
export interface TcpRegistration<S extends object = Record<string, unknown>> {
  readonly name: string;
  readonly handler: TcpHandler<S>;
  readonly options: TcpServiceOptions<S>;
}
