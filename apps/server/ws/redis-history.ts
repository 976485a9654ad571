import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import { decodeBusEvent, encodeBusEvent } from './bus-event.js';
import type { Envelope } from './envelope.js';
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
  /** Appends to the channel's shared history; every node (this one included) then gets it via `onDelivery`. */
  publish(channel: string, message: Envelope): void;
  onDelivery(handler: (channel: string, message: Envelope) => void): () => void;
  /** What follows `offset` ('' when nothing is to be recovered) and the channel's current head offset. */
  recover(channel: string, offset: string): Promise<{ head: string; recovery: Recovery }>;
  ready(): Promise<void>;
  close(): Promise<void>;
}

export interface RedisHistoryOptions {
  url: string;
  prefix?: string;
  /** Entries kept per channel stream. */
  size: number;
}

const appendAndAnnounce = `
local id = redis.call('XADD', KEYS[1], 'MAXLEN', ARGV[1], '*', 'm', ARGV[2])
redis.call('PUBLISH', KEYS[2], id .. '\\n' .. ARGV[2])
return id`;

type AppendCommand = (stream: string, announce: string, size: number, payload: Buffer) => Promise<string>;

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

export class RedisHistory implements SharedHistory {
  private readonly commands: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly announce: string;
  private readonly size: number;
  private readonly nodeId = randomBytes(6).toString('hex');
  private readonly handlers = new Set<(channel: string, message: Envelope) => void>();
  private readonly subscribed: Promise<unknown>;
  private readonly append: AppendCommand;

  constructor(options: RedisHistoryOptions) {
    this.prefix = `${options.prefix ?? 'hyp'}:hist:`;
    this.announce = `${options.prefix ?? 'hyp'}:hist-announce`;
    this.size = Math.max(1, options.size);
    this.commands = new Redis(options.url, { maxRetriesPerRequest: null });
    this.sub = new Redis(options.url, { maxRetriesPerRequest: null });
    this.commands.on('error', () => {});
    this.sub.on('error', () => {});
    this.commands.defineCommand('hypAppend', { numberOfKeys: 2, lua: appendAndAnnounce });
    const command = (this.commands as unknown as { hypAppend: AppendCommand }).hypAppend.bind(this.commands);
    this.append = command;
    this.sub.on('messageBuffer', (_channel: Buffer, message: Buffer) => this.announced(message));
    this.subscribed = this.sub.subscribe(this.announce);
  }

  publish(channel: string, message: Envelope): void {
    const payload = Buffer.from(encodeBusEvent('publish', channel, this.nodeId, message));
    this.append(this.prefix + channel, this.announce, this.size, payload).catch(() => {});
  }

  onDelivery(handler: (channel: string, message: Envelope) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  private announced(raw: Buffer): void {
    const nl = raw.indexOf(0x0a);
    if (nl < 0) return;
    const event = decodeBusEvent(raw.subarray(nl + 1));
    if (event?.kind !== 'publish') return;
    event.message.offset = raw.subarray(0, nl).toString();
    for (const h of this.handlers) h(event.target, event.message);
  }

  async recover(channel: string, offset: string): Promise<{ head: string; recovery: Recovery }> {
    const key = this.prefix + channel;
    let info: unknown[] | undefined;
    try {
      info = (await this.commands.xinfo('STREAM', key)) as unknown[];
    } catch {
      info = undefined; // no such stream: nothing was ever published here
    }
    const head = info ? String(infoField(info, 'last-generated-id') ?? '0-0') : '0-0';
    if (!offset) return { head, recovery: { ok: true, messages: [] } };
    if (!streamId.test(offset)) {
      return {
        head,
        recovery: { ok: false, reason: 'offset belongs to another history (not a shared stream id)' },
      };
    }
    if (compareStreamIds(offset, head) > 0)
      return { head, recovery: { ok: false, reason: 'offset is in the future' } };
    // XDEL records the largest deleted id; MAXLEN trimming only shows as entries-added > length,
    // and trimmed entries all precede the first one left. Either way a gap after the offset is refused.
    const deleted = info ? String(infoField(info, 'max-deleted-entry-id') ?? '0-0') : '0-0';
    const trimmed = info
      ? Number(infoField(info, 'entries-added') ?? 0) - Number(infoField(info, 'length') ?? 0)
      : 0;
    const first = info ? String(infoField(info, 'recorded-first-entry-id') ?? '0-0') : '0-0';
    if (compareStreamIds(offset, deleted) < 0 || (trimmed > 0 && compareStreamIds(offset, first) < 0)) {
      return { head, recovery: { ok: false, reason: 'messages after the offset are no longer in history' } };
    }
    const entries = (await this.commands.xrangeBuffer(key, `(${offset}`, '+')) as Array<[Buffer, Buffer[]]>;
    const messages: Envelope[] = [];
    for (const [id, fields] of entries) {
      const event = fields[1] ? decodeBusEvent(fields[1]) : undefined;
      if (!event) continue;
      event.message.offset = id.toString();
      messages.push(event.message);
    }
    return { head, recovery: { ok: true, messages } };
  }

  async ready(): Promise<void> {
    await this.subscribed;
  }

  async close(): Promise<void> {
    this.handlers.clear();
    await Promise.allSettled([this.sub.quit(), this.commands.quit()]);
  }
}
