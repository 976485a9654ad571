/**
 * Mounted apps in real hyp workers: a misbehaving one does not cost a
 * worker, and a mounted Fastify's requests and onClose hooks see the
 * worker's shutdown through.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor } from '../../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('mounted apps in a worker', () => {
  it('an Express app that answers twice does not get its worker replaced', async () => {
    sup = await startSupervisor({ app: fixtureApp('mounted-lifecycle'), workers: 1 });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const [worker] = (await sup.status()).workers;
    for (let i = 0; i < 5; i++) expect(await (await fetch(`${base}/express/twice`)).text()).toBe('first');
    const uncaught = (l: { msg?: unknown }) => String(l.msg).startsWith('uncaught exception');
    await sup.waitLog((l) => l.code === 'HYP_E_MOUNT_RESPONSE' || uncaught(l), 'the misuse reported');
    // Before: each second end() was an uncaught exception; the worker asked to be replaced.
    expect(sup.logs.filter(uncaught)).toEqual([]);
    expect(sup.logs.filter((l) => l.code === 'HYP_E_MOUNT_RESPONSE').length).toBeGreaterThan(0);
    const after = await sup.status();
    expect([after.generation, after.workers.map((w) => w.pid), after.other_workers]).toEqual([
      1,
      [worker!.pid],
      [],
    ]);
  });

  it('at shutdown, a request in flight on a mounted Fastify finishes, then Fastify closes (onClose runs)', async () => {
    sup = await startSupervisor({ app: fixtureApp('mounted-lifecycle'), workers: 1 });
    const slow = fetch(`http://127.0.0.1:${sup.httpPort}/fastify/slow`).then(async (r) => [
      r.status,
      await r.json(),
    ]);
    // The request has reached the worker (it is in flight) before the stop.
    await sup.waitLog((l) => l.fixture === 'slow-started', 'request in flight');
    const running = sup;
    sup = undefined;
    await running.stop();
    expect(await slow).toEqual([200, { slow: 'done' }]);
    expect(running.logs.filter((l) => l.fixture === 'fastify-onclose')).toHaveLength(1);
  });
});
