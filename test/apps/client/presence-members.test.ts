/**
 * The member lists the client keeps for the rooms it joined, against real
 * hubs (in-process, loopback) behind a TCP front (./front.ts) that stands
 * for the network: cut, and kept away while members come and go. A
 * listener that applies the `presence` join/leave events to a set must end
 * with the hub's `hub.members(room)`, never hearing a join of a listed
 * member or a leave of an unlisted one (its own join after a reconnect
 * included), and `presence(room)` asked by the application is still
 * answered once per request.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { LocalBus, LocalBusGroup } from '../../../apps/server/ws/bus.js';
import { eventually } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';
import { portOf } from './front.js';
import { sorted, watch } from './presence-watch.js';

afterEach(async () => {
  await closeAll();
});

/** A port nothing listens on: the front's connections to it are refused, so the client stays away. */
const nowhere = 1;

/** Clients `ids`, each connected to `url` with `room` joined. */
async function members(url: string, ids: readonly string[], room: string) {
  const joined = new Map<string, ReturnType<typeof client>>();
  for (const id of ids) {
    const o = client(url, { clientId: id });
    o.ws.joinRoom(room);
    await o.ws.connect();
    joined.set(id, o);
  }
  return joined;
}

/**
 * Sends `a` away: its front refuses to reach any hub from now on, and `cut` ends its
 * connection; resolves once `a` saw the close.
 */
async function away(f: { target: number }, a: ReturnType<typeof client>, cut: () => unknown): Promise<void> {
  f.target = nowhere;
  const closes = a.closes;
  await cut();
  await eventually(() => a.closes > closes);
}

describe('member lists across reconnects', () => {
  it('a member that joins or leaves while the client is away is reported after the reconnect; members(room) is the hub list; its own join comes once', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const a = client(f.url, { clientId: 'a' });
    const seen = watch(a.ws, 'lobby');
    a.ws.joinRoom('lobby');
    await a.ws.connect();
    const others = await members(served.url, ['b', 'c'], 'lobby');
    await eventually(() => seen.applied().join() === 'a,b,c');

    // away: the front refuses to reach the hub, so every reconnect attempt fails meanwhile
    await away(f, a, () => f.cut());
    others.get('c')!.ws.leaveRoom('lobby');
    const d = client(served.url, { clientId: 'd' });
    d.ws.joinRoom('lobby');
    await d.ws.connect();
    await eventually(() => sorted(served.hub.members('lobby')).join() === 'b,d');
    expect(seen.applied()).toEqual(['a', 'b', 'c']);

    const opens = a.opens;
    f.target = portOf(served.url);
    await eventually(() => a.opens > opens);
    await eventually(() => seen.applied().join() === 'a,b,d');
    expect(sorted(a.ws.members('lobby'))).toEqual(sorted(served.hub.members('lobby')));
    expect(seen.noOps).toEqual([]);
    expect(seen.events.filter((e) => e.client_id === 'a' && e.event === 'join')).toHaveLength(1);
    // the changes it missed come as events made from the member list, marked so
    expect(seen.events.slice(-2)).toEqual([
      { event: 'leave', room_id: 'lobby', client_id: 'c', snapshot: true },
      { event: 'join', room_id: 'lobby', client_id: 'd', snapshot: true },
    ]);
    // the client's own member-list requests are not the application's: no answer reached it
    expect(seen.answers).toEqual([]);
  });

  it('over five cuts with members coming and going meanwhile, the events always add up to the hub list', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const a = client(f.url, { clientId: 'a' });
    const seen = watch(a.ws, 'room');
    a.ws.joinRoom('room');
    await a.ws.connect();
    const pool = ['m0', 'm1', 'm2', 'm3'].map((id) => {
      const m = client(served.url, { clientId: id });
      return { id, m, in: false };
    });
    for (const p of pool) await p.m.ws.connect();
    for (let round = 0; round < 5; round++) {
      await away(f, a, () => f.cut());
      // toggle two members (a different pair each round)
      for (const p of [pool[round % 4]!, pool[(round + 1) % 4]!]) {
        if (p.in) p.m.ws.leaveRoom('room');
        else p.m.ws.joinRoom('room');
        p.in = !p.in;
      }
      const expected = pool.filter((p) => p.in).map((p) => p.id);
      await eventually(() => sorted(served.hub.members('room')).join() === expected.join());
      f.target = portOf(served.url);
      await eventually(() => seen.applied().join() === sorted(['a', ...expected]).join());
      expect(sorted(a.ws.members('room'))).toEqual(sorted(served.hub.members('room')));
    }
    expect(seen.noOps).toEqual([]);
    expect(seen.events.filter((e) => e.client_id === 'a')).toEqual([
      { event: 'join', room_id: 'room', client_id: 'a' },
    ]);
  });

  it("moved to another node when its hub closes (a rolling restart): the list is the new node's, changes meanwhile reported", async () => {
    const group = new LocalBusGroup();
    const first = await hub({ bus: new LocalBus(group) });
    const second = await hub({ bus: new LocalBus(group) });
    const f = await frontOf(first);
    const a = client(f.url, { clientId: 'a' });
    const seen = watch(a.ws, 'lobby');
    a.ws.joinRoom('lobby');
    await a.ws.connect();
    const others = await members(second.url, ['b', 'c'], 'lobby');
    await eventually(() => seen.applied().join() === 'a,b,c');
    await away(f, a, () => first.close());
    others.get('c')!.ws.leaveRoom('lobby');
    const d = client(second.url, { clientId: 'd' });
    d.ws.joinRoom('lobby');
    await d.ws.connect();
    await eventually(() => sorted(second.hub.members('lobby')).join() === 'b,d');
    f.target = portOf(second.url);
    await eventually(() => seen.applied().join() === 'a,b,d', 20_000);
    expect(sorted(a.ws.members('lobby'))).toEqual(sorted(second.hub.members('lobby')));
    expect(seen.noOps).toEqual([]);
    expect(seen.events.filter((e) => e.client_id === 'a' && e.event === 'join')).toHaveLength(1);
  });

  it('joining a room lists the members already there as joins marked snapshot', async () => {
    const served = await hub();
    await members(served.url, ['x', 'y'], 'hall');
    await eventually(() => served.hub.members('hall').length === 2);
    const a = client(served.url, { clientId: 'a' });
    const seen = watch(a.ws, 'hall');
    await a.ws.connect();
    expect(a.ws.members('hall')).toEqual([]);
    a.ws.joinRoom('hall');
    await eventually(() => seen.applied().join() === 'a,x,y');
    expect(sorted(a.ws.members('hall'))).toEqual(['a', 'x', 'y']);
    expect(seen.events[0]).toEqual({ event: 'join', room_id: 'hall', client_id: 'a' });
    expect(sorted(seen.events.slice(1).map((e) => `${e.event} ${e.client_id} ${e.snapshot}`))).toEqual([
      'join x true',
      'join y true',
    ]);
    expect(seen.noOps).toEqual([]);
    // live changes follow as the hub sends them
    const z = client(served.url, { clientId: 'z' });
    z.ws.joinRoom('hall');
    await z.ws.connect();
    await eventually(() => seen.applied().join() === 'a,x,y,z');
    expect(seen.events.at(-1)).toEqual({ event: 'join', room_id: 'hall', client_id: 'z' });
    a.ws.leaveRoom('hall');
    expect(a.ws.members('hall')).toEqual([]);
    expect(a.ws.members('never-joined')).toEqual([]);
  });
});

describe('with security and a binary codec', () => {
  it('the requests go through the seal chain in order: the list after a reconnect is the hub list, the application gets its one answer', async () => {
    const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
    const served = await hub({ security: { keys } });
    const f = await frontOf(served);
    const b = client(served.url, { clientId: 'b', codec: 'protobuf', security: keys });
    b.ws.joinRoom('sealed');
    await b.ws.connect();
    const a = client(f.url, { clientId: 'a', codec: 'msgpack', security: keys });
    const seen = watch(a.ws, 'sealed');
    a.ws.joinRoom('sealed');
    await a.ws.connect();
    await eventually(() => seen.applied().join() === 'a,b');
    await away(f, a, () => f.cut());
    b.ws.leaveRoom('sealed');
    const c = client(served.url, { clientId: 'c', codec: 'json', security: keys });
    c.ws.joinRoom('sealed');
    await c.ws.connect();
    await eventually(() => sorted(served.hub.members('sealed')).join() === 'c');
    a.ws.presence('sealed');
    f.target = portOf(served.url);
    await eventually(() => seen.applied().join() === 'a,c' && seen.answers.length === 1);
    expect(sorted(a.ws.members('sealed'))).toEqual(sorted(served.hub.members('sealed')));
    expect(sorted(seen.answers[0]!)).toEqual(['a', 'c']);
    expect(seen.noOps).toEqual([]);
    expect(a.errors).toEqual([]);
  });
});

describe('keepMembers: false', () => {
  it('keeps no list and asks nothing: presence events come as the hub sends them, its own join again after a reconnect', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const other = client(served.url, { clientId: 'o' });
    other.ws.joinRoom('lobby');
    await other.ws.connect();
    const a = client(f.url, { clientId: 'a', keepMembers: false });
    const seen = watch(a.ws, 'lobby');
    a.ws.joinRoom('lobby');
    await a.ws.connect();
    await eventually(() => seen.events.length === 1);
    const opens = a.opens;
    f.cut();
    await eventually(() => a.opens > opens);
    await eventually(() => seen.events.length === 2);
    // a probe: once its answer is in, the hub has answered everything sent before it
    a.ws.presence('lobby');
    await eventually(() => seen.answers.length === 1);
    expect(seen.events).toEqual([
      { event: 'join', room_id: 'lobby', client_id: 'a' },
      { event: 'join', room_id: 'lobby', client_id: 'a' },
    ]);
    expect(sorted(seen.answers[0]!)).toEqual(['a', 'o']);
    expect(a.ws.members('lobby')).toEqual([]);
  });
});

describe("the application's own presence(room)", () => {
  it('is answered once per request, beside the requests the client makes itself (connected, and asked while away)', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const other = client(served.url, { clientId: 'o' });
    other.ws.joinRoom('lobby');
    await other.ws.connect();
    const a = client(f.url, { clientId: 'a' });
    const seen = watch(a.ws, 'lobby');
    a.ws.presence('lobby'); // before joining, while not connected yet
    a.ws.joinRoom('lobby');
    await a.ws.connect();
    a.ws.presence('lobby'); // right behind the client's own request
    await eventually(() => seen.answers.length === 2 && seen.applied().join() === 'a,o');

    await away(f, a, () => f.cut());
    a.ws.presence('lobby'); // while away: waits in the queue
    const opens = a.opens;
    f.target = portOf(served.url);
    await eventually(() => a.opens > opens);
    await eventually(() => seen.answers.length === 3);
    // an unrelated room the client never joined: answered as before
    const elsewhere: unknown[] = [];
    a.ws.on('presence', (m) => {
      if (m.channel === 'elsewhere') elsewhere.push(m.json());
    });
    a.ws.presence('elsewhere');
    await eventually(() => elsewhere.length === 1);
    expect(elsewhere).toEqual([{ room_id: 'elsewhere', members: [] }]);
    expect(seen.answers).toHaveLength(3);
    // the queue goes out after the rejoin: every answer lists the client too
    expect(seen.answers.map(sorted)).toEqual([
      ['a', 'o'],
      ['a', 'o'],
      ['a', 'o'],
    ]);
    expect(seen.noOps).toEqual([]);
  });

  it('a join the hub refuses (canJoin) is reported once per connection, as before, and lists no members', async () => {
    const served = await hub({ canJoin: (_c, room) => room !== 'vip' });
    const f = await frontOf(served);
    const inside = client(served.url, { clientId: 'inside' });
    inside.ws.joinRoom('lobby');
    await inside.ws.connect();
    const a = client(f.url, { clientId: 'a' });
    a.ws.joinRoom('vip');
    a.ws.joinRoom('lobby');
    await a.ws.connect();
    await eventually(() => a.ws.members('lobby').length === 2);
    expect(a.errors.map((e) => e.code)).toEqual(['HYP_E_WS_FORBIDDEN_CHANNEL']);
    expect(a.ws.members('vip')).toEqual([]);
    const opens = a.opens;
    f.cut();
    await eventually(() => a.opens > opens);
    await eventually(() => a.errors.length >= 2);
    // a probe: once its answer is in, the hub has answered everything sent before it
    const answers: unknown[] = [];
    a.ws.on('presence', (m) => {
      if (m.channel === 'lobby' && 'members' in m.json<object>()) answers.push(m.json());
    });
    a.ws.presence('lobby');
    await eventually(() => answers.length === 1);
    expect(a.errors.map((e) => e.code)).toEqual(['HYP_E_WS_FORBIDDEN_CHANNEL', 'HYP_E_WS_FORBIDDEN_CHANNEL']);
    expect(a.ws.members('vip')).toEqual([]);
  });
});
