/**
 * Fan-out across the workers of one pod through the real supervisor: channel
 * publishes go through the supervisor's pod-wide history, which delivers each
 * to every worker once.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { demoApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { exactlyOnce, TestClient } from './ws-helpers.js';

let sup: Running | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await sup?.stop();
  sup = undefined;
});

const wsClients = async (s: Running) =>
  (await s.status()).workers.map((w) => (w as unknown as { ws_clients: number }).ws_clients);

describe('WebSocket fan-out across workers', () => {
  it('every message published on either worker reaches every subscriber on both workers exactly once, in one order', async () => {
    sup = await startSupervisor({ app: demoApp, workers: 2, sets: ['tcp.echo.addr=127.0.0.1:0'] });
    const running = sup;
    // connect until both workers hold at least 2 clients (the kernel picks the worker), at most 32
    let spread: number[] = [];
    for (let i = 0; i < 32; i++) {
      const c = new TestClient(running.httpPort, { clientId: `sub-${i}` });
      clients.push(c);
      await c.connect();
      await c.subscribe('news');
      await c.subscribe('burst');
      if (clients.length < 4) continue;
      spread = await until(
        async () => {
          const counts = await wsClients(running);
          return counts.reduce((a, b) => a + b, 0) === clients.length ? counts : undefined;
        },
        'ws_clients in /status',
        10_000,
      );
      if (spread.every((n) => n >= 2)) break;
    }
    expect(spread.length).toBe(2);
    expect(Math.min(...spread)).toBeGreaterThanOrEqual(2);

    // every client publishes (so publishers sit on both workers), every client subscribes
    const perClient = 50;
    const expected: string[] = [];
    for (let n = 0; n < perClient; n++) {
      for (const [i, c] of clients.entries()) {
        const id = `${i}:${n}`;
        expected.push(id);
        c.ws.publish('news', { id });
      }
    }
    await until(
      () => (clients.every((c) => c.ids('news').length >= expected.length) ? true : undefined),
      'every delivery',
      30_000,
    );
    await new Promise((r) => setTimeout(r, 300)); // late duplicates would show up here
    const orders = new Set<string>();
    for (const c of clients) {
      expect(exactlyOnce(c.ids('news'), expected)).toEqual({ missing: 0, duplicated: 0, unexpected: 0 });
      orders.add(c.messages.map((m) => m.offset).join(','));
      expect(c.errors).toEqual([]);
    }
    // the supervisor orders a channel once for the pod: same offsets, same order everywhere
    expect(orders.size).toBe(1);
    // offsets are the supervisor's (`<epoch ≥ 2^64>-<seq>`), consecutive on the channel
    const seqs = clients[0]!.messages.map((m) => /^(\d{20,})-(\d+)$/.exec(m.offset)?.[2]).map(Number);
    expect(seqs.every((s, i) => i === 0 || s === seqs[i - 1]! + 1)).toBe(true);
    console.log(
      `cross-worker: ${clients.length} subscribers (${spread.join('+')} per worker), ` +
        `${expected.length} messages, ${clients.length * expected.length} deliveries, 0 missing, 0 duplicated`,
    );

    // a bounded burst, for the record (not asserted: timing belongs to benchmarks)
    const burst = 2_000;
    const started = performance.now();
    for (let n = 0; n < burst; n++) clients[n % clients.length]!.ws.publish('burst', { id: String(n) });
    await until(
      () => (clients.every((c) => c.ids('burst').length >= burst) ? true : undefined),
      'burst delivered',
      60_000,
    );
    const seconds = (performance.now() - started) / 1000;
    console.log(
      `cross-worker burst: ${burst} publishes, ${burst * clients.length} deliveries in ${seconds.toFixed(2)} s ` +
        `(${Math.round(burst / seconds)} publishes/s through the supervisor)`,
    );
  });
});
