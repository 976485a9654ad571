/**
 * bus-hold and bus-release go from the supervisor to workers only. An app
 * that sends them (or an `own` history delivery) to the supervisor itself
 * changes nothing: no worker is held, nothing is relayed, the supervisor
 * stays up.
 */
import { describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, until } from '../helpers/supervisor.js';
import { metric, relayPod } from './relay-helpers.js';

const pod = relayPod();

describe('an app that sends the relay hold messages to the supervisor', () => {
  it('changes nothing: publishers on every worker are read, every message arrives, no hold is counted', async () => {
    const running = await pod.start({ app: fixtureApp('ws-relay-forge'), workers: 2 });
    const forgedBy = new Set<number>();
    // from both workers (new connections are spread by the kernel): at most 40 requests
    for (let i = 0; i < 40 && forgedBy.size < 2; i++)
      for (const type of ['bus-hold', 'history', 'bus-release', 'bus-hold']) {
        const res = await fetch(`http://127.0.0.1:${running.httpPort}/forge?type=${type}&n=1000`, {
          method: 'POST',
          headers: { connection: 'close' },
        });
        forgedBy.add(((await res.json()) as { pid: number }).pid);
      }
    expect(forgedBy.size).toBe(2);

    const subscribers = [await pod.client(running.httpPort, true), await pod.client(running.httpPort, true)];
    const publishers = [await pod.client(running.httpPort, false), await pod.client(running.httpPort, false)];
    const expected: string[] = [];
    for (let i = 0; i < 500; i++)
      for (const [p, pub] of publishers.entries()) {
        pub.publish(`${p}-${i}`);
        expected.push(`${p}-${i}`);
      }
    for (const s of subscribers)
      await until(
        () => (s.ids.length >= expected.length ? true : undefined),
        'every publish delivered',
        30_000,
      );
    for (const s of subscribers) expect([...s.ids].sort()).toEqual([...expected].sort());
    expect(await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')).toBe(0);
    expect(isAlive(running.proc.pid!)).toBe(true);
    expect((await running.status()).workers.every((w) => w.state === 'ready')).toBe(true);
  }, 60_000);
});
