/**
 * Presence across nodes when the bus is not orderly: a node that vanishes
 * without closing its hub (a crash) and bus events that never arrive (a
 * node cut off from Redis). Several hubs in one process on a LocalBusGroup,
 * each behind a bus wrapper that can lose events.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type Bus, type BusHandler, LocalBus, LocalBusGroup } from '../../../../apps/server/ws/bus.js';
import { type BusEvent, decodeBusEvent, encodeBusEvent } from '../../../../apps/server/ws/bus-event.js';
import { envelope } from '../../../../apps/server/ws/envelope.js';
import { eventually, json, type Served, serveHub, TestClient } from './helpers.js';

/** A LocalBus that can drop what this node sends or receives, and records what it received. */
class LossyBus implements Bus {
  readonly inner: LocalBus;
  /** Sends and receives nothing: the node is gone as far as the others can tell. */
  cut = false;
  /** Drops received events this returns true for. */
  dropIncoming: ((e: BusEvent) => boolean) | undefined;
  readonly received: BusEvent[] = [];
  dropped = 0;

  constructor(group: LocalBusGroup) {
    this.inner = new LocalBus(group);
  }

  get nodeId(): string {
    return this.inner.nodeId;
  }

  publish(topic: string, payload: Uint8Array): void {
    if (!this.cut) this.inner.publish(topic, payload);
  }

  onMessage(handler: BusHandler): () => void {
    return this.inner.onMessage((topic, payload) => {
      if (this.cut) return;
      const e = decodeBusEvent(payload);
      if (e && this.dropIncoming?.(e)) {
        this.dropped++;
        return;
      }
      if (e) this.received.push(e);
      handler(topic, payload);
    });
  }

  ready(): Promise<void> {
    return this.inner.ready();
  }

  close(): Promise<void> {
    return this.inner.close();
  }
}

interface Node {
  served: Served;
  bus: LossyBus;
}

const nodes: Node[] = [];
const clients: TestClient[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await Promise.all(nodes.splice(0).map((n) => n.served.close()));
});

async function startNodes(
  count: number,
  presenceIntervalMs: number,
  maxSubscriptions?: number,
): Promise<Node[]> {
  const group = new LocalBusGroup();
  const started: Node[] = [];
  for (let i = 0; i < count; i++) {
    const bus = new LossyBus(group);
    const served = await serveHub({ bus, presenceIntervalMs, maxSubscriptions });
    started.push({ served, bus });
  }
  nodes.push(...started);
  return started;
}

async function client(node: Node, id: string, room?: string): Promise<TestClient> {
  const c = await TestClient.connect(node.served.url, 'json', { headers: { 'X-Client-ID': id } });
  clients.push(c);
  if (room !== undefined) {
    c.join(room);
    await eventually(() => node.served.hub.members(room).includes(id));
  }
  return c;
}

const sorted = (ids: string[]) => [...ids].sort();

describe('presence when a node vanishes without closing its hub', () => {
  it("drops the vanished node's members after the liveness window; the other nodes' clients get leave events", async () => {
    const [a, b, c] = await startNodes(3, 100);
    const a1 = await client(a!, 'a1', 'lobby');
    await client(b!, 'b1', 'lobby');
    await client(b!, 'b2', 'lobby');
    const c1 = await client(c!, 'c1', 'lobby');
    const everyone = ['a1', 'b1', 'b2', 'c1'];
    await eventually(() =>
      [a!, c!].every((n) => sorted(n.served.hub.members('lobby')).join() === everyone.join()),
    );
    // node b is gone for the others: no leave, no close, nothing more on the bus
    b!.bus.cut = true;
    await eventually(() => [a!, c!].every((n) => sorted(n.served.hub.members('lobby')).join() === 'a1,c1'));
    for (const watcher of [a1, c1]) {
      await watcher.until((w) => w.presenceEvents().filter((e) => e.startsWith('leave:')).length >= 2);
      expect(sorted(watcher.presenceEvents().filter((e) => e.startsWith('leave:')))).toEqual([
        'leave:b1',
        'leave:b2',
      ]);
    }
    // the presence control reply agrees
    a1.send({ type: 'presence', data: Buffer.from('{"room_id":"lobby"}') });
    await a1.until((w) => w.of('presence').some((m) => 'members' in (json(m) as object)));
    const reply = a1.of('presence').find((m) => 'members' in (json(m) as object))!;
    expect(sorted((json(reply) as { members: string[] }).members)).toEqual(['a1', 'c1']);
  });

  it('a node dropped while cut off is learned again when it comes back, with join events', async () => {
    const [a, b] = await startNodes(2, 100);
    const a1 = await client(a!, 'a1', 'lobby');
    await client(b!, 'b1', 'lobby');
    await eventually(() => a!.served.hub.members('lobby').includes('b1'));
    b!.bus.cut = true;
    await eventually(() => !a!.served.hub.members('lobby').includes('b1'));
    b!.bus.cut = false;
    await eventually(() => a!.served.hub.members('lobby').includes('b1'));
    await a1.until((w) => w.presenceEvents().length >= 4);
    expect(a1.presenceEvents()).toEqual(['join:a1', 'join:b1', 'leave:b1', 'join:b1']);
  });
});

describe('presence repair when bus events are lost', () => {
  it('a lost join and a lost leave are repaired from the origin snapshot; join/leave events only for the differences', async () => {
    const [a, b, c] = await startNodes(3, 100);
    const a1 = await client(a!, 'a1', 'lobby');
    const c1 = await client(c!, 'c1', 'lobby');
    const b2 = await client(b!, 'b2', 'lobby');
    await eventually(() => a!.served.hub.members('lobby').length === 3);
    await eventually(() => c!.served.hub.members('lobby').length === 3);
    // node a misses b1's join and b2's leave; node c sees both
    a!.bus.dropIncoming = (e) => e.origin === b!.bus.nodeId && (e.kind === 'join' || e.kind === 'leave');
    await client(b!, 'b1', 'lobby');
    b2.send({ type: 'leave_room', data: Buffer.from('{"room_id":"lobby"}') });
    await eventually(() => sorted(c!.served.hub.members('lobby')).join() === 'a1,b1,c1');
    await eventually(() => a!.bus.dropped === 2);
    // (node a may repair already: alive, sync and members were not dropped)
    a!.bus.dropIncoming = undefined;
    await eventually(() => sorted(a!.served.hub.members('lobby')).join() === 'a1,b1,c1');
    await a1.until((w) => w.presenceEvents().length >= 5);
    expect(a1.presenceEvents().slice(0, 3)).toEqual(['join:a1', 'join:c1', 'join:b2']);
    expect(sorted(a1.presenceEvents().slice(3))).toEqual(['join:b1', 'leave:b2']);
    // the snapshot went to node a only: c's view was right and its clients heard each change once
    expect(c1.presenceEvents()).toEqual(['join:c1', 'join:b2', 'join:b1', 'leave:b2']);
    expect(b!.bus.received.filter((e) => e.kind === 'sync' && e.origin === c!.bus.nodeId)).toEqual([]);
    expect(c!.bus.received.filter((e) => e.kind === 'members' && e.target === c!.bus.nodeId)).toEqual([]);
  });

  it('a snapshot larger than one chunk arrives whole', async () => {
    const rooms = Array.from({ length: 2500 }, (_, i) => `room-${i}`);
    const [a, b] = await startNodes(2, 100, 3000);
    // node a misses every join b makes
    a!.bus.dropIncoming = (e) => e.kind === 'join';
    const b1 = await client(b!, 'b1');
    const conn = b!.served.hub.client('b1')!;
    for (const room of rooms) b!.served.hub.joinRoom(conn, room);
    expect(b!.served.hub.members('room-2499')).toEqual(['b1']);
    await eventually(() => a!.bus.dropped === rooms.length);
    a!.bus.dropIncoming = undefined;
    await eventually(() => rooms.every((r) => a!.served.hub.members(r).includes('b1')));
    const chunks = a!.bus.received.filter((e) => e.kind === 'members');
    expect(chunks.length).toBeGreaterThan(1);
    expect(b1.closed).toBeUndefined();
  });

  it('no join or leave events, and no snapshots, while the views agree', async () => {
    const [a, b] = await startNodes(2, 100);
    const a1 = await client(a!, 'a1', 'lobby');
    const b1 = await client(b!, 'b1', 'lobby');
    await eventually(
      () => a!.served.hub.members('lobby').length === 2 && b!.served.hub.members('lobby').length === 2,
    );
    // let both announce a few times
    await eventually(
      () =>
        a!.bus.received.filter((e) => e.kind === 'alive').length >= 6 &&
        b!.bus.received.filter((e) => e.kind === 'alive').length >= 6,
    );
    expect(a1.presenceEvents()).toEqual(['join:a1', 'join:b1']);
    expect(b1.presenceEvents()).toEqual(['join:b1']);
    for (const n of [a!, b!]) {
      expect(n.bus.received.filter((e) => e.kind === 'sync' || e.kind === 'members')).toEqual([]);
    }
  });

  it('a client id held on two nodes stays a member until both leave', async () => {
    const [a, b] = await startNodes(2, 100);
    const a1 = await client(a!, 'a1', 'lobby');
    await client(a!, 'twin', 'lobby');
    const twinB = await client(b!, 'twin', 'lobby');
    await eventually(() => b!.served.hub.members('lobby').length === 2);
    twinB.send({ type: 'leave_room', data: Buffer.from('{"room_id":"lobby"}') });
    await eventually(
      () => b!.served.hub.members('lobby').length === 2 && b!.served.hub.client('twin') !== undefined,
    );
    // b's twin left; a's twin is still in the room: a1 hears nothing, b keeps listing twin
    await eventually(() => a!.bus.received.some((e) => e.kind === 'leave'));
    expect(sorted(a!.served.hub.members('lobby'))).toEqual(['a1', 'twin']);
    expect(sorted(b!.served.hub.members('lobby'))).toEqual(['a1', 'twin']);
    expect(a1.presenceEvents()).toEqual(['join:a1', 'join:twin']);
  });
});

describe('bus event wire form', () => {
  it('keeps the kinds that predate presence upkeep at their wire values; an unknown kind is ignored', () => {
    const m = envelope({ type: 'presence', clientId: 'x' });
    const kindOf = (bytes: Uint8Array) => bytes[1];
    // msgpack fixarray of 8, then the kind as a positive fixint
    expect(kindOf(encodeBusEvent('publish', 'c', 'n', m))).toBe(0);
    expect(kindOf(encodeBusEvent('leave', 'r', 'n', m))).toBe(5);
    expect(kindOf(encodeBusEvent('alive', '', 'n', m))).toBe(6);
    const future = encodeBusEvent('members', '', 'n', m);
    future[1] = 0x7f;
    expect(decodeBusEvent(future)).toBeUndefined();
  });
});
