/**
 * Existing Express and Fastify apps mounted under hyp keep their
 * zero-downtime restarts.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LoadRun, summarize } from '../bench/load.js';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('mounted Express and Fastify apps', () => {
  it('serve correctly and survive a rolling restart under load with 0 failed requests', async () => {
    sup = await startSupervisor({ app: fixtureApp('mounted'), workers: 2 });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    expect(await (await fetch(`${base}/express/users/7?x=1`)).json()).toEqual({
      via: 'express',
      id: '7',
      url: '/express/users/7?x=1',
    });
    expect(await (await fetch(`${base}/fastify/items/9`)).json()).toEqual({ via: 'fastify', id: '9' });

    const loads = [
      new LoadRun({
        url: base,
        path: '/express/users/1',
        connections: 16,
        requests: 1_000_000,
        maxMs: 90_000,
      }),
      new LoadRun({
        url: base,
        path: '/fastify/items/1',
        connections: 16,
        requests: 1_000_000,
        maxMs: 90_000,
      }),
    ];
    await until(() => loads.every((l) => l.result.ok > 300) || undefined, 'load on both apps');
    const res = await sup.admin('/restart?wait=1', { method: 'POST' });
    expect(res.status).toBe(200);
    await sup.waitFor((s) => s.other_workers.length === 0, 'old generation gone');
    const marks = loads.map((l) => l.result.ok);
    await until(
      () => loads.every((l, i) => l.result.ok > marks[i]! + 300) || undefined,
      'load after the restart',
    );
    for (const l of loads) l.stop();
    const [viaExpress, viaFastify] = await Promise.all(loads.map((l) => l.done));
    console.log(`express: ${summarize(viaExpress!)}\nfastify: ${summarize(viaFastify!)}`);
    expect(viaExpress!.failed).toBe(0);
    expect(viaFastify!.failed).toBe(0);
    expect((await sup.status()).generation).toBe(2);
  });
});
