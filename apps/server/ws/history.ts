import { randomBytes } from 'node:crypto';
import { type Envelope, ownBytes } from './envelope.js';

/**
 * Per-channel sequence numbers and a bounded history for recovery.
 *
 * Every delivery on a channel gets the next sequence number; its offset on
 * the wire is `<epoch>:<seq>`. The epoch names this history instance, so an
 * offset from another process (or from before a restart) is recognised as
 * foreign and recovery fails explicitly instead of replaying the wrong
 * messages. Memory: at most `size` messages per channel, `maxChannels`
 * channels (the least recently published channel is forgotten first) and
 * `maxBytes` of data in all (the oldest messages first, from the channel
 * that has held messages the longest; the channel and its numbering stay,
 * as in the supervisor's pod-wide history). A channel created (again)
 * numbers from the history's publish count on, so an offset from an evicted
 * incarnation never names a message of the new one: after an eviction such
 * an offset fails explicitly (conservative), and so does one whose
 * successors were dropped for count or bytes.
 */

export interface HistoryOptions {
  /** Messages kept per channel; 0 disables history (offsets are still assigned). */
  size: number;
  maxChannels?: number;
  /** Data bytes kept across all channels (`websocket.history_bytes`). Default: no byte bound. */
  maxBytes?: number;
  epoch?: string;
}

/** A channel's messages: a circular buffer of at most `size`, oldest at `start`. */
class Ring {
  readonly items: (Envelope | undefined)[] = [];
  start = 0;
  count = 0;
  /** Data bytes held. */
  bytes = 0;
  /** Sequence number of the next message. */
  next: number;
  /**
   * Publishes in this history when the ring was created: its seqs start
   * above it, so they are above every seq of an earlier (evicted)
   * incarnation of the channel and an old offset is never mistaken for a new one.
   */
  constructor(readonly base: number) {
    this.next = base + 1;
  }

  /** Sequence number of the oldest message kept (`next` when none is). */
  get first(): number {
    return this.next - this.count;
  }
}

export type Recovery = { ok: true; messages: Envelope[] } | { ok: false; reason: string };

export class History {
  readonly epoch: string;
  private readonly size: number;
  private readonly maxChannels: number;
  private readonly maxBytes: number;
  private readonly rings = new Map<string, Ring>();
  /** Rings holding messages, in the order they went from empty to holding (the first has held the longest). */
  private readonly holding = new Set<Ring>();
  /** Data bytes held across all channels. */
  bytes = 0;
  /** Appends so far: an upper bound of every seq handed out. */
  private published = 0;
  /** `published` at the latest channel eviction. */
  private evictedAt = 0;

  constructor(options: HistoryOptions) {
    this.size = options.size;
    this.maxChannels = options.maxChannels ?? 10_000;
    this.maxBytes = options.maxBytes ?? Number.POSITIVE_INFINITY;
    this.epoch = options.epoch ?? randomBytes(6).toString('base64url');
  }

  /**
   * Assigns the next offset to `message` (mutating its `offset`) and keeps
   * it; its `data` is replaced by a copy when it is a view into a larger buffer.
   */
  append(channel: string, message: Envelope): string {
    let ring = this.rings.get(channel);
    if (ring) {
      this.rings.delete(channel);
    } else {
      ring = new Ring(this.published);
      if (this.rings.size >= this.maxChannels) {
        const [lru, evicted] = this.rings.entries().next().value as [string, Ring];
        this.rings.delete(lru);
        this.holding.delete(evicted);
        this.bytes -= evicted.bytes;
        this.evictedAt = this.published;
      }
    }
    this.rings.set(channel, ring);
    this.published++;
    const seq = ring.next++;
    message.offset = `${this.epoch}:${seq}`;
    const size = message.data.byteLength;
    if (this.size === 0) return message.offset;
    if (size > this.maxBytes) {
      // never kept: it must not empty every other channel on its way out; the channel's older
      // messages go with it, since a resume from any of them would need this one
      while (ring.count > 0) this.dropOldest(ring);
      this.holding.delete(ring);
      return message.offset;
    }
    // kept past this tick: its data must not be a view pinning the buffer it was decoded from
    message.data = ownBytes(message.data);
    if (ring.count === this.size) this.dropOldest(ring);
    ring.items[(ring.start + ring.count) % this.size] = message;
    if (ring.count++ === 0) this.holding.add(ring);
    ring.bytes += size;
    this.bytes += size;
    if (this.bytes > this.maxBytes) this.trim();
    return message.offset;
  }

  /** Over `maxBytes`: the oldest messages first, from the ring that has held messages the longest on. */
  private trim(): void {
    for (const ring of this.holding) {
      while (ring.count > 0 && this.bytes > this.maxBytes) this.dropOldest(ring);
      if (ring.count === 0) this.holding.delete(ring);
      if (this.bytes <= this.maxBytes) return;
    }
  }

  private dropOldest(ring: Ring): void {
    const gone = ring.items[ring.start]!;
    ring.items[ring.start] = undefined;
    ring.start = (ring.start + 1) % this.size;
    ring.count--;
    ring.bytes -= gone.data.byteLength;
    this.bytes -= gone.data.byteLength;
  }

  /** The offset a new subscriber would resume from: the last assigned one. */
  head(channel: string): string {
    const ring = this.rings.get(channel);
    return `${this.epoch}:${ring ? ring.next - 1 : this.published}`;
  }

  /** Messages after `offset`, in order, or why they cannot all be replayed. */
  since(channel: string, offset: string): Recovery {
    const colon = offset.lastIndexOf(':');
    const epoch = offset.slice(0, colon);
    const digits = offset.slice(colon + 1);
    const seq = Number(digits);
    // Decimal digits only, as the pod-wide history: `Number` would also take '', ' 12', '1e3' and '0x10'.
    if (colon < 0 || !/^\d+$/.test(digits) || !Number.isSafeInteger(seq))
      return { ok: false, reason: 'malformed offset' };
    if (epoch !== this.epoch)
      return { ok: false, reason: 'offset belongs to another history (server restarted or moved)' };
    const ring = this.rings.get(channel);
    const next = ring ? ring.next : this.published + 1;
    if (seq === next - 1) return { ok: true, messages: [] };
    if (seq >= next) return { ok: false, reason: 'offset is in the future' };
    // before this incarnation of the channel: fine unless a channel was evicted since
    if (!ring || seq < ring.base) {
      if (seq < this.evictedAt)
        return { ok: false, reason: 'messages after the offset are no longer in history (channel evicted)' };
      if (!ring) return { ok: true, messages: [] };
    }
    const from = Math.max(seq, ring.base) + 1;
    if (from < ring.first) return { ok: false, reason: 'messages after the offset are no longer in history' };
    const messages: Envelope[] = [];
    const first = ring.first;
    for (let s = from; s < next; s++) {
      messages.push(ring.items[(ring.start + (s - first)) % this.size]!);
    }
    return { ok: true, messages };
  }
}
