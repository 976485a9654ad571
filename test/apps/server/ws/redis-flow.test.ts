/**
 * The Redis driver under a client publishing faster than Redis takes its
 * publishes, and resuming over a stream larger than one reply should be,
 * against a real redis-server. Redis is slowed by holding the hub's commands
 * in a TCP proxy in front of it (`CuttableLink.onClientData`) for as long as
 * the spec wants, not for a wall-clock time.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import type { Envelope } from '../../../../apps/server/ws/envelope.js';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { json, serveHub, TestClient } from './helpers.js';
import {
  type CuttableLink,
  cuttableLink,
  type RedisProcess,
  redisBinary,
  redisForSuite,
  until,
} from './redis-server.js';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

const redisServer = redisBinary();
let prefixes = 0;

function message(channel: string, body: string): Envelope {
  return {
    type: 'message',
    channel,
    data: Buffer.from(JSON.stringify(body)),
    timestamp: 1n,
    clientId: '',
    offset: '',
  };
}

/** Holds every command sent through `link` until `release()`; `held()` says whether one waits. */
function gate(link: CuttableLink) {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  let waiting = false;
  link.onClientData = () => {
    waiting = true;
    return opened;
  };
  return {
    held: () => waiting,
    release() {
      link.onClientData = undefined;
      open();
    },
  };
}

/** Waits until `read()` has not changed for `rounds` polls in a row (bounded: 200 polls). */
async function settled(read: () => number, rounds = 5): Promise<number> {
  let last = -1;
  let same = 0;
  for (let i = 0; i < 200 && same < rounds; i++) {
    const now = read();
    same = now === last ? same + 1 : 0;
    last = now;
    await new Promise((r) => setTimeout(r, 50));
  }
  return last;
}

/** `total` publishes on `channel`, numbered, each padded to about 500 bytes. */
function publishNumbered(c: TestClient, channel: string, total: number): void {
  const pad = 'x'.repeat(500);
  for (let i = 0; i < total; i++)
    c.send({ type: 'publish', channel, data: Buffer.from(JSON.stringify({ i, pad })) });
}

function numbers(messages: Envelope[]): number[] {
  return messages.map((m) => (json(m) as { i: number }).i);
}

describe.skipIf(!redisServer)('Redis driver: backpressure and paged resume (real redis-server)', () => {
  let redis: RedisProcess;
  let raw: Redis;
  redisForSuite(redisServer!, (r, client) => {
    redis = r;
    raw = client;
  });

  function nextPrefix(): string {
    return `flow${process.pid}-${++prefixes}`;
  }

  async function link(): Promise<CuttableLink> {
    const proxy = await cuttableLink(redis.port);
    cleanup.push(() => proxy.close());
    return proxy;
  }

  async function subscriber(url: string, channel: string): Promise<TestClient> {
    const c = await TestClient.connect(url, 'json');
    cleanup.push(() => c.close());
    c.subscribe(channel);
    await c.nextOf('subscribed');
    return c;
  }

  /**
   * A hub whose shared history (at most 400 publishes pending) reaches Redis through a cuttable
   * link, the errors it reports, a subscriber to `flow` on it and a client to publish.
   */
  async function sharedHistoryHub() {
    const prefix = nextPrefix();
    const proxy = await link();
    const errors: string[] = [];
    const history = new RedisHistory({
      url: proxy.url,
      prefix,
      size: 5_000,
      maxPending: 400,
      onError: (err) => errors.push(err.message),
    });
    const served = await serveHub({ sharedHistory: history, ownTransports: true });
    cleanup.push(() => served.close());
    await history.ready();
    const reader = await subscriber(served.url, 'flow');
    const publisher = await TestClient.connect(served.url, 'json');
    cleanup.push(() => publisher.close());
    return { prefix, proxy, errors, history, reader, publisher };
  }

  /** Waits until `reader` got the `total` numbered publishes (at most 30 s), and they came in order. */
  async function everyPublishArrives(reader: TestClient, total: number): Promise<void> {
    await reader.until((c) => c.of('message').length >= total, 30_000);
    expect(numbers(reader.of('message'))).toEqual(Array.from({ length: total }, (_, i) => i));
  }

  /**
   * Holds every command through `proxy`, publishes `total` numbered messages on `flow` from
   * `publisher`, and waits until one is held and the hub has stopped taking more (the `errors`
   * and whether the driver's `flow()` is congested settled); the gate, to release.
   */
  async function publishWhileHeld(
    proxy: CuttableLink,
    publisher: TestClient,
    total: number,
    errors: string[],
    flow: () => { congested: boolean } | undefined,
  ): Promise<ReturnType<typeof gate>> {
    const redisSlow = gate(proxy);
    publishNumbered(publisher, 'flow', total);
    await until(() => redisSlow.held() || undefined, 'a publish held on its way to Redis');
    // what the hub took in while Redis did not answer, once it stopped taking more
    await settled(() => errors.length + (flow()?.congested ? 1 : 0));
    return redisSlow;
  }

  /** `publisher`'s connection is open and served: a subscribe is acknowledged. */
  async function stillServed(publisher: TestClient): Promise<void> {
    publisher.subscribe('after');
    await publisher.until((c) => c.of('subscribed').length === 1);
    expect(publisher.closed).toBeUndefined();
  }

  it('shared history: a client publishing while Redis does not answer is held, not refused — every publish arrives, in order', async () => {
    const { prefix, proxy, errors, history, reader, publisher } = await sharedHistoryHub();

    const total = 1_500;
    const redisSlow = await publishWhileHeld(proxy, publisher, total, errors, () => history.flow);
    // Before: past maxPending (400) waiting publishes the rest were refused: 1,100 lost, one warning.
    expect(errors).toEqual([]);
    redisSlow.release();

    await everyPublishArrives(reader, total);
    expect(await raw.xlen(`${prefix}:hist:flow`)).toBe(total);
    expect(errors).toEqual([]);
    // read again afterwards: the publisher's connection is open and served
    await stillServed(publisher);
  }, 60_000);

  it('shared history: a client publishing while Redis is unreachable is held for the outage, and every publish arrives once it is back', async () => {
    const { prefix, proxy, errors, history, reader, publisher } = await sharedHistoryHub();

    proxy.cut();
    const commands = (history as unknown as { commands: Redis }).commands;
    await until(() => commands.status !== 'ready' || undefined, 'the history cut off');
    const total = 1_500;
    publishNumbered(publisher, 'flow', total);
    await settled(() => errors.length + (history.flow?.congested ? 1 : 0));
    // Before: 1,100 refused past maxPending (400) within the first moments of the outage.
    expect(errors).toEqual([]);
    expect(history.flow?.congested).toBe(true);
    proxy.restore();

    await everyPublishArrives(reader, total);
    expect(await raw.xlen(`${prefix}:hist:flow`)).toBe(total);
    expect(errors).toEqual([]);
  }, 60_000);

  it('bus: a client publishing while Redis does not answer is held, not refused — every publish reaches the other pod, in order', async () => {
    const prefix = nextPrefix();
    const proxy = await link();
    const errors: string[] = [];
    const bus = new RedisBus({
      url: proxy.url,
      prefix,
      maxPending: 400,
      onError: (err) => errors.push(err.message),
    });
    const here = await serveHub({ bus, ownTransports: true });
    cleanup.push(() => here.close());
    const there = await serveHub({ bus: new RedisBus({ url: redis.url, prefix }), ownTransports: true });
    cleanup.push(() => there.close());
    await Promise.all([bus.ready(), there.hub.bus.ready()]);
    const reader = await subscriber(there.url, 'flow');
    const publisher = await TestClient.connect(here.url, 'json');
    cleanup.push(() => publisher.close());

    const total = 1_500;
    const redisSlow = await publishWhileHeld(proxy, publisher, total, errors, () => bus.flow);
    // Before: 1,100 publishes refused past maxPending (400), lost without the client being told.
    expect(errors).toEqual([]);
    redisSlow.release();

    await everyPublishArrives(reader, total);
    expect(errors).toEqual([]);
    await stillServed(publisher);
  }, 60_000);

  it('server-side publishes (nothing to hold) are still refused past maxPending, and the flow reads as congested meanwhile', async () => {
    const prefix = nextPrefix();
    const proxy = await link();
    const errors: string[] = [];
    const history = new RedisHistory({
      url: proxy.url,
      prefix,
      size: 100,
      maxPending: 40,
      onError: (err) => errors.push(err.message),
    });
    cleanup.push(() => history.close());
    await history.ready();
    const redisSlow = gate(proxy);
    for (let i = 0; i < 50; i++) history.publish('app', message('app', `m${i}`));
    expect(history.flow?.congested).toBe(true);
    expect(errors).toHaveLength(10);
    expect(errors[0]).toMatch(/^publish on channel app refused: 40 publishes/);
    let drained = false;
    history.flow?.whenDrained(() => {
      drained = true;
    });
    redisSlow.release();
    await until(() => drained || undefined, 'the flow drained');
    expect(history.flow?.congested).toBe(false);
    expect(await raw.xlen(`${prefix}:hist:app`)).toBe(40);
  }, 30_000);

  /** A history on `url` whose recovery pages are `pageBytes`, and `count` entries published on `channel` through another. */
  async function streamOf(channel: string, count: number, pageBytes: number, url = redis.url) {
    const prefix = nextPrefix();
    const writer = new RedisHistory({ url: redis.url, prefix, size: 10_000 });
    cleanup.push(() => writer.close());
    const offsets: string[] = [];
    writer.onDelivery((_channel, m) => offsets.push(m.offset));
    await writer.ready();
    for (let i = 0; i < count; i++) writer.publish(channel, message(channel, `m${i}${'x'.repeat(90)}`));
    await until(() => offsets.length === count || undefined, 'the stream written');
    const reader = new RedisHistory({ url, prefix, size: 10_000, pageBytes });
    cleanup.push(() => reader.close());
    await reader.ready();
    return { prefix, key: `${prefix}:hist:${channel}`, offsets, reader };
  }

  /** The commands Redis ran on `key` (MONITOR) while `run` ran. */
  async function commandsOn(key: string, run: () => Promise<unknown>): Promise<string[][]> {
    const monitor = await raw.monitor();
    const seen: string[][] = [];
    monitor.on('monitor', (_time: string, args: string[]) => {
      if (args.includes(key)) seen.push(args);
    });
    try {
      await run();
      await raw.ping(); // MONITOR shows what ran before this on its way
      await new Promise((r) => setTimeout(r, 100));
    } finally {
      monitor.disconnect();
    }
    return seen;
  }

  it('a resume over a stream larger than a page is read a page at a time, and replays every entry in order', async () => {
    const { key, offsets, reader } = await streamOf('big', 300, 2_048);
    let recovery: Awaited<ReturnType<RedisHistory['recover']>> | undefined;
    const commands = await commandsOn(key, async () => {
      recovery = await reader.recover('big', offsets[0]!);
    });
    expect(recovery?.recovery.ok).toBe(true);
    const replayed = recovery?.recovery.ok ? recovery.recovery.messages : [];
    expect(replayed.map((m) => m.offset)).toEqual(offsets.slice(1));
    expect(recovery?.head).toBe(offsets.at(-1));
    const xranges = commands.filter((args) => args[0]?.toLowerCase() === 'xrange');
    // Before: one XRANGE of the whole stream, without COUNT (one reply of every entry).
    expect(xranges.every((args) => args.some((a) => a.toUpperCase() === 'COUNT'))).toBe(true);
    const pages = commands.filter((args) => args[0]?.toLowerCase() === 'eval');
    // ~30 KB of payload in pages of 2 KiB
    expect(pages.length).toBeGreaterThanOrEqual(10);
  }, 30_000);

  it('a resume through a hub over a paged stream replays everything in order, then the live deliveries', async () => {
    const { prefix, offsets } = await streamOf('big', 200, 1_024);
    const served = await serveHub({
      sharedHistory: new RedisHistory({ url: redis.url, prefix, size: 10_000, pageBytes: 1_024 }),
      ownTransports: true,
    });
    cleanup.push(() => served.close());
    const c = await TestClient.connect(served.url, 'json');
    cleanup.push(() => c.close());
    c.subscribe('big', offsets[49]!);
    await c.nextOf('subscribed');
    expect(c.of('message').map((m) => m.offset)).toEqual(offsets.slice(50));
    expect(c.of('error')).toEqual([]);
    expect(c.of('subscribed')[0]!.offset).toBe(offsets.at(-1));
  }, 30_000);

  /**
   * Runs `trim` against Redis right before the `nth` page read of `key` reaches it (the reader's
   * commands go through `proxy`): a trim between two pages, at a known point.
   */
  function trimBeforePage(proxy: CuttableLink, nth: number, trim: () => Promise<unknown>): void {
    let pages = 0;
    proxy.onClientData = async (chunk) => {
      if (!chunk.includes('XRANGE')) return;
      if (++pages === nth) await trim();
    };
  }

  it('an entry trimmed between two pages of a resume fails the recovery: never a silent hole', async () => {
    const proxy = await link();
    const { key, offsets, reader } = await streamOf('big', 100, 1_024, proxy.url);
    // before the 3rd page: keep the newest 20 entries, so entries not yet replayed are gone
    trimBeforePage(proxy, 3, () => raw.xtrim(key, 'MAXLEN', 20));
    const { head, recovery } = await reader.recover('big', offsets[0]!);
    expect(recovery).toEqual({
      ok: false,
      reason: 'messages after the offset left the history while they were being replayed',
    });
    expect(head).toBe(offsets.at(-1));
  }, 30_000);

  it('a trim between two pages that took only what was replayed already is no gap', async () => {
    const proxy = await link();
    const { key, offsets, reader } = await streamOf('big', 100, 1_024, proxy.url);
    // the first page after offsets[0]: entries while their payload bytes fit in 1,024 (as readPage counts)
    const sizes = (await raw.xrangeBuffer(key, '-', '+')).map(([, fields]) => fields[1]!.length);
    let inFirstPage = 0;
    for (let bytes = 0; 1 + inFirstPage < sizes.length; inFirstPage++) {
      const size = sizes[1 + inFirstPage]!;
      if (inFirstPage > 0 && bytes + size > 1_024) break;
      bytes += size;
    }
    expect(inFirstPage).toBeGreaterThan(1);
    // before the 2nd page: trim up to and including the last entry replayed, not one more
    trimBeforePage(proxy, 2, () => raw.xtrim(key, 'MINID', offsets[1 + inFirstPage]!));
    const { recovery } = await reader.recover('big', offsets[0]!);
    // Conservatively, an offset right before the oldest entry kept counts as gone; the page knows
    // which entry follows it, and that one is still there.
    expect(recovery.ok).toBe(true);
    expect(recovery.ok && recovery.messages.map((m) => m.offset)).toEqual(offsets.slice(1));
    expect(await raw.xlen(key)).toBe(100 - 1 - inFirstPage);
  }, 30_000);

  it('the catch-up after a reconnect reads a page at a time; an entry trimmed between two pages is reported as a gap at the last delivery before it', async () => {
    const prefix = nextPrefix();
    const proxy = await link();
    const cutOff = new RedisHistory({ url: proxy.url, prefix, size: 10_000, pageBytes: 1_024 });
    cleanup.push(() => cutOff.close());
    const writer = new RedisHistory({ url: redis.url, prefix, size: 10_000 });
    cleanup.push(() => writer.close());
    await Promise.all([cutOff.ready(), writer.ready()]);
    const written: string[] = [];
    writer.onDelivery((_channel, m) => written.push(m.offset));
    const delivered: string[] = [];
    const gaps: Array<{ offset: string; resume: string }> = [];
    cutOff.onDelivery((_channel, m) => delivered.push(m.offset));
    cutOff.onGap((gap) => gaps.push({ offset: gap.offset, resume: gap.resume }));
    // a local subscriber on the channel: its deliveries are caught up after a reconnect
    await cutOff.recover('big', '');

    proxy.cut();
    await until(() => (cutOff as unknown as { sub: Redis }).sub.status !== 'ready' || undefined, 'cut off');
    for (let i = 0; i < 100; i++) writer.publish('big', message('big', `m${i}${'x'.repeat(90)}`));
    await until(() => written.length === 100 || undefined, 'the stream written meanwhile');
    // before the catch-up's 3rd page: keep the newest 20 entries, so entries not yet delivered are gone
    trimBeforePage(proxy, 3, () => raw.xtrim(`${prefix}:hist:big`, 'MAXLEN', 20));
    proxy.restore();
    await until(() => delivered.at(-1) === written.at(-1) || undefined, 'the catch-up');
    // Before: one read of the whole stream (no pages): all 100 delivered, no gap.
    expect(gaps).toHaveLength(1);
    const lastBefore = gaps[0]!.offset;
    const before = written.indexOf(lastBefore);
    expect(before).toBeGreaterThan(0);
    expect(gaps[0]!.resume).toBe(lastBefore);
    // every delivery up to the gap, then the 20 entries kept, in order, each once
    expect(delivered).toEqual([...written.slice(0, before + 1), ...written.slice(80)]);
  }, 30_000);
});
