/**
 * Races of the `failing` replacement (see uncaught.test.ts for the plain
 * case): the failing worker crashes before its replacement is ready, and a
 * replacement that cannot start.
 */
import { rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

const spawned = (run: Running) => run.logs.filter((l) => l.msg === 'worker spawned');

describe('lifecycle: failing worker races', () => {
  it('the failing worker crashes before its replacement is ready: the replacement takes the slot, no extra worker', async () => {
    sup = await startSupervisor({ app: fixtureApp('failing-races'), workers: 1 });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const victim = (await sup.status()).workers[0]!.pid;
    await (await fetch(`${base}/throw-later`)).text();
    await sup.waitLog((l) => String(l.msg).includes('hit an uncaught exception'), 'replacing');
    await (await fetch(`${base}/exit-later?code=3`, { headers: { connection: 'close' } })).text();
    await until(() => !isAlive(victim) || undefined, 'failing worker gone', 5000);
    const after = await sup.waitFor(
      (s) => s.ready && s.workers.length === 1 && s.workers[0]!.pid !== victim,
      'replacement ready',
      15_000,
    );
    expect(after.other_workers).toEqual([]);
    expect(spawned(sup)).toHaveLength(2);
    expect(await (await fetch(`${base}/api/ping`)).text()).toBe('pong');
  });

  it('a replacement that cannot start: the failing worker keeps serving while the slot is retried with backoff; once one starts it is drained', async () => {
    const marker = join(process.env.TMPDIR ?? '/tmp', `hyp-fail-start-${process.pid}`);
    writeFileSync(marker, '');
    try {
      sup = await startSupervisor({
        app: fixtureApp('failing-races'),
        workers: 1,
        env: { HYP_TEST_FAIL_START: marker },
        sets: ['supervisor.backoff_initial=200ms', 'supervisor.backoff_max=1s'],
      });
      const base = `http://127.0.0.1:${sup.httpPort}`;
      const victim = (await sup.status()).workers[0]!.pid;
      await (await fetch(`${base}/throw-later`)).text();
      await sup.waitLog(
        (l) =>
          String(l.msg).startsWith('worker exited unexpectedly') && String(l.msg).includes('cannot start'),
        'replacement failed to start',
        15_000,
      );
      // Damaged or not, the failing worker keeps serving while no replacement can start.
      await sup.waitLog(
        (l) => String(l.msg).includes('keeps serving until one in its slot is ready'),
        'the failing worker kept',
      );
      expect((await sup.admin('/ready')).status).toBe(200);
      const served = (await (await fetch(`${base}/api/worker`)).json()) as { pid: number };
      expect(served.pid).toBe(victim);
      rmSync(marker);
      const after = await sup.waitFor(
        (s) => s.ready && s.workers.length === 1 && s.workers[0]!.pid !== victim,
        'a replacement ready',
        20_000,
      );
      expect(after.other_workers).toEqual([]);
      await until(() => !isAlive(victim) || undefined, 'failing worker gone', 15_000);
      const exit = sup.logs.find((l) => l.msg === 'worker exited' && l.worker_pid === victim);
      expect(exit?.exit).toBe('code 0');
    } finally {
      rmSync(marker, { force: true });
    }
  });
});
