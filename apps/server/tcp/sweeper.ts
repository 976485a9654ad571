/**
 * One idle sweeper per worker: a single interval walks every tracked
 * connection and compares its progress (reads, writes, bytes of a write the
 * kernel took) with the value seen on the previous pass. Connections never
 * arm a timer of their own, so 10,000 idle sockets cost one timer and one
 * loop, not 10,000 timers.
 *
 * A connection is closed once its progress has not moved for `idleMs`,
 * measured from the sweep that first saw it at its current value: never
 * early, and at most two sweep intervals late.
 */

export interface Sweepable {
  /**
   * A number that moves whenever the item makes progress (for a connection:
   * a read, a write, bytes of a pending write taken by the kernel), read
   * once per pass and compared with the previous one: O(1), no allocation.
   */
  progress(): number;
  /** Idle limit in milliseconds (> 0). */
  readonly idleMs: number;
  /** Called once, from the sweep, when the limit is exceeded. */
  onIdle(idleForMs: number): void;
  /** Sweeper bookkeeping, owned by the sweeper: slot in its list (-1: not watched), progress seen, since when. */
  sweepSlot: number;
  sweepSeen: number;
  sweepSince: number;
}

/** Shortest and longest sweep interval; the interval is a quarter of the smallest idle limit. */
const minIntervalMs = 10;
const maxIntervalMs = 250;

export class IdleSweeper {
  /** Dense list; removal swaps the last item into the hole, so add and delete are O(1) without hashing. */
  private readonly items: Sweepable[] = [];
  private timer: NodeJS.Timeout | undefined;
  private intervalMs = maxIntervalMs;
  private readonly now: () => number;

  constructor(now: () => number = Date.now) {
    this.now = now;
  }

  /** Start watching `item`; its idle time counts from now. */
  add(item: Sweepable): void {
    if (item.sweepSlot >= 0) return;
    item.sweepSlot = this.items.length;
    item.sweepSeen = item.progress();
    item.sweepSince = this.now();
    this.items.push(item);
    const wanted = Math.min(maxIntervalMs, Math.max(minIntervalMs, Math.floor(item.idleMs / 4)));
    if (this.timer === undefined || wanted < this.intervalMs) this.schedule(wanted);
  }

  /**
   * Stop watching `item`. The timer is not stopped here but by the next sweep
   * that finds nothing to watch, so connection churn around zero does not
   * create and clear an interval per connection.
   */
  delete(item: Sweepable): void {
    const slot = item.sweepSlot;
    if (slot < 0) return;
    const last = this.items.pop()!;
    if (last !== item) {
      this.items[slot] = last;
      last.sweepSlot = slot;
    }
    item.sweepSlot = -1;
  }

  /** Connections being watched. */
  get size(): number {
    return this.items.length;
  }

  /** Timers this sweeper holds: at most 1, whatever the connection count (0 once a sweep finds nothing). */
  get timers(): number {
    return this.timer === undefined ? 0 : 1;
  }

  get interval(): number {
    return this.intervalMs;
  }

  /** One pass; public so tests and shutdown paths can force it. */
  sweep(): void {
    const now = this.now();
    const items = this.items;
    // Backwards: a removal moves the last item, already visited, into the hole.
    for (let i = items.length - 1; i >= 0; i--) {
      const item = items[i]!;
      const progress = item.progress();
      if (progress !== item.sweepSeen) {
        item.sweepSeen = progress;
        item.sweepSince = now;
      } else if (now - item.sweepSince >= item.idleMs) {
        this.delete(item);
        item.onIdle(now - item.sweepSince);
      }
    }
    if (items.length === 0) this.stop();
  }

  private schedule(intervalMs: number): void {
    this.stop();
    this.intervalMs = intervalMs;
    this.timer = setInterval(() => this.sweep(), intervalMs);
    this.timer.unref();
  }

  private stop(): void {
    if (this.timer !== undefined) clearInterval(this.timer);
    this.timer = undefined;
  }
}

/** The worker's sweeper, shared by every TCP service in the process. */
export const idleSweeper = new IdleSweeper();
