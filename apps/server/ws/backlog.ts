import type { Envelope } from './envelope.js';

/**
 * What waits for one connection's socket to drain while a replay from
 * history goes out.
 *
 * A resume sends the whole gap at once, a burst the hub makes itself: even a
 * client reading at full speed cannot take megabytes in no time, so held to
 * `sendBufferLimit` like a live delivery the replay would cut the client off
 * (close policy) or lose most of it silently (drop policy). Instead, replayed
 * messages past the bound wait here, unframed (the history's or the
 * recovery's own envelopes: nothing is copied per connection), and are
 * framed as the socket drains. Every frame after them (live deliveries, acks)
 * waits behind them, in order; only those count against the bound
 * (`liveBytes`): the replay is bounded by the history it comes from.
 */
export class Backlog {
  private readonly items: Array<Envelope | Buffer | undefined> = [];
  /** Per item: counted in `liveBytes`. */
  private readonly live: boolean[] = [];
  /** Index of the next item (no O(n) shift per item). */
  private head = 0;
  /** Bytes of the frames waiting that are not replayed messages. */
  liveBytes = 0;

  constructor(readonly onDrain: () => void) {}

  /** A replayed message (framed when it goes out), or one framed already. */
  pushReplay(message: Envelope | Buffer): void {
    this.items.push(message);
    this.live.push(false);
  }

  /** A frame behind the replay (a live delivery, an ack). */
  pushFrame(frame: Buffer): void {
    this.items.push(frame);
    this.live.push(true);
    this.liveBytes += frame.length;
  }

  /** The next item, taken off the backlog; undefined when it is empty. */
  shift(): Envelope | Buffer | undefined {
    if (this.head >= this.items.length) return undefined;
    const item = this.items[this.head];
    this.items[this.head] = undefined;
    if (this.live[this.head++] && Buffer.isBuffer(item)) this.liveBytes -= item.length;
    return item;
  }
}
