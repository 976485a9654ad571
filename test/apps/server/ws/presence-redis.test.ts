/**
 * Presence across pods on the Redis bus, against a real redis-server on a
 * loopback port: pod A cut off from Redis for longer than the liveness
 * window while pod B keeps it, and Redis restarting without its data. The
 * others must drop a silent pod's members, nothing joined or left meanwhile
 * may be lost, and once the bus is back every view converges with join and
 * leave events that add up to the member list.
 */
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import {
  type BusEvent,
  decodeBusEvent,
  encodeAlive,
  encodeBusEvent,
} from '../../../../apps/server/ws/bus-event.js';
import { envelope } from '../../../../apps/server/ws/envelope.js';
import { pairHash } from '../../../../apps/server/ws/presence.js';
import { type Served, serveHub, TestClient } from './helpers.js';
import {
  type CuttableLink,
  cuttableLink,
  type RedisProcess,
  redisBinary,
  redisForSuite,
  until,
} from './redis-server.js';

const intervalMs = 150;
const redisServer = redisBinary();
let prefixCounter = 0;

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

interface Pod {
  served: Served;
  bus: RedisBus;
  /** Presence upkeep events this pod received from the others, in order. */
  upkeep: BusEvent[];
}

interface Member {
  id: string;
  pod: Pod;
  client: TestClient;
  /** The room's members on its pod just before it joined: its events start from there. */
  before: string[];
}

/** `room`'s presence join/leave events a client received, as `join:id` / `leave:id`. */
function eventsIn(c: TestClient, room: string): string[] {
  return c
    .of('presence')
    .map(
      (m) =>
        JSON.parse(Buffer.from(m.data).toString()) as {
          event?: string;
          room_id?: string;
          client_id?: string;
        },
    )
    .filter((e) => e.event !== undefined && e.room_id === room)
    .map((e) => `${e.event}:${e.client_id}`);
}

/**
 * The member list a client's events add up to, starting from `before`; a
 * join of a listed member or a leave of an unlisted one is an inconsistency.
 */
function replay(before: readonly string[], events: readonly string[]): string[] {
  const held = new Set(before);
  for (const e of events) {
    const [kind, id] = e.split(':') as [string, string];
    if (kind === 'join') {
      if (held.has(id)) throw new Error(`join of ${id}, already a member: ${events.join(' ')}`);
      held.add(id);
    } else {
      if (!held.has(id)) throw new Error(`leave of ${id}, not a member: ${events.join(' ')}`);
      held.delete(id);
    }
  }
  return [...held].sort();
}

const sorted = (ids: readonly string[]) => [...ids].sort();

/** A metric's value on a pod's registry (the sample whose labels include `labels`); undefined when absent. */
async function metric(
  p: Pod,
  name: string,
  labels: Record<string, string> = {},
): Promise<number | undefined> {
  const m = p.served.hub.metrics.registry.getSingleMetric(name);
  if (!m) return undefined;
  const { values } = await m.get();
  return values.find((v) => Object.entries(labels).every(([k, want]) => v.labels[k] === want))?.value;
}

/** B's presence figures: peer nodes, members, repairs by reason. */
async function figures(p: Pod) {
  const repairs = (reason: string) => metric(p, 'hyp_ws_presence_repairs_total', { reason });
  return {
    nodes: await metric(p, 'hyp_ws_presence_nodes'),
    members: await metric(p, 'hyp_ws_presence_members'),
    silence: await repairs('silence'),
    reset: await repairs('reset'),
    snapshot: await repairs('snapshot'),
  };
}

describe.skipIf(!redisServer)('presence across pods on the Redis bus (real redis-server)', () => {
  let redis: RedisProcess;
  let raw: Redis;

  redisForSuite(redisServer!, (server, client) => {
    redis = server;
    raw = client;
  });

  async function pod(url: string, prefix: string): Promise<Pod> {
    const bus = new RedisBus({ url, prefix, onError: () => {} });
    const served = await serveHub({ bus, presenceIntervalMs: intervalMs, ownTransports: true });
    cleanup.push(() => served.close());
    const upkeep: BusEvent[] = [];
    bus.onMessage((_topic, payload) => {
      const e = decodeBusEvent(payload);
      if (e && (e.kind === 'alive' || e.kind === 'sync' || e.kind === 'members')) upkeep.push(e);
    });
    await bus.ready();
    return { served, bus, upkeep };
  }

  /** Pod A reaches Redis through a link the test cuts; pod B straight. */
  async function twoPods(): Promise<{ a: Pod; b: Pod; link: CuttableLink; prefix: string }> {
    const prefix = `presence${process.pid}-${++prefixCounter}`;
    const link = await cuttableLink(redis.port);
    cleanup.push(() => link.close());
    const a = await pod(link.url, prefix);
    const b = await pod(redis.url, prefix);
    return { a, b, link, prefix };
  }

  /** Both pods' subscribers are on the bus (after a cut or a restart too). */
  async function bothSubscribed(prefix: string): Promise<void> {
    await until(async () => {
      const clients = (await raw.client('LIST')) as string;
      const subscribers = clients.split('\n').filter((l) => / psub=1 /.test(l)).length;
      return subscribers >= 2 || undefined;
    }, `both pods subscribed (${prefix})`);
  }

  async function connect(p: Pod, id: string): Promise<TestClient> {
    const c = await TestClient.connect(p.served.url, 'json', { headers: { 'X-Client-ID': id } });
    cleanup.push(() => c.close().catch(() => {}));
    return c;
  }

  /** `id` joins `room` on `p`; resolves once the pod lists it. */
  async function join(p: Pod, id: string, room: string, c?: TestClient): Promise<Member> {
    const client = c ?? (await connect(p, id));
    const before = p.served.hub.members(room);
    client.join(room);
    await until(() => p.served.hub.members(room).includes(id) || undefined, `${id} in ${room}`);
    return { id, pod: p, client, before };
  }

  function leave(m: Member, room: string): void {
    m.client.send({ type: 'leave_room', data: Buffer.from(JSON.stringify({ room_id: room })) });
  }

  /** Waits until every pod lists exactly `ids` in `room`. */
  async function everywhere(pods: Pod[], room: string, ids: string[]): Promise<void> {
    const want = sorted(ids).join();
    await until(
      () => pods.every((p) => sorted(p.served.hub.members(room)).join() === want) || undefined,
      `${room} = ${want} on every pod; have ${pods.map((p) => sorted(p.served.hub.members(room)).join()).join(' / ')}`,
    );
  }

  /** Waits for `count` more `alive` events from `from` on `on`: the views have had time to settle. */
  async function moreAlives(on: Pod, from: Pod, count: number): Promise<void> {
    const alives = () => on.upkeep.filter((e) => e.kind === 'alive' && e.origin === from.bus.nodeId).length;
    const target = alives() + count;
    await until(() => alives() >= target || undefined, `${count} more alive events`);
  }

  /** Every watcher's events add up to its pod's member list, without a double join or leave. */
  function consistent(watchers: Member[], room: string): void {
    for (const w of watchers) {
      expect(replay(w.before, eventsIn(w.client, room)), `${w.id}'s events in ${room}`).toEqual(
        sorted(w.pod.served.hub.members(room)),
      );
    }
  }

  it("a pod cut off from Redis past the liveness window: its members leave the others' views, and come back with what changed meanwhile", async () => {
    const { a, b, link, prefix } = await twoPods();
    const pods = [a, b];
    const a1 = await join(a, 'a1', 'lobby');
    await everywhere(pods, 'lobby', ['a1']);
    const b1 = await join(b, 'b1', 'lobby');
    await everywhere(pods, 'lobby', ['a1', 'b1']);
    const a2 = await join(a, 'a2', 'lobby');
    await everywhere(pods, 'lobby', ['a1', 'a2', 'b1']);
    const a2side = await join(a, 'a2', 'side', a2.client);
    await everywhere(pods, 'side', ['a2']);
    const b2 = await join(b, 'b2', 'side');
    await everywhere(pods, 'side', ['a2', 'b2']);
    // lobby a1, a2, b1; side a2, b2: 5 memberships, one other node, nothing repaired
    for (const p of pods)
      expect(await figures(p)).toEqual({ nodes: 1, members: 5, silence: 0, reset: 0, snapshot: 0 });

    link.cut();
    // B no longer hears A's alive: A's members leave B's view, with leave events
    await until(
      () =>
        (sorted(b.served.hub.members('lobby')).join() === 'b1' &&
          b.served.hub.members('side').join() === 'b2') ||
        undefined,
      "A's members gone from B",
    );
    await b1.client.until((c) => eventsIn(c, 'lobby').filter((e) => e.startsWith('leave:')).length >= 2);
    expect(sorted(eventsIn(b1.client, 'lobby').filter((e) => e.startsWith('leave:')))).toEqual([
      'leave:a1',
      'leave:a2',
    ]);
    await b2.client.until((c) => eventsIn(c, 'side').includes('leave:a2'));
    // and A no longer hears B's
    await until(
      () => sorted(a.served.hub.members('lobby')).join() === 'a1,a2' || undefined,
      "B's members gone from A",
    );

    // changes on both sides while cut off
    const a3 = await join(a, 'a3', 'lobby');
    leave(a1, 'lobby');
    await until(() => !a.served.hub.members('lobby').includes('a1') || undefined, 'a1 left on A');
    const b3 = await join(b, 'b3', 'lobby');
    expect(sorted(a.served.hub.members('lobby'))).toEqual(['a2', 'a3']);
    expect(sorted(b.served.hub.members('lobby'))).toEqual(['b1', 'b3']);

    link.restore();
    await bothSubscribed(prefix);
    await everywhere(pods, 'lobby', ['a2', 'a3', 'b1', 'b3']);
    await everywhere(pods, 'side', ['a2', 'b2']);
    // let both announce a few more times: nothing may change any more
    await moreAlives(b, a, 3);
    await moreAlives(a, b, 3);
    expect(sorted(b.served.hub.members('lobby'))).toEqual(['a2', 'a3', 'b1', 'b3']);
    expect(sorted(a.served.hub.members('lobby'))).toEqual(['a2', 'a3', 'b1', 'b3']);
    consistent([a2, a3, b1, b3], 'lobby'); // a1 left: it hears nothing after that
    consistent([a2side, b2], 'side');
    // lobby a2, a3, b1, b3; side a2, b2; each pod repaired its view of the other from a snapshot
    for (const p of pods) {
      const { snapshot, ...rest } = await figures(p);
      expect(rest).toEqual({ nodes: 1, members: 6, silence: 1, reset: 0 });
      expect(snapshot).toBeGreaterThanOrEqual(1);
    }
    // B's clients heard A's members come back, and a1 (gone meanwhile) not at all
    const seen = eventsIn(b1.client, 'lobby');
    const back = seen.slice(Math.max(seen.indexOf('leave:a1'), seen.indexOf('leave:a2')) + 1);
    expect(sorted(back.filter((e) => e.includes(':a')))).toEqual(['join:a2', 'join:a3']);
  }, 60_000);

  /** Pods A and B straight on Redis, with a1, a2 (A) and b1, b2 (B) in `lobby`. */
  async function podsOnRedis() {
    const prefix = `presence${process.pid}-${++prefixCounter}`;
    const a = await pod(redis.url, prefix);
    const b = await pod(redis.url, prefix);
    const pods = [a, b];
    const a1 = await join(a, 'a1', 'lobby');
    await everywhere(pods, 'lobby', ['a1']);
    const b1 = await join(b, 'b1', 'lobby');
    await everywhere(pods, 'lobby', ['a1', 'b1']);
    const a2 = await join(a, 'a2', 'lobby');
    await everywhere(pods, 'lobby', ['a1', 'a2', 'b1']);
    const b2 = await join(b, 'b2', 'lobby');
    await everywhere(pods, 'lobby', ['a1', 'a2', 'b1', 'b2']);
    return { prefix, a, b, pods, a1, a2, b1, b2 };
  }

  it('Redis restarting without its data, down past the liveness window: each pod drops the other and learns it again, with what changed meanwhile', async () => {
    const { prefix, a, b, pods, a1, a2, b1, b2 } = await podsOnRedis();
    await redis.stop();
    await until(
      () =>
        (sorted(a.served.hub.members('lobby')).join() === 'a1,a2' &&
          sorted(b.served.hub.members('lobby')).join() === 'b1,b2') ||
        undefined,
      'each pod without the other',
    );
    for (const p of pods)
      expect(await figures(p)).toEqual({ nodes: 0, members: 2, silence: 1, reset: 0, snapshot: 0 });
    const a3 = await join(a, 'a3', 'lobby');
    leave(a1, 'lobby');
    leave(b2, 'lobby');
    await until(() => !a.served.hub.members('lobby').includes('a1') || undefined, 'a1 left on A');
    await until(() => !b.served.hub.members('lobby').includes('b2') || undefined, 'b2 left on B');
    await redis.start();
    await bothSubscribed(prefix);
    await everywhere(pods, 'lobby', ['a2', 'a3', 'b1']);
    await moreAlives(b, a, 3);
    await moreAlives(a, b, 3);
    await everywhere(pods, 'lobby', ['a2', 'a3', 'b1']);
    consistent([a2, a3, b1], 'lobby');
    for (const p of pods) {
      const { snapshot, ...rest } = await figures(p);
      expect(rest).toEqual({ nodes: 1, members: 3, silence: 1, reset: 0 });
      expect(snapshot).toBeGreaterThanOrEqual(1);
    }
  }, 60_000);

  it('Redis restarting without its data right away: what was published while it was down is repaired', async () => {
    const { prefix, a, b, pods, a1, a2, b1, b2 } = await podsOnRedis();
    await redis.stop();
    const a3 = await join(a, 'a3', 'lobby');
    leave(a1, 'lobby');
    leave(b2, 'lobby');
    const b3 = await join(b, 'b3', 'lobby');
    await until(() => !a.served.hub.members('lobby').includes('a1') || undefined, 'a1 left on A');
    await until(() => !b.served.hub.members('lobby').includes('b2') || undefined, 'b2 left on B');
    await redis.start();
    await bothSubscribed(prefix);
    await everywhere(pods, 'lobby', ['a2', 'a3', 'b1', 'b3']);
    await moreAlives(b, a, 3);
    await moreAlives(a, b, 3);
    await everywhere(pods, 'lobby', ['a2', 'a3', 'b1', 'b3']);
    consistent([a2, a3, b1, b3], 'lobby');
  }, 60_000);

  it('a node announcing it holds nothing while a pod lists members of it is dropped at once (a reset), with leave events', async () => {
    const prefix = `presence${process.pid}-${++prefixCounter}`;
    const b = await pod(redis.url, prefix);
    const b1 = await join(b, 'b1', 'lobby');
    // another node, straight on the bus channel: g1 joins, then its leave is lost and it announces none
    const publish = (kind: 'join' | 'alive', target: string, clientId: string, data?: Uint8Array) =>
      raw.publish(
        `${prefix}:bus:ws`,
        Buffer.concat([
          Buffer.from([5]),
          Buffer.from('ghost'),
          encodeBusEvent(kind, target, 'ghost', envelope({ type: 'presence', clientId, data })),
        ]),
      );
    // it announces a long interval: B keeps it however slow this test runs
    const slow = 60_000;
    await publish('join', 'lobby', 'g1');
    await publish(
      'alive',
      '',
      '',
      encodeAlive({ count: 1, digest: pairHash('lobby', 'g1'), intervalMs: slow }),
    );
    await until(() => b.upkeep.some((e) => e.origin === 'ghost') || undefined, "ghost's alive on B");
    expect(b.served.hub.members('lobby').includes('g1')).toBe(true);
    expect(await figures(b)).toEqual({ nodes: 1, members: 2, silence: 0, reset: 0, snapshot: 0 });
    await publish('alive', '', '', encodeAlive({ count: 0, digest: 0, intervalMs: slow }));
    await until(() => !b.served.hub.members('lobby').includes('g1') || undefined, 'g1 gone from B');
    await b1.client.until((c) => eventsIn(c, 'lobby').includes('leave:g1'));
    expect(eventsIn(b1.client, 'lobby')).toEqual(['join:b1', 'join:g1', 'leave:g1']);
    expect(await figures(b)).toEqual({ nodes: 0, members: 1, silence: 0, reset: 1, snapshot: 0 });
  }, 30_000);
});
