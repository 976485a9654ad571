/**
 * The HTTP listener of a worker: serves the `http` fd handed over by the
 * supervisor (or binds `server.addr` itself in standalone mode) and drains
 * without dropping a request.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { type AddressInfo, Server as NetServer } from 'node:net';
import type { Config } from '../../../supervisor/config/schema.js';
import { durationMs, parseAddress, sizeBytes } from '../../../supervisor/config/units.js';
import { ConnectionTracker } from './connections.js';

export type RequestListener = (req: IncomingMessage, res: ServerResponse) => void;

/** Where a listener comes from: an inherited fd or an address to bind. */
export type ListenTarget = { fd: number } | { host?: string | undefined; port: number };

export interface HttpServerOptions {
  config: Config;
  handler: RequestListener;
}

/** How long a keep-alive socket idle during drain is given to send one more request. */
const drainIdleGraceMs = 500;

export class HttpServer {
  readonly server: Server;
  private readonly tracker = new ConnectionTracker();
  private state: 'idle' | 'listening' | 'draining' | 'closed' = 'idle';

  constructor(private readonly opts: HttpServerOptions) {
    const limits = opts.config.server.limits;
    this.server = createServer({
      maxHeaderSize: sizeBytes(limits.max_header_size),
      headersTimeout: durationMs(limits.headers_timeout),
      requestTimeout: durationMs(limits.request_timeout),
      keepAliveTimeout: durationMs(limits.keep_alive_timeout),
      noDelay: true,
    });
    if (limits.max_connections > 0) this.server.maxConnections = limits.max_connections;
    this.tracker.attach(this.server);
    this.server.on('request', opts.handler);
    // Ignore client errors that Node already answers (400/408/431); never crash.
    this.server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      if (err.code === 'ECONNRESET' || !socket.writable) return socket.destroy();
      const status = err.code === 'HPE_HEADER_OVERFLOW' ? 431 : err.code === 'ERR_HTTP_REQUEST_TIMEOUT' ? 408 : 400;
      socket.end(`HTTP/1.1 ${status} ${status === 431 ? 'Request Header Fields Too Large' : 'Bad Request'}\r\nconnection: close\r\ncontent-length: 0\r\n\r\n`);
    });
  }

  listen(target: ListenTarget): Promise<AddressInfo> {
    return new Promise((resolve, reject) => {
      const onError = (err: Error) => reject(err);
      this.server.once('error', onError);
      const done = () => {
        this.server.off('error', onError);
        this.state = 'listening';
        resolve(this.server.address() as AddressInfo);
      };
      if ('fd' in target) this.server.listen({ fd: target.fd }, done);
      else this.server.listen({ host: target.host, port: target.port }, done);
    });
  }

  get connections(): number {
    return this.tracker.connections;
  }

  get inflight(): number {
    return this.tracker.inflight;
  }

  /**
   * Stop accepting (the supervisor's copy of the socket keeps the backlog for
   * the next generation), finish in-flight requests with `Connection: close`,
   * end idle keep-alive sockets, and resolve when none is left or at the
   * deadline (then the rest are destroyed).
   */
  async drain(deadline: number): Promise<void> {
    if (this.state === 'draining' || this.state === 'closed') return this.tracker.whenIdle();
    this.state = 'draining';
    // net.Server's close, not http.Server's: the latter also runs
    // closeIdleConnections(), which races requests that are still arriving.
    // The listening handle closes synchronously; the callback would wait for connections.
    if (this.server.listening) NetServer.prototype.close.call(this.server);
    this.tracker.startDrain(drainIdleGraceMs);
    const remaining = deadline - Date.now();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([
      this.tracker.whenIdle(),
      new Promise<void>((resolve) => {
        timer = setTimeout(resolve, Math.max(0, remaining));
      }),
    ]);
    clearTimeout(timer);
    this.tracker.destroyAll();
    this.state = 'closed';
  }
}


export function listenTargetFor(addr: string): ListenTarget {
  const parsed = parseAddress(addr);
  if (!parsed) throw new TypeError(`not an address: ${addr}`);
  return { host: parsed.host, port: parsed.port };
}
