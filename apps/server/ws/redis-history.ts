import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import { decodeBusEvent, encodeBusEvent } from './bus-event.js';
import type { Envelope } from './envelope.js';
import { type Flow, PendingFlow, type PendingLimits } from './flow.js';
import type { Recovery } from './history.js';

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
  /**
   * Appends to the channel's shared history; every node (this one included) then gets it via
   * `onDelivery`. `outcome`, for a publish the hub acknowledges, hears what the history knows
   * of it beside that delivery (RedisHistory: Redis's reply).
   */
  publish(channel: string, message: Envelope, outcome?: PublishOutcome): void;
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
  /** Backpressure of the transport, where it has one the hub can wait on (flow.ts). */
  readonly flow?: Flow;
}

/** What a shared history tells of one publish besides its delivery; each called at most once, at once or later. */
export interface PublishOutcome {
  /**
   * It is in the history at `offset` (Redis replied), whether or not its delivery reached this
   * node: an announcement lost with the subscriber connection must not leave it unacknowledged.
   */
  appended(offset: string): void;
  /** The history did not take it: Redis's error, or more than its bound waits for Redis. */
  refused(err: Error): void;
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

export interface RedisHistoryOptions extends PendingLimits {
  url: string;
  prefix?: string;
  /** Entries kept per channel stream. */
  size: number;
  /** How long `recover` (and the catch-up after a reconnect) waits for Redis. Default 5 s. */
  timeoutMs?: number;
  /** Channels whose last delivery is remembered for the catch-up after a reconnect. Default 10,000. */
  maxTracked?: number;
  /**
   * Payload bytes read from Redis per page of a resume (`recover`) or of the catch-up after a
   * reconnect (at least one entry a page). Default 1 MiB, as the supervisor's history replies.
   */
  pageBytes?: number;
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

/** Redis keeps both parts of a stream id as unsigned 64-bit integers. */
const maxStreamIdPart = 18446744073709551615n;
const maxStreamId = `${maxStreamIdPart}-${maxStreamIdPart}`;

/**
 * Why a client's resume offset names no position of a Redis stream, or
 * undefined when it does. Checked before Redis is asked: Redis would refuse
 * it with an error of its own (and the script's hash), which is no answer for
 * a client. An offset of the pod's history (epoch ≥ 2^64) lands here too.
 */
function offsetProblem(offset: string): string | undefined {
  const parts = streamId.exec(offset);
  // 20 digits hold 2^64 - 1; the length test first, so a long offset costs no BigInt parse
  if (parts?.[1] && parts[2] && parts[1].length <= 20 && parts[2].length <= 20) {
    if (BigInt(parts[1]) <= maxStreamIdPart && BigInt(parts[2]) <= maxStreamIdPart) return undefined;
  }
  return parts
    ? 'offset belongs to another history (not a Redis stream id: each part is at most 18446744073709551615)'
    : 'offset belongs to another history (not a shared stream id)';
}

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
 * Conservative: the one offset just before the oldest kept entry counts as gone too, unless
 * `next`, the entry a previous page saw right after `offset`, is known: then exactly whether
 * it was trimmed since (trimming takes the oldest first; ids only grow, so nothing can have
 * been added between the two).
 */
function goneAfter(info: unknown[] | undefined, offset: string, next?: string): boolean {
  if (!info) return offset !== '0-0';
  const deleted = String(infoField(info, 'max-deleted-entry-id') ?? '0-0');
  if (compareStreamIds(offset, deleted) < 0) return true;
  const first = String(infoField(info, 'recorded-first-entry-id') ?? '0-0');
  if (next !== undefined) return compareStreamIds(next, first) < 0;
  const trimmed = Number(infoField(info, 'entries-added') ?? 0) - Number(infoField(info, 'length') ?? 0);
  return compareStreamIds(offset, first) < 0 && (trimmed > 0 || offset !== '0-0');
}

/**
 * One page of a stream: its entries after ARGV[1] up to ARGV[2] ('+' or an id), in order, of at
 * most ARGV[3] payload bytes and ARGV[4] entries (at least one entry), and the id of the first
 * entry left out (false: none is). Read 64 entries at a time, so that neither Redis nor the
 * reply ever holds much more than a page, however large the entries and however many.
 */
const readPage = `
local page, bytes, from = {}, 0, '(' .. ARGV[1]
local maxBytes, maxEntries = tonumber(ARGV[3]), tonumber(ARGV[4])
while true do
  local batch = redis.call('XRANGE', KEYS[1], from, ARGV[2], 'COUNT', 64)
  for _, entry in ipairs(batch) do
    local size = 0
    for i = 2, #entry[2], 2 do size = size + #entry[2][i] end
    if #page > 0 and (bytes + size > maxBytes or #page >= maxEntries) then return {page, entry[1]} end
    page[#page + 1] = entry
    bytes = bytes + size
  end
  if #batch < 64 then return {page, false} end
  from = '(' .. batch[#batch][1]
end`;

/** Entries a page holds at most, however small: a bound on the reply and on the work per page. */
const pageEntries = 10_000;

/** One page read with its stream's bounds at the same instant (one transaction). */
interface Page {
  /** The stream's last id when the page was read ('0-0': no such stream). */
  head: string;
  /** Entries the stream held then: more pages than that cannot be left to read up to `head`. */
  length: number;
  /** Entries after the page's start may be missing (goneAfter). */
  gone: boolean;
  entries: Array<[Buffer, Buffer[]]>;
  /** The entry after the page, when one is left to read up to the end asked for. */
  next: string | undefined;
}

/** Catch-up reads under way at once after a reconnect (each a page at a time). */
const catchUpParallel = 16;

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
  /** Appends waiting for Redis: the hub holds publishing clients while it is congested. */
  readonly flow: PendingFlow;
  private readonly pageBytes: number;
  private closed = false;
  private readonly refusals: RefusalWarning;

  constructor(options: RedisHistoryOptions) {
    this.prefix = `${options.prefix ?? 'hyp'}:hist:`;
    this.announce = `${options.prefix ?? 'hyp'}:hist-announce`;
    this.appendedKey = `${options.prefix ?? 'hyp'}:hist-appended:${this.nodeId}`;
    this.size = Math.max(1, options.size);
    this.timeoutMs = options.timeoutMs ?? 5_000;
    this.maxTracked = Math.max(1, options.maxTracked ?? 10_000);
    this.flow = new PendingFlow(options);
    this.pageBytes = Math.max(1, options.pageBytes ?? 1024 * 1024);
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
   * Appends to the channel's stream. While Redis is slow or unreachable the
   * publish waits (in order) for it. Past the high-water mark the flow is
   * congested and the hub stops reading from publishing clients (flow.ts);
   * past `maxPending` / `maxPendingBytes` waiting publishes one is refused
   * and reported (`onError`) instead of growing memory for the length of the outage.
   */
  publish(channel: string, message: Envelope, outcome?: PublishOutcome): void {
    if (this.closed) return;
    const payload = Buffer.from(encodeBusEvent('publish', channel, this.nodeId, message));
    if (this.flow.full(payload.length)) {
      const err = new Error(
        `publish on channel ${channel} refused: ${this.flow.pending} publishes (${this.flow.pendingBytes} bytes) are waiting for Redis`,
      );
      this.onError(err, channel);
      outcome?.refused(err);
      return;
    }
    this.flow.add(payload.length);
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
      (id: unknown) => {
        this.flow.settle(payload.length);
        this.refusals.ok();
        // none: a resend of an append Redis had made (its reply lost), announced the first time
        if (typeof id === 'string') outcome?.appended(id);
      },
      (err: unknown) => {
        this.flow.settle(payload.length);
        if (this.closed) return;
        const reason = err instanceof Error ? err.message : String(err);
        const refusal = new Error(`publish on channel ${channel} was not appended: ${reason}`);
        this.onError(refusal, channel);
        outcome?.refused(refusal);
      },
    );
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
          await inParallel([...this.tracked], catchUpParallel, ([channel, last]) =>
            this.catchUpChannel(channel, last),
          );
        } catch {
          // Redis went away again: its next 'ready' starts another catch-up
        }
      } while (this.catchUpAgain && !this.closed);
      const held = this.held ?? [];
      this.held = undefined;
      for (const raw of held) this.announced(raw);
    })();
  }

  /**
   * Delivers what `channel`'s stream holds after `last`, a page at a time, up to its last entry
   * when the first page was read (what came after is announced, and held meanwhile). What is no
   * longer in the stream, before the first page or between two (trimmed meanwhile), is reported
   * as a gap before what follows it: each page is read with the stream's bounds in one transaction.
   */
  private async catchUpChannel(channel: string, last: string): Promise<void> {
    const key = this.prefix + channel;
    let from = last;
    let end = '+';
    let next: string | undefined;
    // each page reads at least one of the entries up to `end`, and none can be added below it
    for (let pages = 0, most = 1; pages < most; pages++) {
      const page = await this.page(key, from, end, next, false);
      if (pages === 0) {
        end = page.head;
        most = page.length + 1;
      }
      if (page.gone) {
        const detail =
          pages === 0
            ? 'messages after the offset were lost while this node was cut off from the shared history'
            : 'messages after the offset left the shared history before this node could read them';
        this.gap({ channel, offset: from, detail, resume: page.entries.length > 0 ? from : page.head });
      }
      for (const [idBytes, fields] of page.entries) {
        const event = fields[1] ? decodeBusEvent(fields[1]) : undefined;
        if (event?.kind !== 'publish') continue;
        const id = idBytes.toString();
        this.caughtUp.delete(channel);
        this.caughtUp.set(channel, id);
        if (this.caughtUp.size > this.maxTracked)
          this.caughtUp.delete(this.caughtUp.keys().next().value as string);
        this.deliver(channel, id, event.message);
      }
      const lastRead = page.entries.at(-1)?.[0].toString();
      if (page.next === undefined || lastRead === undefined) return;
      from = lastRead;
      next = page.next;
    }
  }

  /**
   * One page of `key` after `from` up to `end`, read in one transaction with the stream's bounds:
   * a trim between two pages is seen (`gone`), never a silent hole. `next`: the entry the previous
   * page saw after `from`. `strict`: fail at once while Redis is unreachable (see `answer`), else
   * wait for the reconnection up to the timeout (the catch-up runs as the other connection is back).
   */
  private async page(
    key: string,
    from: string,
    end: string,
    next: string | undefined,
    strict: boolean,
  ): Promise<Page> {
    const tx = this.commands
      .multi()
      .xinfo('STREAM', key)
      .callBuffer('EVAL', readPage, 1, key, from, end, this.pageBytes, pageEntries);
    const what = 'XINFO/XRANGE';
    const replies = strict
      ? await this.answer(tx.exec(), what)
      : await withTimeout(tx.exec(), this.timeoutMs, what);
    if (!replies) throw new Error(`${what} transaction aborted`);
    const [[infoErr, infoReply] = [], [pageErr, pageReply] = []] = replies;
    if (pageErr) throw pageErr;
    const info = infoErr ? undefined : (infoReply as unknown[]); // no such stream (any more)
    const [entries, after] = pageReply as [Array<[Buffer, Buffer[]]>, Buffer | null];
    return {
      head: info ? String(infoField(info, 'last-generated-id') ?? '0-0') : '0-0',
      length: info ? Number(infoField(info, 'length') ?? 0) : 0,
      gone: goneAfter(info, from, next),
      entries,
      next: after ? after.toString() : undefined,
    };
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

  /**
   * What follows `offset`, a page at a time (`pageBytes`), up to the channel's last entry when the
   * first page was read: the hub holds the live deliveries from the subscribe on, and they cover
   * what came after. An entry trimmed between two pages fails the recovery, as one trimmed before
   * the first: the replay is whole or refused. `wanted` false between two pages stops it.
   */
  async recover(
    channel: string,
    offset: string,
    wanted?: () => boolean,
  ): Promise<{ head: string; recovery: Recovery }> {
    const key = this.prefix + channel;
    const problem = offset ? offsetProblem(offset) : undefined;
    if (problem) return { head: await this.head(key), recovery: { ok: false, reason: problem } };
    if (offset === maxStreamId) {
      // nothing can follow the largest id, and Redis refuses a range that starts after it
      const head = await this.head(key);
      const recovery: Recovery =
        head === maxStreamId ? { ok: true, messages: [] } : { ok: false, reason: 'offset is in the future' };
      return { head, recovery };
    }
    if (!offset) {
      const head = await this.head(key);
      this.track(channel, head);
      return { head, recovery: { ok: true, messages: [] } };
    }
    const messages: Envelope[] = [];
    let head = '+';
    let from = offset;
    let next: string | undefined;
    // each page reads at least one of the entries up to `head`, and none can be added below it
    for (let pages = 0, most = 1; pages < most; pages++) {
      if (pages > 0 && wanted && !wanted())
        return { head, recovery: { ok: false, reason: 'the replay is no longer wanted' } };
      const page = await this.page(key, from, head, next, true);
      if (pages === 0) {
        head = page.head;
        most = page.length + 1;
        this.track(channel, head);
        if (compareStreamIds(offset, head) > 0)
          return { head, recovery: { ok: false, reason: 'offset is in the future' } };
      }
      if (page.gone) {
        const reason =
          pages === 0
            ? 'messages after the offset are no longer in history'
            : 'messages after the offset left the history while they were being replayed';
        return { head, recovery: { ok: false, reason } };
      }
      for (const [id, fields] of page.entries) {
        const event = fields[1] ? decodeBusEvent(fields[1]) : undefined;
        if (!event) continue;
        event.message.offset = id.toString();
        messages.push(event.message);
      }
      const lastRead = page.entries.at(-1)?.[0].toString();
      if (page.next === undefined || lastRead === undefined)
        return { head, recovery: { ok: true, messages } };
      from = lastRead;
      next = page.next;
    }
    throw new Error(`the replay of channel ${channel} did not end within the entries its stream held`);
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
    // nothing will be appended any more: no client may stay held for it
    this.flow.release();
    await Promise.allSettled([quit(this.sub, this.timeoutMs), quit(this.commands, this.timeoutMs)]);
  }
}

/**
 * Runs `task` over `items`, at most `limit` at once. After a failure no task starts; it rejects
 * with the first failure once the tasks under way have ended (none delivers behind the caller).
 */
async function inParallel<T>(items: T[], limit: number, task: (item: T) => Promise<void>): Promise<void> {
  let at = 0;
  let failure: { err: unknown } | undefined;
  const worker = async (): Promise<void> => {
    while (at < items.length && failure === undefined) {
      const item = items[at++]!;
      try {
        await task(item);
      } catch (err) {
        failure ??= { err };
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  if (failure) throw failure.err;
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
