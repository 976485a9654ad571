/**
 * An acknowledged publish that Redis, or the hub's bound on what waits for
 * Redis, refuses is answered at once: an error frame carrying its id and
 * HYP_E_WS_PUBLISH_REFUSED, and the hub forgets it (no pending-ack entry
 * left until the connection closes). Before, the refusal went to `onError`
 * only: the client waited for its acknowledgement timeout (30 s), and under
 * a Redis bus without shared history the hub even acknowledged a publish
 * the bus had refused. Real redis-server throughout.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { HypWebSocket, PublishAckError } from '../../../../apps/client/index.js';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import type { Hub } from '../../../../apps/server/ws/hub.js';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { json, type Served, serveHub, TestClient } from './helpers.js';
import { type RedisProcess, redisBinary, redisForSuite, until } from './redis-server.js';

const binary = redisBinary();
const cleanup: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

/** What the hub keeps per connection for acknowledgements still to come (hub.ts awaitAck). */
function waitingAcks(hub: Hub): number {
  const inner = hub as unknown as { awaitingAck: Map<string, unknown>; acksOf: Map<unknown, unknown> };
  return inner.awaitingAck.size + inner.acksOf.size;
}

describe.skipIf(!binary)('an acknowledged publish Redis refuses (a real redis-server)', () => {
  let redis: RedisProcess;
  let raw: Redis;
  redisForSuite(binary!, (r, client) => {
    redis = r;
    raw = client;
  });

  async function pod(
    prefix: string,
    limits: { history?: boolean; maxPending?: number } = {},
  ): Promise<Served> {
    const pending = limits.maxPending === undefined ? {} : { maxPending: limits.maxPending, highWater: 1 };
    const served = await serveHub({
      bus: new RedisBus({ url: redis.url, prefix, onError: () => {}, ...pending }),
      sharedHistory:
        limits.history === false
          ? undefined
          : new RedisHistory({ url: redis.url, prefix, size: 100, onError: () => {}, ...pending }),
      ownTransports: true,
    });
    cleanup.push(() => served.close());
    await served.hub.bus.ready();
    await (served.hub as unknown as { shared?: RedisHistory }).shared?.ready();
    return served;
  }

  async function connect(url: string, codec: string, id: string): Promise<TestClient> {
    const c = await TestClient.connect(url, codec, { headers: { 'X-Client-ID': id } });
    cleanup.push(() => c.close());
    return c;
  }

  /** Redis refuses writes (maxmemory 1 byte, noeviction: OOM) until the test ends. */
  async function outOfMemory(): Promise<void> {
    await raw.config('SET', 'maxmemory-policy', 'noeviction');
    await raw.config('SET', 'maxmemory', '1');
    cleanup.push(async () => {
      await raw.config('SET', 'maxmemory', '0');
    });
  }

  /** Redis holds every write (CLIENT PAUSE WRITE) until the test ends: publishes wait for it. */
  async function paused(): Promise<void> {
    await raw.call('CLIENT', 'PAUSE', '60000', 'WRITE');
    cleanup.push(async () => {
      await raw.call('CLIENT', 'UNPAUSE');
    });
  }

  it('the append refused by Redis (OOM): an error frame with the id at once, the entry freed', async () => {
    const a = await pod(`oom${Date.now()}`);
    const alice = await connect(a.url, 'protobuf', 'alice');
    alice.subscribe('orders');
    await alice.nextOf('subscribed');
    await outOfMemory();
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('{"item":1}'), id: 'oom-1' });
    await alice.until((c) => c.of('error').length > 0 || c.of('published').length > 0, 15_000);
    const [err] = alice.of('error');
    expect(err).toMatchObject({ channel: 'orders', id: 'oom-1' });
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_PUBLISH_REFUSED', id: 'oom-1', channel: 'orders' });
    expect(String((json(err!) as { message: string }).message)).toMatch(/OOM/);
    expect(alice.of('published')).toEqual([]);
    expect(waitingAcks(a.hub)).toBe(0);
  });

  it('hyp/client publishAck rejects with the refusal, long before its timeout', async () => {
    const a = await pod(`oomc${Date.now()}`);
    const ws = new HypWebSocket(a.url, { codec: 'msgpack', clientId: 'alice' });
    cleanup.push(() => ws.close());
    await ws.connect();
    await outOfMemory();
    const outcome = ws.publishAck('orders', { item: 2 }, { timeoutMs: 120_000 }).then(
      () => 'acknowledged',
      (e: unknown) => e,
    );
    const err = await until(
      () => Promise.race([outcome, new Promise((r) => setTimeout(() => r(undefined), 100))]),
      'the publishAck to settle',
    );
    expect(err).toBeInstanceOf(PublishAckError);
    expect(err).toMatchObject({ code: 'HYP_E_WS_PUBLISH_REFUSED', channel: 'orders' });
  });

  it('appended while the announcement was lost (subscriber connection cut): acknowledged all the same, the entry freed', async () => {
    const a = await pod(`lost${Date.now()}`);
    const shared = (a.hub as unknown as { shared: RedisHistory }).shared;
    const sub = (shared as unknown as { sub: Redis }).sub;
    // no one here subscribes to the channel: it is not caught up after the subscriber reconnects
    const alice = await connect(a.url, 'json', 'alice');
    let resubscribed = 0;
    sub.on('ready', () => resubscribed++);
    // the announcement of what is appended before the subscriber is back reaches no one here
    await raw.client('KILL', 'TYPE', 'pubsub');
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('{"item":3}'), id: 'lost-1' });
    await until(() => (shared.flow.pending === 0 ? true : undefined), 'the append');
    await until(() => (resubscribed > 0 ? true : undefined), 'the subscriber back');
    await alice.until((c) => c.of('published').length + c.of('error').length > 0, 10_000);
    const [ack] = alice.of('published');
    expect(ack).toMatchObject({ channel: 'orders', id: 'lost-1' });
    expect(ack!.offset).toMatch(/^\d+-\d+$/);
    expect(waitingAcks(a.hub)).toBe(0);
  });

  it('a Redis bus (no shared history) that Redis refuses (OOM): refused with the id, never acknowledged', async () => {
    const a = await pod(`busoom${Date.now()}`, { history: false });
    const alice = await connect(a.url, 'protobuf', 'alice');
    await outOfMemory();
    alice.send({ type: 'broadcast', data: Buffer.from('"b"'), id: 'oom-b' });
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('"p"'), id: 'oom-p' });
    await alice.until((c) => c.of('error').length + c.of('published').length >= 2, 15_000);
    expect(alice.of('published')).toEqual([]);
    expect(alice.of('error').map((e) => [e.id, (json(e) as { code: string }).code])).toEqual([
      ['oom-b', 'HYP_E_WS_PUBLISH_REFUSED'],
      ['oom-p', 'HYP_E_WS_PUBLISH_REFUSED'],
    ]);
  });

  it('a broadcast beside a shared history (it goes on the bus) that Redis refuses: refused with the id', async () => {
    const a = await pod(`bcoom${Date.now()}`);
    const alice = await connect(a.url, 'msgpack', 'alice');
    await outOfMemory();
    alice.send({ type: 'broadcast', data: Buffer.from('"b"'), id: 'oom-b2' });
    await alice.until((c) => c.of('error').length + c.of('published').length > 0, 15_000);
    expect(alice.of('published')).toEqual([]);
    expect(alice.of('error').map((e) => [e.id, (json(e) as { code: string }).code])).toEqual([
      ['oom-b2', 'HYP_E_WS_PUBLISH_REFUSED'],
    ]);
  });

  it('past the bound on publishes waiting for Redis (history): refused at once with the id', async () => {
    const a = await pod(`full${Date.now()}`, { maxPending: 2 });
    const alice = await connect(a.url, 'json', 'alice');
    alice.subscribe('orders');
    await alice.nextOf('subscribed');
    await paused();
    // the server's own publishes are not held: they fill the bound
    a.hub.publish('orders', 1);
    a.hub.publish('orders', 2);
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('3'), id: 'full-1' });
    await alice.until((c) => c.of('error').length > 0, 15_000);
    const [err] = alice.of('error');
    expect(err).toMatchObject({ channel: 'orders', id: 'full-1' });
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_PUBLISH_REFUSED', id: 'full-1' });
    expect(String((json(err!) as { message: string }).message)).toMatch(/waiting for Redis/);
    expect(waitingAcks(a.hub)).toBe(0);
  });

  it('past the bound of a Redis bus (no shared history): refused with the id, never acknowledged nor delivered', async () => {
    const prefix = `bus${Date.now()}`;
    const a = await pod(prefix, { history: false, maxPending: 2 });
    const alice = await connect(a.url, 'msgpack', 'alice');
    const here = await connect(a.url, 'json', 'bob');
    here.subscribe('orders');
    await here.nextOf('subscribed');
    await paused();
    a.hub.publish('orders', 1);
    a.hub.publish('orders', 2);
    await here.nextOf('message', 2);
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('"3"'), id: 'bus-1' });
    await alice.until((c) => c.of('error').length + c.of('published').length > 0, 15_000);
    // a broadcast too (another connection: alice is held while the bus is congested)
    const carol = await connect(a.url, 'flatbuffers', 'carol');
    carol.send({ type: 'broadcast', data: Buffer.from('"4"'), id: 'bus-2' });
    await carol.until((c) => c.of('error').length + c.of('published').length > 0, 15_000);
    for (const [c, id] of [
      [alice, 'bus-1'],
      [carol, 'bus-2'],
    ] as const) {
      expect(c.of('published')).toEqual([]);
      expect(c.of('error').map((e) => [e.id, (json(e) as { code: string }).code])).toEqual([
        [id, 'HYP_E_WS_PUBLISH_REFUSED'],
      ]);
    }
    // refused means refused everywhere: the pod's own subscribers did not get it either
    expect(here.of('message').map((m) => json(m))).toEqual([1, 2]);
  });
});
