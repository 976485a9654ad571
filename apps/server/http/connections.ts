/**
 * HTTP/1.1 connection tracking and race-free drain.
 *
 * Node's own `server.close()` calls `closeIdleConnections()`, which destroys
 * a keep-alive socket whose next request is still arriving (headers not yet
 * complete), so the client sees a reset. Here a socket counts as idle only
 * when no request is in flight AND no byte has arrived since its last
 * response finished (`socket.bytesRead` moves as soon as a partial request
 * lands). During drain every response carries `Connection: close`; sockets
 * that stay idle for `idleGraceMs` are ended; the rest close themselves after
 * their next response.
 */
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

interface Tracked {
  readonly tracker: ConnectionTracker;
  readonly socket: Socket;
  inflight: number;
  /** `socket.bytesRead` when the socket last became idle. */
  idleBytes: number;
  /** When it last became idle (ms since epoch). */
  idleSince: number;
}

const kTracked = Symbol('hyp.tracked');
type TrackedResponse = ServerResponse & { [kTracked]?: Tracked | undefined };

function onResponseClose(this: TrackedResponse): void {
  const t = this[kTracked];
  if (t === undefined) return;
  this[kTracked] = undefined;
  t.tracker.requestDone(t);
}

export class ConnectionTracker {
  private readonly sockets = new Map<Socket, Tracked>();
  private draining = false;
  private inflightTotal = 0;
  private sweep: NodeJS.Timeout | undefined;
  private idleWaiters: Array<() => void> = [];

  /** Call before any other 'request' listener. */
  attach(server: Server): void {
    server.on('connection', (socket: Socket) => {
      this.sockets.set(socket, { tracker: this, socket, inflight: 0, idleBytes: 0, idleSince: Date.now() });
      // In-flight responses of a closing socket emit their own 'close' (requestDone).
      socket.once('close', () => {
        this.sockets.delete(socket);
        this.checkIdle();
      });
    });
    server.prependListener('request', (req: IncomingMessage, res: ServerResponse) =>
      this.onRequest(req, res),
    );
    // An upgraded socket (WebSocket) leaves HTTP: its hub drains it with
    // spread close frames, so HTTP drain must neither end it as "idle" nor wait for it.
    server.prependListener('upgrade', (req: IncomingMessage) => {
      if (!this.sockets.delete(req.socket)) return;
      this.checkIdle();
    });
  }

  private onRequest(req: IncomingMessage, res: ServerResponse): void {
    const t = this.sockets.get(req.socket);
    if (!t) return;
    t.inflight++;
    this.inflightTotal++;
    if (this.draining) res.setHeader('connection', 'close');
    // One listener, no closure per request: 'close' follows every finished
    // or aborted response (on a nextTick, before any further socket read).
    (res as TrackedResponse)[kTracked] = t;
    res.on('close', onResponseClose);
  }

  /** @internal A response on a tracked socket closed. */
  requestDone(t: Tracked): void {
    t.inflight--;
    this.inflightTotal--;
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
    for (const [socket, t] of this.sockets) {
      if (t.inflight === 0) continue;
      const res = (socket as Socket & { _httpMessage?: ServerResponse })._httpMessage;
      if (res && !res.headersSent) res.setHeader('connection', 'close');
    }
    const tick = () => this.closeIdle(idleGraceMs);
    this.sweep = setInterval(tick, Math.max(50, Math.min(idleGraceMs, 250)));
    this.sweep.unref();
    tick();
  }

  private closeIdle(idleGraceMs: number): void {
    const now = Date.now();
    for (const [socket, t] of this.sockets) {
      if (t.inflight > 0) continue;
      if (socket.bytesRead !== t.idleBytes) continue; // a request is arriving
      // A response that went out before drain promised keep-alive; give the
      // client a moment to reuse the socket and get `Connection: close`.
      if (now - t.idleSince < idleGraceMs) continue;
      socket.end();
      socket.destroySoon();
    }
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
    for (const socket of this.sockets.keys()) socket.destroy();
    if (this.sweep) clearInterval(this.sweep);
  }

  stop(): void {
    if (this.sweep) clearInterval(this.sweep);
  }
}
