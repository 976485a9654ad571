import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { decodeBusEvent, encodeBusEvent } from './bus-event.js';
import type { Envelope } from './envelope.js';
import type { Recovery } from './history.js';
import type { IpcFlow } from './ipc-flow.js';

/**
 * Channel history shared by every pod, in Redis Streams (Redis ≥ 7).
 *
 * A channel publish is one Lua call that appends to the channel's stream
 * (`XADD … MAXLEN n`) and announces the entry on one pub/sub channel. Being
 * one atomic step, the announcement order is the stream order, so every node
 * delivers a channel's messages in the same order with the same offset (the
 * stream id), and a client can resume from that offset on any node. The
 * origin node receives its own announcements too and delivers from them:
 * one path for every node keeps the order identical everywhere.
 */

export interface SharedHistory {
  /** Appends to the channel's shared history; every node (this one included) then gets it via `onDelivery`. */
  publish(channel: string, message: Envelope): void;
  onDelivery(handler: (channel: string, message: Envelope) => void): () => void;
  /**
   * Deliveries this node missed are gone from the history (found by the catch-up after a
   * reconnect): called before the deliveries that follow the gap. A history whose deliveries
   * cannot be missed (the supervisor's) has none.
   */
  onGap?(handler: (gap: Gap) => void): () => void;
  /**
   * What follows `offset` ('' when nothing is to be recovered) and the channel's current head offset.
   * `wanted` is asked between the pages of a long replay: false (the client left) stops it.
   */
  recover(
    channel: string,
    offset: string,
    wanted?: () => boolean,
  ): Promise<{ head: string; recovery: Recovery }>;
  ready(): Promise<void>;
  close(): Promise<void>;
  /** Backpressure of the transport, where it has one the hub can wait on (ipc-flow.ts). */
  readonly flow?: IpcFlow;
}

/** Entries of `channel` after `offset` that were never delivered here and are no longer in the history. */
export interface Gap {
  channel: string;
  /** The last delivery before the gap. */
  offset: string;
  detail: string;
  /** Where a subscriber resumes from now: `offset` when deliveries follow the gap, else the channel's head. */
  resume: string;
}

export interface RedisHistoryOptions {
  url: string;
  prefix?: string;
  /** Entries kept per channel stream. */
  size: number;
  /** How long `recover` (and the catch-up after a reconnect) waits for Redis. Default 5 s. */
  timeoutMs?: number;
  /** Channels whose last delivery is remembered for the catch-up after a reconnect. Default 10,000. */
  maxTracked?: number;
  /** Publishes waiting for Redis (during an outage) at most. Default 10,000. */
  maxPending?: number;
  /** Payload bytes of publishes waiting for Redis at most. Default 64 MiB. */
  maxPendingBytes?: number;
  /** A publish that was not appended (Redis refused it, or too many wait for Redis). Default: a process warning. */
  onError?: (err: Error, channel: string) => void;
  /** Where the default `onError` reports: a warn line here, else a process warning. */
  log?: Logger;
}

/**
 * Appends and announces once per publish. A connection lost after Redis ran the script but
 * before its reply arrived makes the client send it again on the next connection: each node
 * numbers its appends (ARGV[3]) and the script skips one not above the last it made for this
 * publisher (KEYS[3], kept a day). The client's commands reach Redis in order, so a resend
 * repeats nothing above the last one made, and anything new is above it. Sent as EVAL, never
 * EVALSHA: a NOSCRIPT answer would send one append again behind the next, out of order.
 */
const appendOnce = `
if tonumber(ARGV[3]) <= tonumber(redis.call('GET', KEYS[3]) or '0') then return false end
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'm', ARGV[2])
redis.call('SET', KEYS[3], ARGV[3], 'EX', ARGV[4])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2])
return id`;

/** How long Redis remembers a publisher's last append or bus publish (seconds): a resend after a longer outage may repeat it. */
export const resendWindowSeconds = 86_400;

const streamId = /^(\d+)-(\d+)$/;

/** Orders two stream ids (`ms-seq`). */
export function compareStreamIds(a: string, b: string): number {
  const [, am = '0', as = '0'] = streamId.exec(a) ?? [];
  const [, bm = '0', bs = '0'] = streamId.exec(b) ?? [];
  const ms = BigInt(am) - BigInt(bm);
  if (ms !== 0n) return ms < 0n ? -1 : 1;
  const seq = BigInt(as) - BigInt(bs);
  return seq === 0n ? 0 : seq < 0n ? -1 : 1;
}

function infoField(info: unknown[], name: string): unknown {
  for (let i = 0; i + 1 < info.length; i += 2) if (String(info[i]) === name) return info[i + 1];
  return undefined;
}

/**
 * Whether entries after `offset` may be gone from a stream (`info`: its XINFO STREAM reply,
 * undefined when there is no such stream). XDEL records the largest deleted id; MAXLEN trimming
 * drops entries before the first one left. An offset before the first entry counts as gone
 * unless it is 0-0 on a never-trimmed stream: it then names trimmed entries, or entries of a
 * stream Redis lost (a restart without persistence, an eviction) before this one was created.
 * Conservative: the one offset just before the oldest kept entry counts as gone too.
 */
function goneAfter(info: unknown[] | undefined, offset: string): boolean {
  if (!info) return offset !== '0-0';
  const deleted = String(infoField(info, 'max-deleted-entry-id') ?? '0-0');
  const trimmed = Number(infoField(info, 'entries-added') ?? 0) - Number(infoField(info, 'length') ?? 0);
  const first = String(infoField(info, 'recorded-first-entry-id') ?? '0-0');
  const beforeFirst = compareStreamIds(offset, first) < 0 && (trimmed > 0 || offset !== '0-0');
  return compareStreamIds(offset, deleted) < 0 || beforeFirst;
}

function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`Redis did not answer ${what} within ${ms} ms`)), ms);
    timer.unref();
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

export class RedisHistory implements SharedHistory {
  private readonly commands: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly announce: string;
  private readonly size: number;
  private readonly timeoutMs: number;
  private readonly nodeId = randomBytes(6).toString('hex');
  private readonly handlers = new Set<(channel: string, message: Envelope) => void>();
  private readonly gapHandlers = new Set<(gap: Gap) => void>();
  private readonly subscribed: Promise<unknown>;
  /** Where Redis keeps the number of this node's last append (see appendOnce). */
  private readonly appendedKey: string;
  private appends = 0;
  private readonly onError: (err: Error, channel: string) => void;
  /**
   * Channels a local client subscribed to → the last offset delivered on
   * them (least recently active first). Redis pub/sub does not replay what
   * was announced while the subscriber connection was down; after a
   * reconnect these channels are read from their streams from that offset.
   */
  private readonly tracked = new Map<string, string>();
  private readonly maxTracked: number;
  /**
   * Channel → the last entry the catch-up read from its stream. The
   * announcements of those entries may still be on their way (pub/sub is
   * another connection) and are dropped up to there.
   */
  private readonly caughtUp = new Map<string, string>();
  /** Announcements that arrived while the catch-up after a reconnect ran; delivered after it. */
  private held: Buffer[] | undefined;
  private catchUpAgain = false;
  private subReadies = 0;
  private readonly maxPending: number;
  private readonly maxPendingBytes: number;
  private pending = 0;
  private pendingBytes = 0;
  private closed = false;
  private readonly refusals: RefusalWarning;

  constructor(options: RedisHistoryOptions) {
    this.prefix = `${options.prefix ?? 'hyp'}:hist:`;
    this.announce = `${options.prefix ?? 'hyp'}:hist-announce`;
    this.appendedKey = `${options.prefix ?? 'hyp'}:hist-appended:${this.nodeId}`;
    this.size = Math.max(1, options.size);
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.maxTracked = Math.max(1, options.maxTracked ?? 10_000);
    this.maxPending = Math.max(1, options.maxPending ?? 10_000);
    this.maxPendingBytes = Math.max(1, options.maxPendingBytes ?? 64 * 1024 * 1024);
    this.refusals = new RefusalWarning(options.log);
    this.onError = options.onError ?? this.refusals.report;
    this.commands = new Redis(options.url, { maxRetriesPerRequest: null });
    this.sub = new Redis(options.url, { maxRetriesPerRequest: null });
    this.commands.on('error', () => {});
    this.sub.on('error', () => {});
    this.sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => {
      if (this.held) this.held.push(message);
      else this.announced(message);
    });
    // every (re)connection after the first: what was announced meanwhile never reaches us
    this.sub.on('ready', () => {
      if (++this.subReadies > 1 && !this.closed) this.catchUp();
    });
    this.subscribed = this.sub.subscribe(this.announce);
  }

  /**
   * Appends to the channel's stream. While Redis is unreachable the publish
   * waits (in order) for it; beyond `maxPending` / `maxPendingBytes` waiting
   * publishes a publish is refused and reported (`onError`) instead of
   * growing memory for the length of the outage.
   */
  publish(channel: string, message: Envelope): void {
    if (this.closed) return;
    const payload = Buffer.from(encodeBusEvent('publish', channel, this.nodeId, message));
    if (this.pending >= this.maxPending || this.pendingBytes + payload.length > this.maxPendingBytes) {
      this.onError(
        new Error(
          `publish on channel ${channel} refused: ${this.pending} publishes (${this.pendingBytes} bytes) are waiting for Redis`,
        ),
        channel,
      );
      return;
    }
    this.pending++;
    this.pendingBytes += payload.length;
    const stream = this.prefix + channel;
    const args = [
      stream,
      this.announce,
      this.appendedKey,
      this.size,
      payload,
      ++this.appends,
      resendWindowSeconds,
    ];
    this.commands.eval(appendOnce, 3, ...args).then(
      () => {
        this.settled(payload.length);
        this.refusals.ok();
      },
      (err: unknown) => {
        this.settled(payload.length);
        if (this.closed) return;
        const reason = err instanceof Error ? err.message : String(err);
        this.onError(new Error(`publish on channel ${channel} was not appended: ${reason}`), channel);
      },
    );
  }

  private settled(bytes: number): void {
    this.pending--;
    this.pendingBytes -= bytes;
  }

  onDelivery(handler: (channel: string, message: Envelope) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  private announced(raw: Buffer): void {
    const nl = raw.indexOf(0x0a);
    if (nl < 0) return;
    const id = raw.subarray(0, nl).toString();
    // another client on the announce channel: an offset that is no stream id would break resumption
    if (!streamId.test(id)) return;
    const event = decodeBusEvent(raw.subarray(nl + 1));
    if (event?.kind !== 'publish') return;
    const upTo = this.caughtUp.get(event.target);
    if (upTo !== undefined) {
      // read by the catch-up already: its announcement came later on the other connection
      if (compareStreamIds(id, upTo) <= 0) return;
      this.caughtUp.delete(event.target);
    }
    this.deliver(event.target, id, event.message);
  }

  private deliver(channel: string, id: string, message: Envelope): void {
    message.offset = id;
    if (this.tracked.has(channel)) {
      this.tracked.delete(channel); // re-insert: Map order is the LRU order
      this.tracked.set(channel, id);
    }
    for (const h of this.handlers) {
      try {
        h(channel, message);
      } catch (err) {
        // a throw here would unwind through the Redis client's socket handler and end the process
        process.emitWarning(`websocket delivery failed: ${(err as Error).message}`);
      }
    }
  }

  private track(channel: string, head: string): void {
    if (this.tracked.has(channel)) return;
    this.tracked.set(channel, head);
    if (this.tracked.size > this.maxTracked) this.tracked.delete(this.tracked.keys().next().value as string);
  }

  /**
   * After the subscriber connection came back: hold new announcements, read
   * every tracked channel's stream from its last delivery, deliver what was
   * missed, then what was held (minus what the reads already delivered).
   * What is no longer in a stream is reported (`onGap`) before what follows it.
   */
  private catchUp(): void {
    if (this.held) {
      this.catchUpAgain = true;
      return;
    }
    this.held = [];
    void (async () => {
      do {
        this.catchUpAgain = false;
        try {
          // in effect once answered: every entry appended from here on is announced to us
          await withTimeout(this.sub.subscribe(this.announce), this.timeoutMs, 'SUBSCRIBE');
          const channels = [...this.tracked];
          const reads = await withTimeout(
            Promise.all(channels.map(([channel, last]) => this.readAfter(channel, last))),
            this.timeoutMs,
            'the catch-up reads',
          );
          for (let i = 0; i < channels.length; i++) {
            const [channel, last] = channels[i]!;
            const { head, gone, entries } = reads[i]!;
            if (gone) {
              const detail =
                'messages after the offset were lost while this node was cut off from the shared history';
              this.gap({ channel, offset: last, detail, resume: entries.length > 0 ? last : head });
            }
            for (const [idBytes, fields] of entries) {
              const event = fields[1] ? decodeBusEvent(fields[1]) : undefined;
              if (event?.kind !== 'publish') continue;
              const id = idBytes.toString();
              this.caughtUp.delete(channel);
              this.caughtUp.set(channel, id);
              if (this.caughtUp.size > this.maxTracked)
                this.caughtUp.delete(this.caughtUp.keys().next().value as string);
              this.deliver(channel, id, event.message);
            }
          }
        } catch {
          // Redis went away again: its next 'ready' starts another catch-up
        }
      } while (this.catchUpAgain && !this.closed);
      const held = this.held ?? [];
      this.held = undefined;
      for (const raw of held) this.announced(raw);
    })();
  }

  /** A stream's entries after `last`, read in one transaction with its bounds: a trim in between cannot hide a gap. */
  private async readAfter(
    channel: string,
    last: string,
  ): Promise<{ head: string; gone: boolean; entries: Array<[Buffer, Buffer[]]> }> {
    const key = this.prefix + channel;
    const replies = await this.commands
      .multi()
      .xinfo('STREAM', key)
      .xrangeBuffer(key, `(${last}`, '+')
      .exec();
    if (!replies) throw new Error('XINFO/XRANGE transaction aborted');
    const [[infoErr, infoReply] = [], [rangeErr, range] = []] = replies;
    if (rangeErr) throw rangeErr;
    const info = infoErr ? undefined : (infoReply as unknown[]); // no such stream (any more)
    const head = info ? String(infoField(info, 'last-generated-id') ?? '0-0') : '0-0';
    return { head, gone: goneAfter(info, last), entries: range as Array<[Buffer, Buffer[]]> };
  }

  onGap(handler: (gap: Gap) => void): () => void {
    this.gapHandlers.add(handler);
    return () => this.gapHandlers.delete(handler);
  }

  private gap(gap: Gap): void {
    if (this.tracked.has(gap.channel)) this.tracked.set(gap.channel, gap.resume);
    for (const h of this.gapHandlers) {
      try {
        h(gap);
      } catch (err) {
        // a throw here would end the catch-up: the deliveries after the gap would be lost too
        process.emitWarning(`websocket gap report failed: ${(err as Error).message}`);
      }
    }
  }

  async recover(channel: string, offset: string): Promise<{ head: string; recovery: Recovery }> {
    const key = this.prefix + channel;
    if (offset && !streamId.test(offset)) {
      const head = await this.head(key);
      return {
        head,
        recovery: { ok: false, reason: 'offset belongs to another history (not a shared stream id)' },
      };
    }
    // one transaction: a trim between reading the stream's bounds and its entries would leave a silent gap
    const tx = this.commands.multi().xinfo('STREAM', key);
    if (offset) tx.xrangeBuffer(key, `(${offset}`, '+');
    const replies = await this.answer(tx.exec(), 'XINFO/XRANGE');
    const [infoErr, infoReply] = replies[0] ?? [];
    const info = infoErr ? undefined : (infoReply as unknown[]); // no such stream: nothing was ever published here
    const head = info ? String(infoField(info, 'last-generated-id') ?? '0-0') : '0-0';
    this.track(channel, head);
    if (!offset) return { head, recovery: { ok: true, messages: [] } };
    if (compareStreamIds(offset, head) > 0)
      return { head, recovery: { ok: false, reason: 'offset is in the future' } };
    if (goneAfter(info, offset)) {
      return { head, recovery: { ok: false, reason: 'messages after the offset are no longer in history' } };
    }
    const [rangeErr, range] = replies[1] ?? [];
    if (rangeErr) throw rangeErr;
    const messages: Envelope[] = [];
    for (const [id, fields] of range as Array<[Buffer, Buffer[]]>) {
      const event = fields[1] ? decodeBusEvent(fields[1]) : undefined;
      if (!event) continue;
      event.message.offset = id.toString();
      messages.push(event.message);
    }
    return { head, recovery: { ok: true, messages } };
  }

  private async head(key: string): Promise<string> {
    const [[err, info] = []] = await this.answer(this.commands.multi().xinfo('STREAM', key).exec(), 'XINFO');
    return err ? '0-0' : String(infoField(info as unknown[], 'last-generated-id') ?? '0-0');
  }

  /** Redis's answer, or an explicit failure when it is unreachable: never a recovery that hangs for the outage. */
  private async answer(
    exec: Promise<Array<[Error | null, unknown]> | null>,
    what: string,
  ): Promise<Array<[Error | null, unknown]>> {
    const status = this.commands.status;
    if (status === 'reconnecting' || status === 'close' || status === 'end') {
      exec.catch(() => {});
      throw new Error(`Redis is unreachable (${status})`);
    }
    const replies = await withTimeout(exec, this.timeoutMs, what);
    if (!replies) throw new Error(`${what} transaction aborted`);
    return replies;
  }

  async ready(): Promise<void> {
    await this.subscribed;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
    this.gapHandlers.clear();
    await Promise.allSettled([quit(this.sub, this.timeoutMs), quit(this.commands, this.timeoutMs)]);
  }
}

/** QUIT when connected (replies first), else drop the connection: a QUIT queued for an outage never returns. */
export async function quit(redis: Redis, timeoutMs: number): Promise<void> {
  if (redis.status !== 'ready') {
    redis.disconnect();
    return;
  }
  try {
    await withTimeout(redis.quit(), timeoutMs, 'QUIT');
  } catch {
    redis.disconnect();
  }
}

/**
 * Publishes Redis did not take (`HYP_W_WS_PUBLISH`): a warn line on `log`,
 * else a process warning, once until a publish goes through again (an
 * outage refuses them by the thousand).
 */
export class RefusalWarning {
  private warned = false;
  constructor(private readonly log: Logger | undefined) {}

  readonly report = (err: Error, name: string): void => {
    if (this.warned) return;
    this.warned = true;
    if (this.log) this.log.warn({ code: 'HYP_W_WS_PUBLISH', channel: name, err }, err.message);
    else process.emitWarning(err.message, { code: 'HYP_W_WS_PUBLISH' });
  };

  /** A publish went through: the next refusal is reported again. */
  ok(): void {
    this.warned = false;
  }
}
