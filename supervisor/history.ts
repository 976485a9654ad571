/**
 * Pod-wide channel history, kept by the supervisor (which lives as long as
 * the pod) for the workers' WebSocket hubs: the "embedded bus" history.
 *
 * The supervisor assigns every channel publish its offset, keeps the last
 * `size` payloads per channel, and answers recovery requests. Payloads are
 * opaque bytes: this module knows nothing about the hub's envelope.
 *
 * Offsets are `<epoch>-<seq>`:
 * - `epoch` is a decimal number ≥ 2^64 drawn at random per supervisor, so an
 *   offset from another pod or an earlier supervisor never matches (explicit
 *   failure), and a Redis stream id (whose first part is < 2^64) never
 *   collides with one. Same shape as a stream id, so offsets of one epoch
 *   order with the same comparison.
 * - `seq` grows by one per publish on a channel. A channel created (again,
 *   after LRU eviction) starts after the pod-wide publish count, so every
 *   seq of a new incarnation is above every seq of an old one.
 *
 * Bounds: `size` payloads per channel, `maxChannels` channels (the least
 * recently published channel is forgotten first) and `maxBytes` of payload
 * in all (oldest first: the channel that has held payloads the longest gives
 * up its oldest ones; the channel and its offsets stay). After a channel
 * eviction, an offset older than the eviction that names a channel the
 * history does not fully cover is refused (conservative: never a silent
 * gap); an offset whose successors were dropped for size or bytes is refused
 * the same way.
 */
import { randomBytes } from 'node:crypto';
import type { HistoryRecoverReply, HistoryRecoverRequest } from './ipc.js';

export interface PodHistoryOptions {
  /** Payloads kept per channel (≥ 1). */
  size: number;
  /** Channels kept; the least recently published is evicted first. Default 10,000. */
  maxChannels?: number;
  /** Payload bytes kept across all channels. Default: no byte bound. */
  maxBytes?: number;
  /** Fixed epoch (tests); default random ≥ 2^64. */
  epoch?: bigint;
}

export interface HistoryEntry {
  offset: string;
  payload: Uint8Array;
}

export type HistoryRecovery =
  | {
      ok: true;
      head: string;
      entries: HistoryEntry[];
      /** More entries follow the last one (the reply was cut at `maxBytes`): ask again from it. */
      more?: boolean;
    }
  | { ok: false; head: string; reason: string };

/** A channel's entries: a circular buffer of at most `size`, oldest at `start`. */
class Ring {
  readonly entries: (HistoryEntry | undefined)[] = [];
  start = 0;
  count = 0;
  /** Payload bytes held. */
  bytes = 0;
  /** Seq of the last publish; `base` while empty. */
  last: number;
  constructor(readonly base: number) {
    this.last = base;
  }
}

function randomEpoch(): bigint {
  return (1n << 64n) + BigInt(`0x${randomBytes(6).toString('hex')}`);
}

export class PodHistory {
  readonly epoch: string;
  private readonly prefix: string;
  private readonly size: number;
  private readonly maxChannels: number;
  private readonly maxBytes: number;
  private readonly rings = new Map<string, Ring>();
  /**
   * Rings holding payloads, in the order they went from empty to holding: the
   * first has held payloads the longest, so its oldest entry is about the
   * oldest of all. `trim` walks it without ever visiting an empty ring.
   */
  private readonly holding = new Set<Ring>();
  /** Payload bytes held across all channels. */
  bytes = 0;
  /** Payloads dropped to stay within `maxBytes` so far (metric). */
  dropped = 0;
  /** Publishes in the pod so far: an upper bound of every seq handed out. */
  private published = 0;
  /** `published` at the latest channel eviction. */
  private evictedAt = 0;
  /** Channels evicted so far (metric). */
  evictions = 0;

  constructor(options: PodHistoryOptions) {
    this.size = Math.max(1, Math.floor(options.size));
    this.maxChannels = Math.max(1, options.maxChannels ?? 10_000);
    this.maxBytes = Math.max(0, options.maxBytes ?? Number.POSITIVE_INFINITY);
    this.epoch = (options.epoch ?? randomEpoch()).toString();
    this.prefix = `${this.epoch}-`;
  }

  get channels(): number {
    return this.rings.size;
  }

  /** Assigns the next offset on `channel`, keeps the payload, returns the offset. */
  append(channel: string, payload: Uint8Array): string {
    let ring = this.rings.get(channel);
    if (ring) {
      this.rings.delete(channel); // re-insert: Map order is the LRU order
    } else {
      ring = new Ring(this.published);
      if (this.rings.size >= this.maxChannels) {
        const [lru, evicted] = this.rings.entries().next().value as [string, Ring];
        this.rings.delete(lru);
        this.holding.delete(evicted);
        this.bytes -= evicted.bytes;
        this.evictions++;
        this.evictedAt = this.published;
      }
    }
    this.rings.set(channel, ring);
    this.published++;
    const offset = this.prefix + ++ring.last;
    if (payload.byteLength > this.maxBytes) {
      // never kept: it must not empty every other channel on its way out. The channel's older
      // entries go with it: a resume from any of them would need this one.
      while (ring.count > 0) {
        this.dropOldest(ring);
        this.dropped++;
      }
      this.holding.delete(ring);
      this.dropped++;
      return offset;
    }
    if (ring.count === this.size) this.dropOldest(ring);
    ring.entries[(ring.start + ring.count) % this.size] = { offset, payload };
    if (ring.count++ === 0) this.holding.add(ring);
    ring.bytes += payload.byteLength;
    this.bytes += payload.byteLength;
    if (this.bytes > this.maxBytes) this.trim();
    return offset;
  }

  /** Over `maxBytes`: oldest payloads first, from the ring that has held payloads the longest on. */
  private trim(): void {
    for (const ring of this.holding) {
      while (ring.count > 0 && this.bytes > this.maxBytes) {
        this.dropOldest(ring);
        this.dropped++;
      }
      if (ring.count === 0) this.holding.delete(ring);
      if (this.bytes <= this.maxBytes) return;
    }
  }

  private dropOldest(ring: Ring): void {
    const gone = ring.entries[ring.start]!;
    ring.entries[ring.start] = undefined;
    ring.start = (ring.start + 1) % this.size;
    ring.count--;
    ring.bytes -= gone.payload.byteLength;
    this.bytes -= gone.payload.byteLength;
  }

  /** The resume point of a subscriber joining now. */
  head(channel: string): string {
    return this.prefix + (this.rings.get(channel)?.last ?? this.published);
  }

  /** The supervisor's `history-recovered` answer to a worker's recovery request. */
  recoveryReply(
    m: HistoryRecoverRequest,
    maxBytes: number,
  ): { type: 'history-recovered' } & HistoryRecoverReply {
    const r = this.since(`${m.topic}\u0000${m.channel}`, m.offset, maxBytes);
    return {
      type: 'history-recovered',
      id: m.id,
      topic: m.topic,
      head: r.head,
      ok: r.ok,
      entries: r.ok ? r.entries : [],
      more: r.ok ? r.more : undefined,
      reason: r.ok ? undefined : r.reason,
    };
  }

  /**
   * What follows `offset` on `channel`, in order ('' offset: nothing), or why
   * it cannot be replayed. At most `maxBytes` of payload per answer (always
   * at least one entry); `more` then says to ask again from the last one.
   */
  since(channel: string, offset: string, maxBytes = Number.POSITIVE_INFINITY): HistoryRecovery {
    const ring = this.rings.get(channel);
    const head = this.head(channel);
    if (!offset) return { ok: true, head, entries: [] };
    const dash = offset.lastIndexOf('-');
    const seq = Number(offset.slice(dash + 1));
    if (dash <= 0 || !/^\d+$/.test(offset.slice(dash + 1)) || !Number.isSafeInteger(seq))
      return { ok: false, head, reason: 'malformed offset' };
    if (offset.slice(0, dash) !== this.epoch)
      return {
        ok: false,
        head,
        reason: 'offset belongs to another history (another pod, or the pod restarted)',
      };
    const last = ring ? ring.last : this.published;
    if (seq > last) return { ok: false, head, reason: 'offset is in the future' };
    if (seq === last) return { ok: true, head, entries: [] };
    // before this incarnation of the channel: fine unless a channel was evicted since
    if (!ring || seq < ring.base) {
      if (seq < this.evictedAt)
        return {
          ok: false,
          head,
          reason: 'messages after the offset are no longer in history (channel evicted)',
        };
      if (!ring) return { ok: true, head, entries: [] };
    }
    const first = ring.last - ring.count + 1; // seq of the oldest kept entry
    const from = Math.max(seq, ring.base) + 1;
    if (from < first)
      return { ok: false, head, reason: 'messages after the offset are no longer in history' };
    const entries: HistoryEntry[] = [];
    let bytes = 0;
    for (let s = from; s <= ring.last; s++) {
      const entry = ring.entries[(ring.start + (s - first)) % this.size]!;
      if (entries.length > 0 && bytes + entry.payload.length > maxBytes)
        return { ok: true, head, entries, more: true };
      bytes += entry.payload.length;
      entries.push(entry);
    }
    return { ok: true, head, entries };
  }
}
