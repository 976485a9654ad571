import { type ChildProcess, execFileSync, fork, spawn } from 'node:child_process';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type Bus, LocalBus, LocalBusGroup, RedisBus } from '../../../../apps/server/ws/bus.js';
import { compareStreamIds, RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { freePort } from '../../../helpers/ports.js';
import { compileFixture } from './compile.js';
import { eventually, json, type Served, serveHub, TestClient, text } from './helpers.js';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

async function client(url: string, codec: string, id: string): Promise<TestClient> {
  const c = await TestClient.connect(url, codec, { headers: { 'X-Client-ID': id } });
  cleanup.push(() => c.close());
  return c;
}

/** Publishes, waits until every subscriber has it, then a little longer to catch duplicates. */
async function expectExactlyOnce(subscribers: TestClient[], count: number): Promise<void> {
  await Promise.all(subscribers.map((s) => s.nextOf('message', count)));
  await new Promise((r) => setTimeout(r, 200));
  for (const s of subscribers) expect(s.of('message').length).toBe(count);
}

async function twoHubs(makeBus: () => Bus): Promise<[Served, Served]> {
  const a = await serveHub({ bus: makeBus() });
  const b = await serveHub({ bus: makeBus() });
  cleanup.push(
    () => a.close(),
    () => b.close(),
  );
  await Promise.all([a.hub.bus.ready(), b.hub.bus.ready()]);
  return [a, b];
}

function scenarios(makeBus: () => Bus) {
  it('a publish on one node reaches every subscriber on both nodes exactly once', async () => {
    const [a, b] = await twoHubs(makeBus);
    const subs = [
      await client(a.url, 'json', 'a1'),
      await client(a.url, 'msgpack', 'a2'),
      await client(b.url, 'protobuf', 'b1'),
      await client(b.url, 'flatbuffers', 'b2'),
    ];
    for (const s of subs) s.subscribe('news');
    await Promise.all(subs.map((s) => s.nextOf('subscribed')));
    subs[0]!.send({ type: 'publish', channel: 'news', data: Buffer.from('{"from":"client"}') });
    await expectExactlyOnce(subs, 1);
    b.hub.publish('news', { from: 'server' });
    await expectExactlyOnce(subs, 2);
    expect(subs.map((s) => json(s.of('message')[1]!))).toEqual(Array(4).fill({ from: 'server' }));
    expect(subs[3]!.of('message')[0]!.clientId).toBe('a1');
  });

  it('broadcast, sendTo and toRoom cross nodes; presence lists members of every node', async () => {
    const [a, b] = await twoHubs(makeBus);
    const x = await client(a.url, 'json', 'x');
    const y = await client(b.url, 'json', 'y');
    a.hub.broadcast('hello all');
    await expectExactlyOnce([x, y], 1);
    expect(a.hub.sendTo('y', 'direct')).toBe(false);
    await y.nextOf('message', 2);
    expect(text(y.of('message')[1]!)).toBe('"direct"');
    x.join('room');
    y.join('room');
    await eventually(() => a.hub.members('room').length === 2 && b.hub.members('room').length === 2);
    b.hub.toRoom('room', 'in room', { except: 'y' });
    await x.nextOf('message', 2);
    await y.close();
    await eventually(() => a.hub.members('room').length === 1);
    expect(a.hub.members('room')).toEqual(['x']);
    expect(
      x.of('presence').map((m) => (json(m) as { event: string; client_id: string }).client_id),
    ).toContain('y');
  });
}

describe('LocalBus (hubs in one process)', () => {
  let group: LocalBusGroup;
  beforeAll(() => {
    group = new LocalBusGroup();
  });
  scenarios(() => new LocalBus(group));
});

describe('IpcBus (two worker processes, parent relays like the supervisor)', () => {
  let script: string;
  const workers: ChildProcess[] = [];
  const ports: number[] = [];

  beforeAll(async () => {
    script = await compileFixture('test/fixtures/ws/ipc-worker.ts');
    for (const id of [1, 2]) {
      const child = fork(script, [], {
        env: { ...process.env, HYP_WORKER_ID: String(id) },
        serialization: 'advanced',
      });
      workers.push(child);
      ports.push(
        await new Promise<number>((resolve, reject) => {
          child.on('message', (m: { type: string; port?: number }) => m.type === 'ready' && resolve(m.port!));
          child.once('exit', (code) => reject(new Error(`worker exited ${code}`)));
        }),
      );
    }
    for (const w of workers) {
      w.on('message', (m: { type: string }) => {
        if (m.type !== 'bus') return;
        for (const other of workers) if (other !== w) other.send(m);
      });
    }
  }, 60_000);

  afterAll(() => {
    for (const w of workers) w.kill();
  });

  it('a publish on worker 1 reaches subscribers on both workers exactly once, in every codec', async () => {
    const subs = [
      await client(`ws://127.0.0.1:${ports[0]}/ws`, 'json', 'p'),
      await client(`ws://127.0.0.1:${ports[0]}/ws`, 'msgpack', 'q'),
      await client(`ws://127.0.0.1:${ports[1]}/ws`, 'protobuf', 'r'),
      await client(`ws://127.0.0.1:${ports[1]}/ws`, 'json', 's'),
    ];
    for (const s of subs) s.subscribe('ipc');
    await Promise.all(subs.map((s) => s.nextOf('subscribed')));
    subs[0]!.send({ type: 'publish', channel: 'ipc', data: Buffer.from('1') });
    await expectExactlyOnce(subs, 1);
    workers[1]!.send({ type: 'publish', channel: 'ipc', data: 2 });
    await expectExactlyOnce(subs, 2);
    for (let i = 0; i < 50; i++)
      subs[i % 4]!.send({ type: 'publish', channel: 'ipc', data: Buffer.from(String(i)) });
    await expectExactlyOnce(subs, 52);
  });
});

function redisBinary(): string | undefined {
  try {
    return execFileSync('which', ['redis-server']).toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

const redisServer = redisBinary();
describe.skipIf(!redisServer)(
  'RedisBus (hubs as separate Redis nodes; a real redis-server on a loopback port)',
  () => {
    let redis: ChildProcess;
    let url: string;
    const buses: RedisBus[] = [];

    beforeAll(async () => {
      const port = await freePort();
      url = `redis://127.0.0.1:${port}`;
      redis = spawn(
        redisServer!,
        ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
        {
          stdio: 'ignore',
        },
      );
      const probe = new RedisBus({ url });
      await probe.ready();
      await probe.close();
    }, 30_000);

    afterAll(async () => {
      await Promise.all(buses.map((b) => b.close()));
      redis.kill();
    });

    scenarios(() => {
      const bus = new RedisBus({ url, prefix: 'scenario' });
      buses.push(bus);
      return bus;
    });

    describe('with the channel history shared in Redis Streams', () => {
      async function pods(prefix: string, size: number): Promise<[Served, Served]> {
        const make = async () => {
          const served = await serveHub({
            bus: new RedisBus({ url, prefix }),
            sharedHistory: new RedisHistory({ url, prefix, size }),
            ownTransports: true,
          });
          cleanup.push(() => served.close());
          return served;
        };
        const a = await make();
        const b = await make();
        await Promise.all([a, b].map((p) => p.hub.bus.ready()));
        await Promise.all([a, b].map((p) => (p.hub as unknown as { shared: RedisHistory }).shared.ready()));
        return [a, b];
      }

      it('publishes reach both nodes exactly once, in one order, with the same offsets', async () => {
        const [a, b] = await pods(`order${Date.now()}`, 1000);
        const x = await client(a.url, 'json', 'ox');
        const y = await client(b.url, 'msgpack', 'oy');
        for (const c of [x, y]) c.subscribe('s');
        await Promise.all([x, y].map((c) => c.nextOf('subscribed')));
        for (let i = 0; i < 20; i++) (i % 2 ? a : b).hub.publish('s', i);
        x.send({ type: 'publish', channel: 's', data: Buffer.from('20') });
        await expectExactlyOnce([x, y], 21);
        expect(x.of('message').map((m) => m.offset)).toEqual(y.of('message').map((m) => m.offset));
        expect(x.of('message').map((m) => text(m))).toEqual(y.of('message').map((m) => text(m)));
      });

      it('a client offline while 100 messages are published resumes on the other pod: all 100, in order', async () => {
        const [a, b] = await pods(`resume${Date.now()}`, 1000);
        const first = await client(a.url, 'msgpack', 'wanderer');
        first.subscribe('ticker');
        await first.nextOf('subscribed');
        a.hub.publish('ticker', -1);
        const [last] = await first.nextOf('message');
        await first.close();
        // one publisher, so "in order" is defined; the client left pod a and comes back on pod b
        for (let n = 0; n < 100; n++) b.hub.publish('ticker', n);
        const again = await client(b.url, 'msgpack', 'wanderer2');
        again.subscribe('ticker', last!.offset);
        const got = await again.nextOf('message', 100);
        expect(got.map((m) => json(m))).toEqual(Array.from({ length: 100 }, (_, i) => i));
        expect(compareStreamIds(got[0]!.offset, last!.offset)).toBe(1);
        a.hub.publish('ticker', 100);
        await again.nextOf('message', 101);
        expect(again.of('error')).toEqual([]);
        await new Promise((r) => setTimeout(r, 100));
        expect(again.of('message')).toHaveLength(101);
      });

      it('answers HYP_E_WS_RECOVERY_FAILED when the stream was trimmed past the offset', async () => {
        const [a, b] = await pods(`trim${Date.now()}`, 5);
        const c = await client(a.url, 'json', 'trim1');
        c.subscribe('t');
        await c.nextOf('subscribed');
        a.hub.publish('t', 0);
        const [m] = await c.nextOf('message');
        await c.close();
        for (let n = 1; n < 20; n++) a.hub.publish('t', n);
        await new Promise((r) => setTimeout(r, 200));
        const again = await client(b.url, 'json', 'trim2');
        again.subscribe('t', m!.offset);
        const [err] = await again.nextOf('error');
        expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_RECOVERY_FAILED', channel: 't' });
        b.hub.publish('t', 'live');
        await again.nextOf('message');
      });
    });

    it('drops its own messages and delivers the others once', async () => {
      const prefix = `own${Date.now()}`;
      const one = new RedisBus({ url, prefix });
      const two = new RedisBus({ url, prefix });
      buses.push(one, two);
      await Promise.all([one.ready(), two.ready()]);
      const gotOne: string[] = [];
      const gotTwo: string[] = [];
      one.onMessage((t, p) => gotOne.push(`${t}:${Buffer.from(p)}`));
      two.onMessage((t, p) => gotTwo.push(`${t}:${Buffer.from(p)}`));
      one.publish('topic', Buffer.from('x'));
      await eventually(() => gotTwo.length === 1);
      await new Promise((r) => setTimeout(r, 100));
      expect(gotOne).toEqual([]);
      expect(gotTwo).toEqual(['topic:x']);
    });
  },
);

if (!redisServer) {
  it.skip('RedisBus: redis-server is not installed (apt-get install redis-server) — skipped', () => {});
}
