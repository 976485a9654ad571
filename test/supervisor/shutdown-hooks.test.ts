/**
 * An app's onShutdown hook that never returns: the worker still leaves by
 * itself at its drain deadline (exit 0, HYP_E_SHUTDOWN_TIMEOUT naming the
 * hooks). Before, it stayed until the supervisor's SIGKILL at the deadline;
 * and with the supervisor gone (SIGKILLed), nothing ever stopped it: an
 * orphan serving nothing, forever.
 */
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
let orphans: number[] = [];
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
  for (const pid of orphans) if (isAlive(pid)) process.kill(pid, 'SIGKILL');
  orphans = [];
});

const app = fixtureApp('shutdown-hangs');

describe('an onShutdown hook that never returns', () => {
  it('pod drain: the worker exits 0 at the drain deadline on its own, not by the supervisor SIGKILL', async () => {
    sup = await startSupervisor({ app, workers: 1, sets: ['drain.delay=0s', 'drain.timeout=2s'] });
    const worker = (await sup.status()).workers[0]!;
    expect((await sup.admin('/drain', { method: 'POST' })).status).toBe(202);
    expect((await sup.exited).code).toBe(0);
    const timeout = sup.logs.find((l) => l.code === 'HYP_E_SHUTDOWN_TIMEOUT' && l.pid === worker.pid);
    expect(timeout?.msg).toMatch(/shutdown of the app's onShutdown hooks did not finish within/);
    const exit = sup.logs.find((l) => l.msg === 'worker exited' && l.worker_pid === worker.pid);
    expect(exit?.exit).toBe('code 0');
    expect(sup.logs.filter((l) => String(l.msg).startsWith('drain did not finish'))).toEqual([]);
  });

  it('supervisor SIGKILLed: the worker still exits (hooks get the 1 s it has)', async () => {
    sup = await startSupervisor({ app, workers: 1 });
    const worker = (await sup.status()).workers[0]!;
    orphans.push(worker.pid);
    sup.proc.kill('SIGKILL');
    await sup.exited;
    // The drain reached the hook, which hangs.
    await until(
      () => existsSync(join(sup!.dir, `shutdown-started-${worker.id}`)) || undefined,
      'hook started',
    );
    await until(() => !isAlive(worker.pid) || undefined, `worker ${worker.pid} gone`, 15_000);
  });
});
