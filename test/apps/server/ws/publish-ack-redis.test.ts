/**
 * Acknowledged publishes across pods sharing a real redis-server (RedisBus +
 * RedisHistory): the acknowledgement waits for the stream entry and names
 * its id; the other pod's subscribers, and a resume from the stream, get the
 * publish with its id and the publisher's client id.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HypWebSocket } from '../../../../apps/client/index.js';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { eventually, type Served, serveHub, TestClient } from './helpers.js';
import { freePort, RedisProcess, redisBinary } from './redis-server.js';

const binary = redisBinary();
const cleanup: Array<() => Promise<void> | void> = [];

afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

describe.skipIf(!binary)('acknowledged publishes over Redis (a real redis-server)', () => {
  let redis: RedisProcess;

  beforeAll(async () => {
    redis = new RedisProcess(binary!, await freePort());
    await redis.start();
  }, 30_000);

  afterAll(async () => {
    await redis?.stop();
  });

  async function pod(prefix: string): Promise<Served> {
    const served = await serveHub({
      bus: new RedisBus({ url: redis.url, prefix }),
      sharedHistory: new RedisHistory({ url: redis.url, prefix, size: 100 }),
      ownTransports: true,
    });
    cleanup.push(() => served.close());
    await served.hub.bus.ready();
    await (served.hub as unknown as { shared: RedisHistory }).shared.ready();
    return served;
  }

  async function connect(url: string, codec: string, id: string): Promise<TestClient> {
    const c = await TestClient.connect(url, codec, { headers: { 'X-Client-ID': id } });
    cleanup.push(() => c.close());
    return c;
  }

  it('the acknowledgement carries the stream id; the other pod and a resume see the id and the publisher', async () => {
    const prefix = `ack${Date.now()}`;
    const [a, b] = [await pod(prefix), await pod(prefix)];
    const there = await connect(b.url, 'flatbuffers', 'bob');
    there.subscribe('orders');
    await there.nextOf('subscribed');
    const alice = await connect(a.url, 'protobuf', 'alice');
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('{"item":42}'), id: 'order-42' });
    const [ack] = await alice.nextOf('published');
    expect(ack).toMatchObject({ channel: 'orders', id: 'order-42' });
    expect(ack!.offset).toMatch(/^\d+-\d+$/);
    const [delivered] = await there.nextOf('message');
    expect(delivered).toMatchObject({ clientId: 'alice', id: 'order-42', offset: ack!.offset });
    // a server publish and a client publish without an id stay as they were
    a.hub.publish('orders', 'plain');
    alice.send({ type: 'publish', channel: 'orders', data: Buffer.from('"bare"') });
    await there.nextOf('message', 3);
    expect(
      there
        .of('message')
        .slice(1)
        .map((m) => [m.clientId, 'id' in m]),
    ).toEqual([
      ['', false],
      ['alice', false],
    ]);
    // a resume from before it, on the other pod, replays it from the stream with its id
    const late = await connect(b.url, 'json', 'carol');
    late.subscribe('orders', '0-0');
    await late.nextOf('message', 3);
    expect(late.of('message').map((m) => [m.clientId, m.id])).toEqual([
      ['alice', 'order-42'],
      ['', undefined],
      ['alice', undefined],
    ]);
  });

  it('hyp/client publishAck resolves with the stream id of its delivery', async () => {
    const prefix = `ackc${Date.now()}`;
    const [a, b] = [await pod(prefix), await pod(prefix)];
    const there = await connect(b.url, 'msgpack', 'bob');
    there.subscribe('orders');
    await there.nextOf('subscribed');
    const ws = new HypWebSocket(a.url, { codec: 'msgpack', clientId: 'alice' });
    cleanup.push(() => ws.close());
    await ws.connect();
    const { offset } = await ws.publishAck('orders', { item: 7 });
    await eventually(() => there.of('message').length === 1);
    expect(there.of('message')[0]!.offset).toBe(offset);
    expect(there.of('message')[0]!.clientId).toBe('alice');
  });
});
