/**
 * A worker whose supervisor was SIGKILLed while the worker's event loop was
 * busy: its next heartbeat meets a closed channel (EPIPE) before the worker
 * has read the channel's end. That is the supervisor going away, not an
 * uncaught exception in the app: the worker leaves quietly (exit 0, no
 * `fatal` line, no 'failing' report).
 */
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
let worker: number | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
  if (worker !== undefined && isAlive(worker)) process.kill(worker, 'SIGKILL');
  worker = undefined;
});

describe('supervisor SIGKILLed while a worker is busy', () => {
  it('the worker exits without reporting an uncaught exception', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1 });
    const w = (await sup.status()).workers[0]!;
    worker = w.pid;
    const blocked = fetch(`http://127.0.0.1:${sup.httpPort}/block?ms=1500`).then(
      (r) => r.text(),
      (err: unknown) => String(err),
    );
    // Give the request time to reach the worker (whose loop then stays blocked for 1.5 s).
    const sent = Date.now();
    await until(() => Date.now() - sent > 400 || undefined, 'request reaching the worker');
    sup.proc.kill('SIGKILL');
    await sup.exited;
    expect(await blocked).toBe('unblocked');
    await until(() => !isAlive(w.pid) || undefined, `worker ${w.pid} gone`, 10_000);
    const fromWorker = sup.logs.filter((l) => l.pid === w.pid);
    expect(fromWorker.filter((l) => l.level === 'fatal')).toEqual([]);
  });

  it('the supervisor SIGKILLed during a pod drain with a long request in flight: the worker still leaves within its 1 s orphan deadline, not drain.timeout', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 1,
      sets: ['drain.delay=0s', 'drain.timeout=300s'],
    });
    const w = (await sup.status()).workers[0]!;
    worker = w.pid;
    const slow = fetch(`http://127.0.0.1:${sup.httpPort}/api/slow?ms=120000`).then(
      (r) => r.status,
      (err: unknown) => String(err),
    );
    await until(
      async () => ((await sup!.status()).workers[0]?.inflight ?? 0) > 0 || undefined,
      'request in flight',
    );
    sup.proc.kill('SIGTERM');
    await sup.waitLog((l) => l.msg === 'worker draining' && l.pid === w.pid, 'worker draining', 20_000);
    sup.proc.kill('SIGKILL');
    await sup.exited;
    // Without the orphan deadline the worker would keep its drain's, 300 s away.
    await until(() => !isAlive(w.pid) || undefined, `worker ${w.pid} gone`, 20_000);
    await slow;
  });
});
