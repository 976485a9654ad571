/**
 * Presence across the workers of one pod when a worker dies without closing
 * its hub: SIGKILL leaves no chance to announce leaves, so the surviving
 * worker has to notice the silence (the fixture announces every 200 ms).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { Envelope } from '../../apps/server/ws/envelope.js';
import { json, TestClient } from '../apps/server/ws/helpers.js';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  await Promise.all(clients.splice(0).map((c) => c.close().catch(() => {})));
  await sup?.stop();
  sup = undefined;
});

interface Placed {
  id: string;
  pid: number;
  client: TestClient;
}

/** The member list a `presence` query on `c` answers (the hub's view on that client's worker). */
async function membersSeenBy(c: TestClient, room: string): Promise<string[]> {
  const isList = (m: Envelope) => m.type === 'presence' && 'members' in (json(m) as object);
  const before = c.received.filter(isList).length;
  c.send({ type: 'presence', data: Buffer.from(JSON.stringify({ room_id: room })) });
  await c.until((w) => w.received.filter(isList).length > before, 5_000);
  const reply = c.received.filter(isList).at(-1)!;
  return (json(reply) as { members: string[] }).members.sort();
}

describe('WebSocket presence when a worker is SIGKILLed', () => {
  it("the surviving worker's clients get leave events for the killed worker's members, and the member list drops them", async () => {
    sup = await startSupervisor({ app: fixtureApp('ws-presence'), workers: 2 });
    const running = sup;
    // connect until both workers hold at least 2 clients (the kernel picks the worker), at most 32
    const placed: Placed[] = [];
    for (let i = 0; i < 32; i++) {
      const id = `m-${i}`;
      const client = await TestClient.connect(`ws://127.0.0.1:${running.httpPort}/ws`, 'json', {
        headers: { 'X-Client-ID': id },
      });
      clients.push(client);
      await client.until((c) => c.of('message').length >= 1);
      const pid = (json(client.of('message')[0]!) as { pid: number }).pid;
      placed.push({ id, pid, client });
      client.join('lobby');
      const pids = new Set(placed.map((p) => p.pid));
      if (pids.size === 2 && [...pids].every((pid) => placed.filter((p) => p.pid === pid).length >= 2)) break;
    }
    const pids = [...new Set(placed.map((p) => p.pid))];
    expect(pids.length).toBe(2);
    const [victimPid, survivorPid] = pids as [number, number];
    const victims = placed.filter((p) => p.pid === victimPid);
    const survivors = placed.filter((p) => p.pid === survivorPid);
    const everyone = placed.map((p) => p.id).sort();
    // both workers' views hold every member (joins cross through the supervisor)
    for (const side of [victims[0]!, survivors[0]!]) {
      await until(
        async () =>
          (await membersSeenBy(side.client, 'lobby')).join() === everyone.join() ? true : undefined,
        `every member seen from worker ${side.pid}`,
        15_000,
      );
    }
    const seenBefore = new Map(survivors.map((s) => [s.id, s.client.presenceEvents().length]));

    process.kill(victimPid, 'SIGKILL');

    const expectedLeaves = victims.map((v) => `leave:${v.id}`).sort();
    for (const s of survivors) {
      const sinceKill = () => s.client.presenceEvents().slice(seenBefore.get(s.id));
      await s.client.until(() => expectedLeaves.every((l) => sinceKill().includes(l)), 15_000);
      expect(
        sinceKill()
          .filter((e) => e.startsWith('leave:'))
          .sort(),
      ).toEqual(expectedLeaves);
    }
    expect(await membersSeenBy(survivors[0]!.client, 'lobby')).toEqual(survivors.map((s) => s.id).sort());
  }, 90_000);
});
