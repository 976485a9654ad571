/**
 * Backpressure on a worker's IPC channel to the supervisor.
 *
 * A client publishing as fast as its socket allows hands the worker
 * messages faster than the supervisor reads them off the IPC pipe: Node
 * then queues every unsent message in the worker, without bound (one client
 * took a worker from 96 MB to 646 MB in 20 s, and on until it runs out of
 * memory, taking every connection of the worker with it).
 *
 * Node's `send()` returns false once more than 128 KiB wait to be written
 * ("stop sending"), and calls a send's callback once the message is written.
 * So every message goes out through one `IpcFlow` per channel, which counts
 * the messages not yet written: once `send()` has said stop, the channel is
 * `congested` until at most `lowWater` of them (and `lowWaterBytes`) are left, and the hub stops
 * reading from clients that publish meanwhile (hub.ts), so TCP flow control
 * slows them down instead of the worker's memory growing.
 *
 * The same holds one hop further: what the supervisor relays to a worker
 * that reads its channel slowly (busy, stopped) Node queues in the
 * supervisor. The supervisor then tells every other worker to hold
 * (`bus-hold` on this channel) until that one has caught up (`bus-release`);
 * meanwhile the flow is `congested` as well, so the hub pauses its
 * publishing clients exactly as for its own backed-up channel.
 *
 * A hold cannot reach the backed-up worker itself: it would wait behind that
 * worker's own backlog. Yet with a channel history the publisher is the one
 * that backs up most (every publish comes back to it through the
 * supervisor, and a worker whose subscribers make each delivery costly
 * reads eight publishing clients faster than the one channel that brings
 * their publishes back: one worker, 40 subscribers, 8 clients publishing
 * 4 KB messages reached 32 MiB waiting and was cut off, every client
 * dropped). So the flow counts its own history publishes that have not yet
 * come back (the supervisor marks the publisher's copy `own`): past
 * `lagHighWaterBytes` waiting the worker reads its channel too slowly, and
 * the flow is congested until at most `lowWater` of them, and no more than
 * that many bytes, are left.
 */
import type { IpcChannel } from './bus.js';

/** Messages still unwritten below which a congested channel counts as drained. */
const lowWater = 16;
/**
 * Payload bytes still unwritten at or below which a congested channel counts
 * as drained, too: 16 messages of `max_message_size` (up to megabytes each)
 * would otherwise be let through at once.
 */
const lowWaterBytes = 1024 * 1024;
/** Estimated bytes of own history publishes not yet delivered back past which the worker lags (as the supervisor estimates them). */
const lagHighWaterBytes = 1024 * 1024;
/** What a message costs the supervisor beyond its payload (worker-process.ts `estimatedBytes`). */
const messageOverhead = 256;

/** Payload bytes of a bus message or a history publish (what makes a message large), else 0. */
function payloadBytes(message: unknown): number {
  if (typeof message !== 'object' || message === null) return 0;
  const m = message as { payload?: unknown; message?: { payload?: unknown } };
  const payload = m.payload ?? m.message?.payload;
  return payload instanceof Uint8Array ? payload.byteLength : 0;
}

/** Estimated bytes of `message` if it is a history publish (it comes back to this worker), else 0. */
function roundTripBytes(message: unknown, type: string): number {
  if (typeof message !== 'object' || message === null || (message as { type?: unknown }).type !== type)
    return 0;
  const payload = (message as { payload?: unknown }).payload;
  return payload instanceof Uint8Array ? messageOverhead + payload.byteLength : 0;
}

export class IpcFlow {
  private unwritten = 0;
  /** Payload bytes of the unwritten messages, and each one's, in the order Node writes them. */
  private unwrittenBytes = 0;
  private readonly sizes: number[] = [];
  private stopped = false;
  /** The supervisor asked to hold (another worker is backed up) and has not released yet. */
  private held = false;
  /** Own history publishes sent and not yet delivered back, and their estimated bytes. */
  private roundTrips = 0;
  private roundTripBytes = 0;
  /**
   * The supervisor marks own deliveries: until the first has come, the lag is
   * not judged (a supervisor still running older code after the files on
   * disk were upgraded never marks them; counting would hold for ever).
   */
  private marksOwn = false;
  /** Too many own publishes are not back yet: this worker reads its channel too slowly. */
  private lagging = false;
  private readonly drainWaiters: Array<() => void> = [];
  private readonly writtenWaiters: Array<() => void> = [];

  constructor(private readonly channel: IpcChannel) {
    channel.on('message', this.fromSupervisor);
  }

  /** False when the channel is gone (or cannot send). */
  send(message: unknown): boolean {
    if (typeof this.channel.send !== 'function' || this.channel.connected === false) return false;
    const size = payloadBytes(message);
    this.unwritten++;
    this.unwrittenBytes += size;
    this.sizes.push(size);
    let ok: boolean;
    try {
      ok = this.channel.send(message, this.written);
    } catch (err) {
      // refused before it was queued (a value IPC cannot serialize): no callback will come
      this.unwritten--;
      this.unwrittenBytes -= size;
      this.sizes.pop();
      throw err;
    }
    // false from a channel that closed meanwhile is no congestion: its callbacks come with errors
    if (!ok && isOpen(this.channel)) this.stopped = true;
    const bytes = roundTripBytes(message, 'history-publish');
    if (bytes > 0) {
      this.roundTrips++;
      this.roundTripBytes += bytes;
      if (this.marksOwn && this.roundTripBytes > lagHighWaterBytes) this.lagging = true;
    }
    return true;
  }

  /**
   * Node asked to stop sending and the messages queued since have not yet
   * gone out, or the supervisor holds the pod's publishers, or this worker's
   * own publishes are slow to come back.
   */
  get congested(): boolean {
    return this.stopped || this.held || this.lagging;
  }

  /** Runs `fn` once the channel is no longer congested (at once if it is not). */
  whenDrained(fn: () => void): void {
    if (!this.congested) fn();
    else this.drainWaiters.push(fn);
  }

  /**
   * Resolves once every message sent so far has been written (at once when
   * none waits). Node drops what a process still has queued on its IPC
   * channel when it exits: a worker waits for this before it leaves.
   */
  whenWritten(): Promise<void> {
    if (this.unwritten === 0) return Promise.resolve();
    return new Promise((resolve) => this.writtenWaiters.push(resolve));
  }

  private readonly written = (): void => {
    this.unwritten--;
    this.unwrittenBytes -= this.sizes.shift() ?? 0;
    if (this.unwritten === 0) for (const fn of this.writtenWaiters.splice(0)) fn();
    if (!this.stopped || this.unwritten > lowWater || this.unwrittenBytes > lowWaterBytes) return;
    this.stopped = false;
    this.drained();
  };

  private readonly fromSupervisor = (message: unknown): void => {
    const type =
      typeof message === 'object' && message !== null ? (message as { type?: unknown }).type : undefined;
    if (type === 'bus-hold') this.held = true;
    else if (type === 'bus-release' && this.held) {
      this.held = false;
      this.drained();
    } else if (type === 'history' && (message as { own?: unknown }).own === true) this.cameBack(message);
  };

  private cameBack(delivery: unknown): void {
    this.marksOwn = true;
    if (this.roundTrips === 0) return;
    this.roundTrips--;
    this.roundTripBytes =
      this.roundTrips === 0 ? 0 : Math.max(0, this.roundTripBytes - roundTripBytes(delivery, 'history'));
    if (!this.lagging || this.roundTrips > lowWater || this.roundTripBytes > lagHighWaterBytes) return;
    this.lagging = false;
    this.drained();
  }

  private drained(): void {
    if (this.congested) return;
    for (const fn of this.drainWaiters.splice(0)) fn();
  }
}

function isOpen(channel: IpcChannel): boolean {
  return channel.connected !== false;
}

const flows = new WeakMap<IpcChannel, IpcFlow>();

/** The one flow of `channel`: everything sent on it counts. */
export function flowOf(channel: IpcChannel): IpcFlow {
  let flow = flows.get(channel);
  if (flow === undefined) {
    flow = new IpcFlow(channel);
    flows.set(channel, flow);
  }
  return flow;
}
