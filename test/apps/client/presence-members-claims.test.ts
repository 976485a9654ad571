/**
 * Member lists when the hub holds back or refuses one of the client's own
 * room requests. The hub's replay claims (its `replayClaims` hook: every
 * sealed frame waits for its claim's verdict, in order per connection) are
 * decided here frame by frame (../server/ws/spec-claims.ts). Real hubs
 * (in-process, loopback), real clients, the TCP front of ./front.ts for the
 * network cut. No sleeps: each step waits for what the hub or the client did.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import type { HypErrorFrame, HypWebSocket } from '../../../apps/client/index.js';
import { LocalBus, LocalBusGroup } from '../../../apps/server/ws/bus.js';
import { eventually } from '../server/ws/helpers.js';
import { SpecClaims } from '../server/ws/spec-claims.js';
import { client, closeAll, frontOf, hub } from './delivery.js';
import { portOf } from './front.js';
import { sorted, watch } from './presence-watch.js';

afterEach(async () => {
  await closeAll();
});

const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
const nowhere = 1;

/** A hub with security whose replay claims the spec decides (`bus`: to share presence with other hubs). */
async function guardedHub(bus?: LocalBus) {
  const claims = new SpecClaims();
  const served = await hub({
    security: { keys, replayWindowMs: 30_000, replayClaims: claims },
    ...(bus === undefined ? {} : { bus }),
  });
  return { served, claims };
}

/**
 * Resolves once the hub answered everything `ws` sent so far: a member-list request of a room
 * nobody joins, whose answer comes after the answers (and refusals) of every earlier request.
 */
async function settled(ws: HypWebSocket): Promise<void> {
  const probe = `probe-${randomBytes(4).toString('hex')}`;
  let answered = false;
  const off = ws.on('presence', (m) => {
    if (m.channel === probe) answered = true;
  });
  ws.presence(probe);
  await eventually(() => answered);
  off();
}

/** Client `id` on `url` (sealed), in `room`, its own member list answered. */
async function member(url: string, id: string, room: string) {
  const m = client(url, { clientId: id, security: keys });
  m.ws.joinRoom(room);
  await m.ws.connect();
  await eventually(() => m.ws.members(room).includes(id));
  return m;
}

/**
 * A guarded hub with member `b` in `lobby`, and client `a` joining `lobby`
 * while the claims of its next sealed frames (its join, then its own
 * member-list request) are decided by `plan` ('' accepts, else the refusal);
 * resolves once the hub answered both.
 */
async function aJoinsWith(plan: string[]) {
  const { served, claims } = await guardedHub();
  const b = await member(served.url, 'b', 'lobby');
  claims.plan = plan;
  const a = client(served.url, { clientId: 'a', security: keys });
  const seen = watch(a.ws, 'lobby');
  a.ws.joinRoom('lobby');
  await a.ws.connect();
  await settled(a.ws);
  return { served, a, b, seen };
}

const roomRefusals = (errors: HypErrorFrame[]) => errors.map((e) => `${e.code} ${e.room_id} ${e.request}`);

describe('a room request the hub refuses (its replay claim failed closed)', () => {
  it('a refused join lists no members and the refusal names the room; a good join after lists the hub members, the application gets its answers', async () => {
    // the join refused, its own member-list request behind it accepted
    const { served, a, b, seen } = await aJoinsWith(['claim store unavailable (spec)', '']);
    expect(roomRefusals(a.errors)).toEqual(['HYP_E_WS_REPLAY lobby join_room']);
    expect(served.hub.members('lobby')).toEqual(['b']);
    // not a member: no list (before, the answer to its list request was taken as its list)
    expect(a.ws.members('lobby')).toEqual([]);

    // the application joins again: accepted this time
    a.ws.joinRoom('lobby');
    await eventually(() => sorted(a.ws.members('lobby')).join() === 'a,b');
    expect(seen.applied()).toEqual(['a', 'b']);
    b.ws.leaveRoom('lobby');
    await eventually(() => a.ws.members('lobby').join() === 'a');
    a.ws.presence('lobby');
    await eventually(() => seen.answers.length === 1);
    expect(seen.answers).toEqual([['a']]);
    expect(seen.applied()).toEqual(['a']);
    expect(seen.noOps).toEqual([]);
    expect(a.errors).toHaveLength(1);
  });

  it("a refused list request (the join accepted) is reported naming the room; the application's presence(room) is answered and brings the list to the hub's", async () => {
    const { served, a, seen } = await aJoinsWith(['', 'claim store unavailable (spec)']);
    expect(roomRefusals(a.errors)).toEqual(['HYP_E_WS_REPLAY lobby presence']);
    expect(sorted(served.hub.members('lobby'))).toEqual(['a', 'b']);
    // a member whose list the hub did not send: only what events told it
    expect(a.ws.members('lobby')).toEqual(['a']);

    a.ws.presence('lobby');
    await eventually(() => seen.answers.length === 1);
    expect(sorted(seen.answers[0]!)).toEqual(['a', 'b']);
    expect(sorted(a.ws.members('lobby'))).toEqual(['a', 'b']);
    expect(seen.applied()).toEqual(['a', 'b']);
    expect(seen.noOps).toEqual([]);
  });

  it('after a refused list request, the room left and joined again is listed as the hub lists it', async () => {
    const { served, a, b } = await aJoinsWith(['', 'claim store unavailable (spec)']);
    expect(a.errors).toHaveLength(1);

    a.ws.leaveRoom('lobby');
    a.ws.joinRoom('lobby');
    await settled(a.ws);
    expect(sorted(served.hub.members('lobby'))).toEqual(['a', 'b']);
    // before: the answer was matched to the refused request, the list stayed ['a']
    expect(sorted(a.ws.members('lobby'))).toEqual(['a', 'b']);
    b.ws.leaveRoom('lobby');
    await eventually(() => a.ws.members('lobby').join() === 'a');
    expect(a.errors).toHaveLength(1);
  });

  it('both refused: the join is reported once, its list request not; a good join after lists the hub members', async () => {
    const { a, seen } = await aJoinsWith([
      'claim store unavailable (spec)',
      'claim store unavailable (spec)',
    ]);
    expect(roomRefusals(a.errors)).toEqual(['HYP_E_WS_REPLAY lobby join_room']);
    expect(a.ws.members('lobby')).toEqual([]);

    a.ws.joinRoom('lobby');
    await eventually(() => sorted(a.ws.members('lobby')).join() === 'a,b');
    // the application's request right after is answered, once
    a.ws.presence('lobby');
    await eventually(() => seen.answers.length === 1);
    await settled(a.ws);
    expect(seen.answers.map(sorted)).toEqual([['a', 'b']]);
    expect(seen.noOps).toEqual([]);
  });
});

describe('a join landing between the rejoin and the list answer', () => {
  it.each(['the same hub', 'another node'])(
    '(from %s) is reported once, as it comes; the list answer then adds only what changed while away',
    async (where) => {
      const group = new LocalBusGroup();
      const { served, claims } = await guardedHub(new LocalBus(group));
      // b joins through this hub, or through another one (the join reaches the client's hub on the bus)
      const other = where === 'another node' ? await hub({ bus: new LocalBus(group) }) : undefined;
      const f = await frontOf(served);
      const c = await member(served.url, 'c', 'lobby');
      const d = await member(served.url, 'd', 'lobby');
      const a = client(f.url, { clientId: 'a', security: keys });
      const seen = watch(a.ws, 'lobby');
      a.ws.joinRoom('lobby');
      await a.ws.connect();
      await eventually(() => seen.applied().join() === 'a,c,d');

      // away: c leaves meanwhile
      f.target = nowhere;
      const closes = a.closes;
      f.cut();
      await eventually(() => a.closes > closes);
      c.ws.leaveRoom('lobby');
      await eventually(() => sorted(served.hub.members('lobby')).join() === 'd');

      // back: the rejoin is granted, the list request behind it held
      claims.plan = ['', 'hold'];
      f.target = portOf(served.url);
      await eventually(() => claims.holding === 1 && served.hub.members('lobby').includes('a'));
      // meanwhile b joins and d leaves: the client is a member again, so it hears both
      const b =
        other === undefined
          ? client(served.url, { clientId: 'b', security: keys })
          : client(other.url, { clientId: 'b' });
      b.ws.joinRoom('lobby');
      await b.ws.connect();
      await eventually(() => seen.applied().join() === 'a,b,c,d');
      d.ws.leaveRoom('lobby');
      await eventually(() => seen.applied().join() === 'a,b,c');
      expect(sorted(a.ws.members('lobby'))).toEqual(['a', 'b', 'c']);

      // the list answer: c left while the client was away
      claims.release();
      await eventually(() => seen.applied().join() === 'a,b');
      await settled(a.ws);
      expect(sorted(a.ws.members('lobby'))).toEqual(sorted(served.hub.members('lobby')));
      expect(seen.events.slice(3)).toEqual([
        { event: 'join', room_id: 'lobby', client_id: 'b' },
        { event: 'leave', room_id: 'lobby', client_id: 'd' },
        { event: 'leave', room_id: 'lobby', client_id: 'c', snapshot: true },
      ]);
      expect(seen.noOps).toEqual([]);
      expect(seen.answers).toEqual([]);
      expect(a.errors).toEqual([]);
    },
  );
});
