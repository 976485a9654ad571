/**
 * A worker that hits an uncaught exception (or an unhandled rejection) is
 * replaced, then drained: with a single worker under keep-alive load, no
 * request fails and its slow in-flight request completes. Node's default —
 * crash at once — would cut both (compare the SIGKILL test in
 * rolling-restart.test.ts).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LoadRun, summarize } from '../bench/load.js';
import {
  fixtureApp,
  isAlive,
  type LogLine,
  type Running,
  startSupervisor,
  until,
} from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

const failingLog = (pid: number) => (l: LogLine) =>
  l.role === 'supervisor' &&
  typeof l.msg === 'string' &&
  l.msg.includes('hit an uncaught exception') &&
  l.worker_pid === pid;

describe('uncaught exceptions in a worker', () => {
  it('one worker under load: replaced first, then drained; 0 failed requests, the in-flight slow request completes', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1 });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const load = new LoadRun({
      url: base,
      path: '/api/ping',
      connections: 8,
      requests: 1_000_000,
      maxMs: 90_000,
    });
    await until(() => load.result.ok > 200 || undefined, 'load running');

    for (const [route, origin] of [
      ['/throw-later', 'uncaughtException'],
      ['/reject-later', 'unhandledRejection'],
    ] as const) {
      const victim = (await sup.status()).workers[0]!;
      const slow = fetch(`${base}/api/slow?ms=1500`).then(async (r) => `${r.status} ${await r.text()}`);
      await sup.waitFor((s) => s.workers[0]!.inflight > 0, 'slow request in flight');
      const trigger = await fetch(`${base}${route}`);
      expect(await trigger.text()).not.toBe('');

      const said = await sup.waitLog(failingLog(victim.pid), `supervisor replacing worker ${victim.pid}`);
      expect(said.level).toBe('error');
      expect(said.error).toMatch(/thrown outside any request|rejected and never handled/);
      const fatal = await sup.waitLog(
        (l) => l.level === 'fatal' && l.pid === victim.pid && l.origin === origin,
        `fatal line from worker ${victim.pid}`,
      );
      expect(fatal.msg).toContain('uncaught exception');

      const after = await sup.waitFor(
        (s) => s.workers.length === 1 && s.workers[0]!.state === 'ready' && s.workers[0]!.pid !== victim.pid,
        'replacement ready',
      );
      expect(after.generation).toBe(victim.generation);
      // Drained, not killed: its in-flight request was answered.
      expect(await slow).toBe('200 done');
      await until(() => !isAlive(victim.pid) || undefined, `worker ${victim.pid} gone`);
      const exit = await sup.waitLog(
        (l) => l.msg === 'worker exited' && l.worker_pid === victim.pid,
        'exit line',
      );
      expect(exit.exit).toBe('code 0');
      const sentNow = load.result.sent;
      await until(() => load.result.sent > sentNow + 200 || undefined, 'load served by the replacement');
    }
    load.stop();
    const result = await load.done;
    console.log(`uncaught exception x2 with one worker: ${summarize(result)}`);
    expect(result.errors).toEqual({});
    expect(result.failed).toBe(0);
    expect(sup.logs.filter((l) => String(l.msg).includes('exited unexpectedly'))).toEqual([]);
    const metrics = await (await sup.admin('/metrics')).text();
    expect(metrics).toMatch(/hyp_supervisor_worker_restarts_total\{reason="uncaught"\} 2/);
  });
});
