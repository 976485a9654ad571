/**
 * Second audit of the client's delivery guarantees: a subscription whose
 * connection drops before the hub's first ack, a start position the
 * application asks for, and the bounds on what waits to go out (the offline
 * queue by bytes, the seal chain while connected). Real hubs in-process
 * behind a TCP front (./front.ts), loopback only.
 */
import { randomBytes } from 'node:crypto';
import { runInNewContext } from 'node:vm';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HypWebSocket } from '../../../apps/client/index.js';
import { eventually, type Served } from '../server/ws/helpers.js';
import { cleanup, client, closeAll, frontOf, hub, range } from './delivery.js';
import type { Front } from './front.js';
import { rawServer } from './raw-server.js';

afterEach(async () => {
  vi.restoreAllMocks();
  await closeAll();
});

/** Resolves on the client's next `close` event. */
function closed(ws: HypWebSocket): Promise<void> {
  return new Promise((resolve) => {
    const off = ws.on('close', () => {
      off();
      resolve();
    });
  });
}

/** Cuts the connection instead of passing the first server frame that contains `marker`. */
function cutAt(f: Front, marker: string): void {
  let done = false;
  f.tap = (frame) => {
    if (done || !frame.payload.includes(marker)) return 'pass';
    done = true;
    f.cut();
    return 'drop';
  };
}

describe('a subscription whose connection drops before its first ack', () => {
  it('a head subscription: the reconnect reports the possible loss (HYP_E_WS_RECOVERY_FAILED with its channel) instead of skipping silently', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'early' });
    await c.ws.connect();
    cutAt(f, '"subscribed"');
    const away = closed(c.ws);
    c.subscribe('feed');
    await away;
    // the hub started the subscription on the lost connection; these are published before the new one
    for (const n of range(0, 3)) served.hub.publish('feed', n);
    await eventually(() => c.opens === 2 && c.ws.offset('feed') !== undefined);
    served.hub.publish('feed', 3);
    await eventually(() => c.got('feed').length === 1);
    expect(c.got('feed')).toEqual([3]);
    expect(c.errors).toHaveLength(1);
    expect(c.errors[0]).toMatchObject({ code: 'HYP_E_WS_RECOVERY_FAILED', channel: 'feed' });
  });

  it('a subscribe the hub refused (HYP_E_WS_TOO_MANY_SUBSCRIPTIONS) never started: later reconnects report no possible loss for it', async () => {
    const served = await hub({ maxSubscriptions: 1 });
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'refused' });
    c.subscribe('a');
    c.subscribe('b');
    await c.ws.connect();
    await eventually(() => c.errors.length === 1 && c.ws.offset('a') !== undefined);
    expect(c.errors[0]).toMatchObject({ code: 'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS', channel: 'b' });
    const away = closed(c.ws);
    f.cut();
    await away;
    await eventually(() => c.opens === 2 && c.errors.length === 2);
    // the resubscription is refused again; nothing else is said
    expect(c.errors[1]).toMatchObject({ code: 'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS', channel: 'b' });
    served.hub.publish('a', 1);
    await eventually(() => c.got('a').length === 1);
    expect(c.errors).toHaveLength(2);
  });

  it('once acknowledged, later reconnects resume from its offset and report nothing', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'acked' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => c.ws.offset('feed') !== undefined);
    const away = closed(c.ws);
    f.cut();
    await away;
    for (const n of range(0, 3)) served.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 3);
    expect(c.got('feed')).toEqual([0, 1, 2]);
    expect(c.errors).toEqual([]);
  });

  it('a subscription made while disconnected starts at the head of its first connection, with no report', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'offline-sub' });
    c.subscribe('feed');
    served.hub.publish('feed', 0); // before the client ever connected: not part of its subscription
    await c.ws.connect();
    await eventually(() => c.ws.offset('feed') !== undefined);
    served.hub.publish('feed', 1);
    await eventually(() => c.got('feed').length === 1);
    expect(c.got('feed')).toEqual([1]);
    expect(c.errors).toEqual([]);
  });

  it('a start position the application asked for (subscribe(..., { offset })) survives the drop: the reconnect resumes from it, exactly once', async () => {
    const served = await hub();
    const a = client(served.url, { clientId: 'reader' });
    a.subscribe('feed');
    await a.ws.connect();
    await eventually(() => served.hub.subscribers('feed') === 1);
    for (const n of range(0, 3)) served.hub.publish('feed', n);
    await eventually(() => a.got('feed').length === 3);
    const kept = a.ws.offset('feed')!; // an application keeps it, say, in localStorage
    a.ws.close();
    for (const n of range(3, 6)) served.hub.publish('feed', n);

    const f = await frontOf(served);
    const b = client(f.url, { clientId: 'resumer' });
    await b.ws.connect();
    // the first attempt's replay and ack never arrive
    cutAt(f, '"feed"');
    const away = closed(b.ws);
    b.subscribe('feed', kept);
    expect(b.ws.offset('feed')).toBe(kept);
    await away;
    served.hub.publish('feed', 6);
    await eventually(() => b.got('feed').length === 4);
    served.hub.publish('feed', 7);
    await eventually(() => b.got('feed').length === 5);
    expect(b.got('feed')).toEqual([3, 4, 5, 6, 7]);
    expect(b.errors).toEqual([]);
  });

  it('an offset that is not a string throws a TypeError', () => {
    const c = client('ws://127.0.0.1:1/ws', { reconnect: { enabled: false } });
    expect(() => c.ws.subscribe('feed', undefined, { offset: 5 as unknown as string })).toThrow(TypeError);
  });
});

/** The hub's view of what a client published: the JSON data of each publish, in arrival order. */
function publishedTo(served: Served): unknown[] {
  const seen: unknown[] = [];
  served.hub.onMessage((_client, m) => {
    if (m.type === 'publish') seen.push(JSON.parse(Buffer.from(m.data).toString()));
  });
  return seen;
}

describe('the offline queue, by bytes (maxQueuedBytes)', () => {
  it('by default 16 MiB: twenty 1 MiB publishes while offline keep the newest fifteen and report the five oldest (HYP_E_WS_QUEUE_FULL)', () => {
    // messages larger than the hub's default max_message_size (maxSendSize): a hub raised to take them
    const c = client('ws://127.0.0.1:1/ws', { reconnect: { enabled: false }, maxSendSize: 2 * 1024 * 1024 });
    const mib = new Uint8Array(1024 * 1024);
    for (const n of range(0, 20)) c.ws.publish(`c${n % 10}`, mib); // 1 MiB + 9 bytes each
    expect(c.errors).toHaveLength(5);
    expect(c.errors.every((e) => e.code === 'HYP_E_WS_QUEUE_FULL')).toBe(true);
    expect(c.errors.map((e) => e.channel)).toEqual(['c0', 'c1', 'c2', 'c3', 'c4']);
    expect(c.errors[0]!.message).toContain('maxQueuedBytes');
  });

  it('past the byte bound the oldest go; what is kept goes out in order on connecting', async () => {
    const served = await hub();
    const seen = publishedTo(served);
    // each publish counts 100 payload bytes + 1 (channel) + 7 (type) = 108: four fit in 450
    const c = client(served.url, { clientId: 'bytes', maxQueuedBytes: 450 });
    const pad = (n: number) => `${n}`.padEnd(98, '.'); // JSON string: 100 bytes
    for (const n of range(0, 6)) c.ws.publish('q', pad(n));
    expect(c.errors.map((e) => e.code)).toEqual(['HYP_E_WS_QUEUE_FULL', 'HYP_E_WS_QUEUE_FULL']);
    await c.ws.connect();
    await eventually(() => seen.length === 4);
    expect(seen).toEqual(range(2, 6).map(pad));
  });

  it('a message larger than the whole bound is the one dropped; the smaller ones queued before it are kept', async () => {
    const served = await hub();
    const seen = publishedTo(served);
    const c = client(served.url, { clientId: 'huge', maxQueuedBytes: 1000 });
    c.ws.publish('q', 'a');
    c.ws.publish('big', 'x'.repeat(2000));
    c.ws.publish('q', 'b');
    expect(c.errors).toHaveLength(1);
    expect(c.errors[0]).toMatchObject({ code: 'HYP_E_WS_QUEUE_FULL', channel: 'big' });
    await c.ws.connect();
    await eventually(() => seen.length === 2);
    expect(seen).toEqual(['a', 'b']);
  });

  it('maxQueuedBytes must be a non-negative integer (RangeError); 0 keeps nothing', () => {
    for (const maxQueuedBytes of [-1, 1.5, Number.NaN, Number.POSITIVE_INFINITY]) {
      expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { maxQueuedBytes })).toThrow(RangeError);
    }
    const c = client('ws://127.0.0.1:1/ws', { maxQueuedBytes: 0, reconnect: { enabled: false } });
    c.ws.publish('q', '');
    expect(c.errors.map((e) => e.code)).toEqual(['HYP_E_WS_QUEUE_FULL']);
  });
});

describe('the seal chain (security on, connected)', () => {
  const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };

  it('publishing faster than WebCrypto seals: past maxQueued waiting, new publishes are refused and reported; the admitted ones go out in order', async () => {
    const served = await hub({ security: { keys } });
    const seen = publishedTo(served);
    const c = client(served.url, { clientId: 'burst', security: keys, maxQueued: 10 });
    await c.ws.connect();
    for (const n of range(0, 50)) c.ws.publish('burst', n); // synchronous: nothing is sealed meanwhile
    expect(c.errors).toHaveLength(40);
    expect(c.errors.every((e) => e.code === 'HYP_E_WS_QUEUE_FULL' && e.channel === 'burst')).toBe(true);
    expect(c.errors[0]!.message).toContain('waiting to be sealed');
    await eventually(() => seen.length === 10);
    // sealed meanwhile: room again
    c.ws.publish('burst', 'after');
    await eventually(() => seen.length === 11);
    expect(seen).toEqual([...range(0, 10), 'after']);
    expect(c.errors).toHaveLength(40);
  });

  it('and past maxQueuedBytes waiting (one publish is always admitted, however large)', async () => {
    const served = await hub({ security: { keys } });
    const seen = publishedTo(served);
    const c = client(served.url, { clientId: 'burst-bytes', security: keys, maxQueuedBytes: 1000 });
    await c.ws.connect();
    const big = 'x'.repeat(2000);
    c.ws.publish('b', big); // alone: admitted
    c.ws.publish('b', 'small'); // 2000+ bytes waiting already: refused
    expect(c.errors.map((e) => e.code)).toEqual(['HYP_E_WS_QUEUE_FULL']);
    expect(c.errors[0]!.message).toContain('maxQueuedBytes');
    await eventually(() => seen.length === 1);
    c.ws.publish('b', 'later');
    await eventually(() => seen.length === 2);
    expect(seen).toEqual([big, 'later']);
  });

  it('the offline queue flushed at a reconnect goes out whole: the subscriptions resent before it do not count against the seal chain bound', async () => {
    const served = await hub({ security: { keys } });
    const seen = publishedTo(served);
    const c = client(served.url, { clientId: 'flush', security: keys, maxQueued: 5 });
    for (const ch of ['s1', 's2', 's3']) c.subscribe(ch);
    for (const n of range(0, 5)) c.ws.publish('q', n);
    await c.ws.connect();
    await eventually(() => seen.length === 5);
    expect(seen).toEqual(range(0, 5));
    expect(c.errors).toEqual([]);
  });
});

describe('reconnecting', () => {
  it('reconnect delays and maxAttempts are checked: NaN, negative or fractional ones throw a RangeError (NaN waits reconnected in a storm)', () => {
    for (const reconnect of [
      { initialDelayMs: Number.NaN },
      { initialDelayMs: -1 },
      { maxDelayMs: Number.NaN },
      { maxDelayMs: -5 },
      { maxDelayMs: Number.POSITIVE_INFINITY },
      { maxAttempts: -1 },
      { maxAttempts: 1.5 },
      { maxAttempts: Number.NaN },
    ]) {
      expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { reconnect }), JSON.stringify(reconnect)).toThrow(
        RangeError,
      );
    }
    expect(
      () => new HypWebSocket('ws://127.0.0.1:1/ws', { reconnect: { initialDelayMs: 0, maxAttempts: 0 } }),
    ).not.toThrow();
  });

  it('connect() after giving up (maxAttempts) starts a fresh budget of attempts, not a single one', async () => {
    const c = client('ws://127.0.0.1:1/ws', {
      reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 2 },
    });
    let retries = 0;
    c.ws.on('reconnecting', () => retries++);
    await expect(c.ws.connect()).rejects.toThrow(/gave up after 2 attempts/);
    expect(retries).toBe(2);
    await expect(c.ws.connect()).rejects.toThrow(/gave up after 2 attempts/);
    expect(retries).toBe(4);
  });

  it('a connection that stayed open resets the backoff even when the wall clock was set back meanwhile (stability is measured on the monotonic clock)', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, {
      clientId: 'clock',
      reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 1 },
    });
    let retries = 0;
    c.ws.on('reconnecting', () => retries++);
    await c.ws.connect();
    // a connection lost at once: its one retry is spent
    const lost = closed(c.ws);
    f.cut();
    await lost;
    await eventually(() => c.opens === 2);
    expect(retries).toBe(1);
    const perfNow = performance.now.bind(performance);
    const dateNow = Date.now;
    let elapsed = 0;
    vi.spyOn(performance, 'now').mockImplementation(() => perfNow() + elapsed);
    // ten seconds pass while connected; the wall clock is set back an hour (NTP, a user) meanwhile
    elapsed = 10_000;
    vi.spyOn(Date, 'now').mockImplementation(() => dateNow() + elapsed - 3_600_000);
    const away = closed(c.ws);
    f.cut();
    await away;
    // a stable connection's loss is a fresh start: one retry allowed again, not "gave up"
    expect(retries).toBe(2);
    vi.restoreAllMocks();
    await eventually(() => c.opens === 3);
  });
});

describe('payloads', () => {
  /** The hub's view of what a client published: the raw bytes of each publish. */
  function rawPublishes(served: Served): number[][] {
    const seen: number[][] = [];
    served.hub.onMessage((_client, m) => {
      if (m.type === 'publish') seen.push([...m.data]);
    });
    return seen;
  }

  it('an ArrayBuffer, a DataView or another typed array, and a Uint8Array from another realm go out as their bytes (not as "{}" or {"0":…})', async () => {
    const served = await hub();
    const seen = rawPublishes(served);
    const c = client(served.url, { clientId: 'bytes-kinds', codec: 'msgpack' });
    await c.ws.connect();
    const backing = new Uint8Array([9, 1, 2, 3, 9]).buffer;
    c.ws.publish('b', new Uint8Array([1, 2, 3]).buffer as unknown as Uint8Array);
    c.ws.publish('b', new DataView(backing, 1, 3) as unknown as Uint8Array);
    c.ws.publish('b', new Uint16Array([0x0201]) as unknown as Uint8Array);
    c.ws.publish('b', runInNewContext('new Uint8Array([1, 2, 3])') as Uint8Array);
    await eventually(() => seen.length === 4);
    expect(seen).toEqual([
      [1, 2, 3],
      [1, 2, 3],
      [...new Uint8Array(new Uint16Array([0x0201]).buffer)],
      [1, 2, 3],
    ]);
  });

  it('a payload JSON cannot encode (undefined, a function) throws a TypeError instead of going out empty', () => {
    const c = client('ws://127.0.0.1:1/ws', { reconnect: { enabled: false } });
    expect(() => c.ws.publish('q', undefined as unknown as null)).toThrow(TypeError);
    expect(() => c.ws.broadcast((() => 1) as unknown as null)).toThrow(TypeError);
    expect(c.errors).toEqual([]);
  });

  it('bytes published while offline are copied: reusing the buffer after publish() does not change what goes out', async () => {
    const served = await hub();
    const seen = rawPublishes(served);
    const c = client(served.url, { clientId: 'reuse', codec: 'msgpack' });
    const buf = new Uint8Array([1, 2, 3]);
    c.ws.publish('b', buf);
    buf.fill(0);
    c.ws.publish('b', buf);
    await c.ws.connect();
    await eventually(() => seen.length === 2);
    expect(seen).toEqual([
      [1, 2, 3],
      [0, 0, 0],
    ]);
  });
});

describe('the send buffer (no security, connected)', () => {
  it('publishing faster than the network takes: past maxQueuedBytes buffered, new publishes are refused and reported; the admitted ones arrive in order', async () => {
    let stalled: { resume(): void } | undefined;
    const raw = await rawServer((ws) => {
      // a peer that stops reading: everything sent waits in the client's send buffer
      stalled = (ws as unknown as { _socket: { pause(): void; resume(): void } })._socket;
      (stalled as { pause(): void }).pause();
    });
    cleanup.push(() => raw.close());
    const c = client(raw.url, {
      clientId: 'flood',
      maxQueuedBytes: 4 * 1024 * 1024,
      maxSendSize: 2 * 1024 * 1024,
      reconnect: { enabled: false },
    });
    await c.ws.connect();
    const chunk = 'x'.repeat(1024 * 1024);
    for (const n of range(0, 40)) c.ws.publish('flood', `${n}:${chunk}`);
    expect(c.errors.length).toBeGreaterThan(0);
    expect(c.errors.every((e) => e.code === 'HYP_E_WS_QUEUE_FULL' && e.channel === 'flood')).toBe(true);
    expect(c.errors[0]!.message).toContain('waiting to be sealed or sent');
    const admitted = 40 - c.errors.length;
    stalled!.resume();
    await eventually(() => (raw.received[0]?.length ?? 0) === admitted);
    const order = raw.received[0]!.map((f) => Number(JSON.parse(f.data).split(':')[0]));
    expect(order).toEqual([...order].sort((a, b) => a - b));
    expect(order[0]).toBe(0);
  });
});

describe('ending a subscription', () => {
  it('the function subscribe() returned, called again after the channel was subscribed anew, leaves the new subscription alone', async () => {
    const served = await hub();
    const c = client(served.url, { clientId: 'stale-off' });
    await c.ws.connect();
    const first: unknown[] = [];
    const second: unknown[] = [];
    const off1 = c.ws.subscribe('a', (m) => first.push(m.json()));
    const offAll = c.ws.subscribe('a');
    off1(); // the last handler: the subscription ends
    c.ws.subscribe('a', (m) => second.push(m.json()));
    off1(); // a cleanup run twice (a UI framework's effect), or late
    offAll();
    // a probe subscribed after the calls above: once it is in, the hub has processed them
    c.subscribe('probe');
    await eventually(() => served.hub.subscribers('probe') === 1);
    expect(served.hub.subscribers('a')).toBe(1);
    served.hub.publish('a', 1);
    await eventually(() => second.length === 1);
    expect(first).toEqual([]);
    expect(second).toEqual([1]);
  });
});

describe('presence requests', () => {
  it('one asked while disconnected is answered after connecting (it was dropped silently)', async () => {
    const served = await hub();
    const member = client(served.url, { clientId: 'member' });
    member.ws.joinRoom('lobby');
    await member.ws.connect();
    await eventually(() => served.hub.members('lobby').length === 1);
    const c = client(served.url, { clientId: 'asker' });
    const answers: unknown[] = [];
    c.ws.on('presence', (m) => answers.push(m.json()));
    c.ws.presence('lobby');
    await c.ws.connect();
    await eventually(() => answers.length === 1);
    expect(answers[0]).toMatchObject({ room_id: 'lobby', members: ['member'] });
  });
});
