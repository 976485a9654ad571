/**
 * Backpressure a transport offers the hub: while its `flow` is `congested`,
 * the hub stops reading from every client that sends (hub.ts
 * holdWhileCongested), so TCP flow control slows those clients down, and
 * reads from them again once `whenDrained` calls back. Nothing is dropped.
 *
 * - IpcFlow (ipc-flow.ts): messages Node has not yet written to the IPC channel.
 * - PendingFlow (here): publishes waiting for Redis (RedisBus, RedisHistory).
 */
export interface Flow {
  readonly congested: boolean;
  /** Runs `fn` once the transport is no longer congested (at once if it is not). */
  whenDrained(fn: () => void): void;
}

export interface PendingLimits {
  /** Publishes waiting for Redis at most: one more is refused. Default 10,000. */
  maxPending?: number;
  /** Payload bytes of publishes waiting for Redis at most. Default 64 MiB. */
  maxPendingBytes?: number;
  /**
   * Publishes waiting for Redis above which the flow is congested (the hub holds its publishing
   * clients). Default 1,000; at most half of `maxPending`, so that what held clients had already
   * sent still fits under the refusal bound.
   */
  highWater?: number;
  /** Payload bytes waiting for Redis above which the flow is congested. Default 8 MiB; at most half of `maxPendingBytes`. */
  highWaterBytes?: number;
}

/** Publishes still waiting at or below which a congested flow counts as drained (as ipc-flow.ts). */
const lowWater = 16;

/**
 * Publishes sent to Redis whose reply has not come yet. Two bounds: above the
 * high-water mark the flow is `congested`, and the hub stops reading from
 * clients; at the hard bound a publish is refused (`full`), for publishes
 * nothing can slow down (the app's own, server side) and for clients that
 * keep sending what they had sent before the hold took effect.
 *
 * The flow stays congested for as long as Redis does not answer, an outage
 * included: the publishes already taken wait for the reconnection (ioredis
 * sends them then, in order), the clients that send meanwhile wait unread,
 * and both go on when Redis is back. Refusing instead would drop their
 * messages without telling them.
 */
export class PendingFlow implements Flow {
  /** Publishes waiting for Redis. */
  pending = 0;
  /** Their payload bytes. */
  pendingBytes = 0;
  readonly maxPending: number;
  readonly maxPendingBytes: number;
  readonly highWater: number;
  readonly highWaterBytes: number;
  private readonly lowWaterBytes: number;
  private stopped = false;
  private readonly drainWaiters: Array<() => void> = [];

  constructor(limits: PendingLimits = {}) {
    this.maxPending = Math.max(1, limits.maxPending ?? 10_000);
    this.maxPendingBytes = Math.max(1, limits.maxPendingBytes ?? 64 * 1024 * 1024);
    this.highWater = Math.max(1, Math.min(limits.highWater ?? 1_000, Math.floor(this.maxPending / 2)));
    this.highWaterBytes = Math.max(
      1,
      Math.min(limits.highWaterBytes ?? 8 * 1024 * 1024, Math.floor(this.maxPendingBytes / 2)),
    );
    this.lowWaterBytes = Math.floor(this.highWaterBytes / 8);
  }

  /** Whether a publish of `bytes` is past the hard bound (to be refused, not sent). */
  full(bytes: number): boolean {
    return this.pending >= this.maxPending || this.pendingBytes + bytes > this.maxPendingBytes;
  }

  /** A publish of `bytes` was sent to Redis. */
  add(bytes: number): void {
    this.pending++;
    this.pendingBytes += bytes;
    if (this.pending > this.highWater || this.pendingBytes > this.highWaterBytes) this.stopped = true;
  }

  /** Redis answered a publish of `bytes` (or it failed). */
  settle(bytes: number): void {
    this.pending--;
    this.pendingBytes -= bytes;
    if (this.stopped && this.pending <= lowWater && this.pendingBytes <= this.lowWaterBytes) this.release();
  }

  get congested(): boolean {
    return this.stopped;
  }

  whenDrained(fn: () => void): void {
    if (!this.stopped) fn();
    else this.drainWaiters.push(fn);
  }

  /** No longer congested: the held clients are read again (also when the transport closes). */
  release(): void {
    this.stopped = false;
    for (const fn of this.drainWaiters.splice(0)) fn();
  }
}
