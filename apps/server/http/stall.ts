/**
 * `server.limits.send_timeout`: a connection with response bytes waiting to
 * go out that make no progress for this long is destroyed. A client that
 * asks for an answer and never reads it (a slow-read attack, or a peer gone
 * without a FIN) otherwise holds its socket, its buffered answer and a
 * `max_connections` slot for good — keep-alive and request timeouts do not
 * cover a response being sent.
 *
 * Progress is read from the socket on one sweep timer per listener: bytes
 * whose writes completed (`bytesWritten - writableLength`) or the libuv
 * write queue (`writeQueueSize`) changed. A socket with nothing pending (a
 * slow handler, an idle keep-alive) is never counted as stalled. One chunk
 * written whole (a large `c.json()`) shows progress only when it is done, so
 * the timeout must exceed the time the slowest legitimate client takes to
 * read the largest single answer: the default is 5 minutes.
 */
import type { Socket } from 'node:net';
import { Counter, type Registry } from 'prom-client';

interface Watched {
  /** Bytes whose writes had completed at the last sweep that saw progress (-1: nothing pending). */
  sent: number;
  /** libuv's write queue at that sweep. */
  queued: number;
  /** When progress was last seen (ms since epoch). */
  since: number;
}

type WithHandle = Socket & { _handle?: { writeQueueSize?: number } | null };

export class SendStallWatch {
  private readonly sockets = new Map<Socket, Watched>();
  private timer: NodeJS.Timeout | undefined;
  private readonly stalled: Counter | undefined;

  constructor(
    private readonly timeoutMs: number,
    registry: Registry | undefined,
    private readonly onStall: (socket: Socket, pendingBytes: number) => void,
  ) {
    this.stalled = timeoutMs > 0 ? stallCounter(registry) : undefined;
  }

  /** Watch `socket` until it closes (nothing when the timeout is 0). */
  watch(socket: Socket): void {
    if (this.timeoutMs <= 0) return;
    this.sockets.set(socket, { sent: -1, queued: 0, since: 0 });
    socket.once('close', () => this.sockets.delete(socket));
    if (this.timer === undefined) {
      this.timer = setInterval(() => this.sweep(), sweepEvery(this.timeoutMs));
      this.timer.unref();
    }
  }

  /** An HTTP/2 stream reset for the same reason (stream-stall.ts): counted alike. */
  countStream(): void {
    this.stalled?.inc();
  }

  get watching(): number {
    return this.sockets.size;
  }

  close(): void {
    clearInterval(this.timer);
    this.timer = undefined;
  }

  private sweep(): void {
    const now = Date.now();
    for (const [socket, w] of this.sockets) {
      const pending = socket.writableLength;
      const queued = (socket as WithHandle)._handle?.writeQueueSize ?? 0;
      if (pending === 0 && queued === 0) {
        w.sent = -1;
        continue;
      }
      const sent = socket.bytesWritten - pending;
      if (sent !== w.sent || queued !== w.queued) {
        w.sent = sent;
        w.queued = queued;
        w.since = now;
        continue;
      }
      if (now - w.since < this.timeoutMs) continue;
      this.sockets.delete(socket);
      this.stalled?.inc();
      this.onStall(socket, pending + queued);
      socket.destroy();
    }
  }
}

/** A quarter of the timeout, between 100 ms and 5 s. */
function sweepEvery(timeoutMs: number): number {
  return Math.min(5_000, Math.max(100, Math.floor(timeoutMs / 4)));
}

function stallCounter(registry: Registry | undefined): Counter | undefined {
  if (!registry) return undefined;
  const name = 'hyp_http_send_timeouts_total';
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter;
  return new Counter({
    name,
    help: 'HTTP connections closed, or HTTP/2 streams reset, because their pending response bytes made no progress for server.limits.send_timeout',
    registers: [registry],
  });
}
