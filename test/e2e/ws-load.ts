/**
 * WebSocket load through the Service: `clients` hyp clients (the client
 * library, reconnect + resume from the last offset) subscribed to one
 * channel, and a publisher client putting its own increasing sequence number
 * in each message at `rate` per second (bounded by `maxMessages` and `maxMs`).
 *
 * Every subscriber records the sequence numbers it receives; at the end each
 * must hold every sequence number that entered the channel, exactly once and
 * in order, from its first one on. The publisher subscribes too, so a message
 * that never entered the channel (lost on the publisher's side) is told apart
 * from one the channel had but a subscriber missed.
 *
 * Each connection's socket records the `X-Hyp-E2E-Server` header of its
 * upgrade response (set by HAProxy), so the harness knows which pod every
 * client ends on.
 */
import type { IncomingMessage } from 'node:http';
import { WebSocket } from 'ws';
import { HypWebSocket, type SocketConstructor } from '../../apps/client/index.js';
import { serverHeader } from './haproxy.js';

export interface WsLoadOptions {
  /** ws://127.0.0.1:<port>/ws */
  readonly url: string;
  readonly channel: string;
  readonly clients: number;
  /** Messages per second. */
  readonly rate: number;
  readonly maxMessages: number;
  readonly maxMs: number;
}

export interface WsClientResult {
  readonly id: string;
  readonly first: number;
  readonly received: number;
  readonly lost: number;
  readonly duplicated: number;
  readonly outOfOrder: number;
  readonly reconnects: number;
  readonly connected: boolean;
  /** Backend address (HAProxy's view) of the connection open at the end. */
  readonly server: string;
  readonly errors: Readonly<Record<string, number>>;
  /** What happened around reconnects and duplicates (bounded): `open@<last seq>`, `close <code>@<last seq>`, `dup <seq>`. */
  readonly trace: readonly string[];
}

export interface WsLoadResult {
  readonly published: number;
  /** How long the publisher ran. */
  readonly publishMs: number;
  /** Published messages no receiver (the publisher included) ever got: lost before entering the channel. */
  readonly neverDelivered: number;
  /** The first of them, and the publisher's connection trace (`published` count at each open/close). */
  readonly neverDeliveredSeqs: readonly number[];
  readonly publisherTrace: readonly string[];
  readonly lost: number;
  readonly duplicated: number;
  readonly outOfOrder: number;
  readonly reconnects: number;
  readonly clients: readonly WsClientResult[];
  readonly ms: number;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** One connection of the client library, with what it saw. */
class Tracked {
  readonly seqs: number[] = [];
  reconnects = 0;
  server = '';
  readonly errors: Record<string, number> = {};
  readonly trace: string[] = [];
  private readonly seen = new Set<number>();
  readonly ws: HypWebSocket;

  constructor(
    readonly id: string,
    url: string,
    channel: string,
    /** For the publisher: how many it has published so far (noted in the trace). */
    sent?: () => number,
  ) {
    const tracked = this;
    /** The `ws` socket, noting which backend answered each upgrade. */
    class TracedSocket extends WebSocket {
      constructor(address: string, protocols?: string | string[]) {
        super(address, protocols);
        tracked.server = '';
        this.on('upgrade', (res: IncomingMessage) => {
          tracked.server = String(res.headers[serverHeader.toLowerCase()] ?? '');
        });
      }
    }
    this.ws = new HypWebSocket(url, {
      clientId: id,
      WebSocket: TracedSocket as unknown as SocketConstructor,
      reconnect: { initialDelayMs: 250, maxDelayMs: 2000 },
      maxQueued: 100_000,
    });
    this.ws.on('reconnecting', () => {
      this.reconnects++;
    });
    const sentNote = () => (sent ? ` sent ${sent()}` : '');
    this.ws.on('open', () => this.note(`open ${this.server}@${this.last}${sentNote()}`));
    this.ws.on('close', (code) =>
      this.note(`close ${code}@${this.last} ${this.ws.offset(channel)}${sentNote()}`),
    );
    this.ws.on('error', (e) => {
      this.errors[e.code] = (this.errors[e.code] ?? 0) + 1;
    });
    this.ws.subscribe(channel, (m) => {
      const seq = m.json<{ seq: number }>().seq;
      if (this.seen.has(seq)) this.note(`dup ${seq} ${m.offset}`);
      this.seen.add(seq);
      this.seqs.push(seq);
    });
  }

  private note(event: string): void {
    if (this.trace.length < 40) this.trace.push(event);
  }

  get last(): number {
    return this.seqs.length === 0 ? 0 : this.seqs[this.seqs.length - 1];
  }

  /** Against every sequence number that entered the channel (`entered`, ascending). */
  judge(entered: readonly number[]): WsClientResult {
    const first = this.seqs[0] ?? 0;
    const seen = new Set<number>();
    let duplicated = 0;
    let outOfOrder = 0;
    let highest = 0;
    for (const seq of this.seqs) {
      if (seen.has(seq)) duplicated++;
      else if (seq < highest) outOfOrder++;
      seen.add(seq);
      highest = Math.max(highest, seq);
    }
    let lost = 0;
    for (const seq of entered) if (seq >= first && !seen.has(seq)) lost++;
    return {
      id: this.id,
      first,
      received: this.seqs.length,
      lost: first === 0 ? entered.length : lost,
      duplicated,
      outOfOrder,
      reconnects: this.reconnects,
      connected: this.ws.connected,
      server: this.server,
      errors: { ...this.errors },
      trace: [...this.trace],
    };
  }
}

export class WsLoad {
  private readonly subscribers: Tracked[] = [];
  private readonly publisher: Tracked;
  private published = 0;
  private timer: ReturnType<typeof setInterval> | undefined;
  private started = 0;

  private constructor(private readonly opts: WsLoadOptions) {
    for (let i = 0; i < opts.clients; i++) {
      this.subscribers.push(new Tracked(`e2e-sub-${i}`, opts.url, opts.channel));
    }
    this.publisher = new Tracked('e2e-publisher', opts.url, opts.channel, () => this.published);
  }

  /** Connects every client, then starts publishing. */
  static async start(opts: WsLoadOptions): Promise<WsLoad> {
    const load = new WsLoad(opts);
    const all = [...load.subscribers, load.publisher];
    await Promise.all(
      all.map((c) =>
        Promise.race([
          c.ws.connect(),
          sleep(30_000).then(() => {
            throw new Error(`${c.id}: not connected after 30 s`);
          }),
        ]),
      ),
    );
    await sleep(500); // the subscribe frames sent on open are acknowledged
    load.publish();
    return load;
  }

  private publish(): void {
    const { rate, maxMessages, maxMs } = this.opts;
    this.started = Date.now();
    // catch up with the schedule on every tick: timers on a busy machine are late
    this.timer = setInterval(() => {
      const elapsed = Date.now() - this.started;
      const due = Math.min(maxMessages, Math.floor((elapsed * rate) / 1000));
      while (this.published < due) this.publisher.ws.publish(this.opts.channel, { seq: ++this.published });
      if (this.published >= maxMessages || elapsed >= maxMs) {
        clearInterval(this.timer);
        this.timer = undefined;
      }
    }, 10);
  }

  /** Waits (bounded by `maxMs`) until every client is connected; false if some are not. */
  async settle(maxMs: number): Promise<boolean> {
    const all = [...this.subscribers, this.publisher];
    for (let i = 0; i * 100 < maxMs && !all.every((c) => c.ws.connected && c.server !== ''); i++) {
      await sleep(100);
    }
    return all.every((c) => c.ws.connected);
  }

  get counts(): { published: number; received: number } {
    return { published: this.published, received: this.subscribers.reduce((n, c) => n + c.seqs.length, 0) };
  }

  /** Stops publishing, lets the last messages arrive (bounded), closes every client and judges. */
  async stop(): Promise<WsLoadResult> {
    if (this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
    const publishMs = Date.now() - this.started;
    const all = [...this.subscribers, this.publisher];
    const last = this.published;
    // bounded settle: everyone has the last message, or 15 s passed
    for (let i = 0; i < 150 && !all.every((c) => c.last >= last); i++) await sleep(100);
    await sleep(200);
    const entered = new Set<number>();
    for (const c of all) for (const seq of c.seqs) entered.add(seq);
    const ordered = [...entered].sort((a, b) => a - b);
    const clients = this.subscribers.map((c) => c.judge(ordered));
    const neverDeliveredSeqs: number[] = [];
    for (let seq = 1; seq <= this.published && neverDeliveredSeqs.length < 20; seq++) {
      if (!entered.has(seq)) neverDeliveredSeqs.push(seq);
    }
    for (const c of all) c.ws.close();
    const sum = (k: 'lost' | 'duplicated' | 'outOfOrder' | 'reconnects') =>
      clients.reduce((n, c) => n + c[k], 0);
    return {
      published: this.published,
      publishMs,
      neverDelivered: this.published - ordered.length,
      neverDeliveredSeqs,
      publisherTrace: [...this.publisher.trace],
      lost: sum('lost'),
      duplicated: sum('duplicated'),
      outOfOrder: sum('outOfOrder'),
      reconnects: sum('reconnects'),
      clients,
      ms: Date.now() - this.started,
    };
  }
}
