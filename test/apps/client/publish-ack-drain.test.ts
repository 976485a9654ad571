/**
 * Acknowledged publishes crossing a drain: a worker closes its connections
 * with 1001 while a client publishes with ids as fast as it is acknowledged
 * and beyond. Every publish ends acknowledged (on the draining worker, or
 * sent again to the next one), none is lost or left waiting, and the
 * subscribers see each id at least once. Two hubs on the pod-wide history
 * (as two workers under one supervisor), a TCP front moving to the new one.
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { HypMessage } from '../../../apps/client/index.js';
import { IpcHistory } from '../../../apps/server/ws/ipc-history.js';
import { eventually, podHistoryChannels } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';
import { portOf } from './front.js';

afterEach(closeAll);

describe('acknowledged publishes crossing a drain (1001)', () => {
  it('every one is acknowledged, on the old worker or the new; the subscribers see every id', async () => {
    const { channels } = podHistoryChannels(2);
    const old = await hub({ sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[0] }) });
    const next = await hub({ sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[1] }) });
    const f = await frontOf(old);
    const w = client(next.url, { clientId: 'watcher' });
    const seen: HypMessage[] = [];
    w.ws.subscribe('orders', (m) => seen.push(m));
    await w.ws.connect();
    await eventually(() => w.ws.offset('orders') !== undefined);
    const a = client(f.url, { clientId: 'alice', reconnect: { initialDelayMs: 1, maxDelayMs: 20 } });
    await a.ws.connect();
    const total = 400;
    const outcomes: Array<Promise<string>> = [];
    for (let i = 0; i < total; i++) {
      outcomes.push(
        a.ws.publishAck('orders', i, { id: `d-${i}`, timeoutMs: 30_000 }).then(
          () => 'acknowledged',
          (err: { code: string }) => err.code,
        ),
      );
      if (i === total / 4) {
        f.target = portOf(next.url);
        void old.hub.drain({ spreadMs: 0 });
      }
      if (i % 8 === 0) await new Promise((r) => setImmediate(r));
    }
    const settled = await Promise.all(outcomes);
    const counts = new Map<string, number>();
    for (const s of settled) counts.set(s, (counts.get(s) ?? 0) + 1);
    expect(Object.fromEntries(counts)).toEqual({ acknowledged: total });
    await eventually(() => new Set(seen.map((m) => m.id)).size === total, 20_000);
    expect(a.errors).toEqual([]);
    expect(a.opens).toBe(2);
    // at least once: those that crossed the close frame were sent again (24 of 400 in a local run)
    expect(seen.length).toBeGreaterThanOrEqual(total);
  });
});
