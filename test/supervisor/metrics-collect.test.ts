/**
 * An application metric whose `collect()` throws or rejects must not turn a
 * scrape of the supervisor's /metrics into an unhandled rejection in the
 * worker (which reports it as failing and gets it replaced: one worker
 * churned per scrape). The scrape leaves that metric out, keeps the rest,
 * and the worker logs which metric failed.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('application metrics whose collect() fails', () => {
  it('a scrape answers without them, logs HYP_E_METRICS_COLLECT, and replaces no worker', async () => {
    sup = await startSupervisor({ app: fixtureApp('metrics-throws'), workers: 1 });
    const before = (await sup.status()).workers[0]!;
    const served = await fetch(`http://127.0.0.1:${sup.httpPort}/api/worker`);
    expect(served.status).toBe(200);
    await served.text();

    for (let i = 0; i < 3; i++) {
      const res = await sup.admin('/metrics');
      expect(res.status).toBe(200);
      const text = await res.text();
      expect(text).toMatch(/^app_jobs_total 1$/m);
      expect(text).toMatch(/hyp_http_requests_total\{/);
      expect(text).toMatch(new RegExp(`process_cpu_user_seconds_total\\{worker_id="${before.id}"\\}`));
      expect(text).not.toMatch(/^app_pool_size /m);
      expect(text).not.toMatch(/^app_queue_depth /m);
    }
    for (const name of ['app_pool_size', 'app_queue_depth'])
      await sup.waitLog(
        (l) => l.role === 'worker' && l.code === 'HYP_E_METRICS_COLLECT' && String(l.msg).includes(name),
        `HYP_E_METRICS_COLLECT for ${name}`,
      );
    // A failure would be answered by a replacement; give it the time a replacement takes to show.
    const since = Date.now();
    await until(() => Date.now() - since > 1500 || undefined, '1.5 s');
    expect(sup.logs.filter((l) => String(l.msg).includes('hit an uncaught exception'))).toEqual([]);
    expect(sup.logs.filter((l) => l.level === 'fatal')).toEqual([]);
    const st = await sup.status();
    expect(st.workers.map((w) => [w.pid, w.state])).toEqual([[before.pid, 'ready']]);
  });
});
