/**
 * TLS for TCP services: a thin seam over the shared `TlsManager`
 * (apps/server/tls/) — same hardened options, certificate hot reload,
 * session cache and supervisor ticket keys as the HTTP listener.
 *
 * The service accepts plain sockets itself and hands the ones it keeps to a
 * non-listening `tls.Server` (`server.emit('connection', raw)`, the
 * documented injection path), so accept-time checks (rate limit,
 * max_connections) run before any handshake work and Node's own client
 * certificate verification applies. The service bounds a handshake itself
 * (`handshake_timeout`, and the idle sweeper, for which handshake bytes are
 * no progress). Node's own handshake timer is set out of reach: its
 * `handshakeTimeout: 0` means the default 120 s, after which it reports
 * "TLS handshake timeout" and leaves the socket open.
 */
import { createServer, type Server as TlsServer } from 'node:tls';
import type { Registry } from 'prom-client';
import type { TlsConfig } from '../../../supervisor/config/schema.js';
import type { TicketKeys } from '../../../supervisor/ipc.js';
import type { Logger } from '../../../supervisor/log.js';
import { TlsManager } from '../tls/manager.js';

export interface TcpTls {
  /** A configured, non-listening TLS server; its certificate is kept current. */
  createServer(): TlsServer;
  /** The supervisor's shared session-ticket keys (`tls-keys` IPC message). */
  setTicketKeys(keys: TicketKeys): void;
  /** Stop watching files. */
  close(): void;
}

export interface TcpTlsOptions {
  registry?: Registry | undefined;
  log?: Logger | undefined;
  /** Quiet period after a file event before reloading (TlsManager's default when absent). */
  debounceMs?: number;
}

/** The longest delay a Node.js timer keeps (about 24.8 days). */
const outOfReachMs = 2 ** 31 - 1;

/** Reads and checks the files at once: throws HYP_E_TLS_FILE / HYP_E_TLS_MISMATCH naming `at`. */
export function createTcpTls(config: TlsConfig, at: string, opts: TcpTlsOptions = {}): TcpTls {
  const manager = new TlsManager({
    config,
    at,
    alpn: [],
    handshakeTimeoutMs: outOfReachMs,
    registry: opts.registry,
    log: opts.log,
    ...(opts.debounceMs === undefined ? {} : { debounceMs: opts.debounceMs }),
  });
  return {
    createServer() {
      const { ALPNProtocols: _none, ...options } = manager.serverOptions();
      const server = createServer(options);
      manager.attach(server);
      return server;
    },
    setTicketKeys: (keys) => manager.setTicketKeys(keys),
    close: () => manager.close(),
  };
}
