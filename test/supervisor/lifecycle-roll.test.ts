/**
 * Rolls that do not finish: the workers of the new generation that did get
 * ready have been accepting connections from the shared sockets, so an
 * aborted roll (or a pod drain during the roll) must not SIGKILL them.
 */
import { existsSync } from 'node:fs';
import { Agent } from 'undici';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** Fire slow requests, one connection each, until the given worker has one in flight. */
async function slowOn(
  run: Running,
  pid: () => Promise<number | undefined>,
  ms: number,
): Promise<Array<Promise<string>>> {
  const requests: Array<Promise<string>> = [];
  const target = await pid();
  await until(
    async () => {
      for (let i = 0; i < 4; i++) {
        const a = new Agent({ pipelining: 0 });
        requests.push(
          fetch(`http://127.0.0.1:${run.httpPort}/api/slow?ms=${ms}`, { dispatcher: a } as RequestInit)
            .then(async (r) => `${r.status} ${await r.text()}`)
            .catch((err: Error) => `failed: ${String((err as { cause?: unknown }).cause ?? err)}`)
            .finally(() => void a.close()),
        );
      }
      const s = await run.status();
      const w = [...s.workers, ...s.other_workers].find((x) => x.pid === target);
      return w && w.inflight > 0 ? true : undefined;
    },
    `a slow request in flight on worker ${target}`,
    8000,
  );
  return requests;
}

describe('lifecycle: rolls that do not finish', () => {
  it('an aborted roll drains the new workers that got ready: their in-flight requests complete', async () => {
    sup = await startSupervisor({
      app: fixtureApp('half-ready'),
      workers: 2,
      sets: ['supervisor.ready_timeout=5s', 'supervisor.heartbeat_interval=200ms'],
    });
    const before = await sup.status();
    const res = await sup.admin('/restart', { method: 'POST' });
    expect(res.status).toBe(202);
    const fresh = await sup.waitFor(
      (s) => s.other_workers.some((w) => w.state === 'ready'),
      'one new worker ready',
    );
    const readyPid = fresh.other_workers.find((w) => w.state === 'ready')!.pid;
    const requests = await slowOn(sup, async () => readyPid, 6000);
    await sup.waitLog(
      (l) => typeof l.msg === 'string' && l.msg.includes('not ready within 5s'),
      'roll aborted',
      15_000,
    );
    const results = await Promise.all(requests);
    expect(results.filter((r) => r !== '200 done')).toEqual([]);
    const after = await sup.waitFor((s) => s.other_workers.length === 0, 'aborted generation gone', 15_000);
    expect(after.generation).toBe(before.generation);
    expect(after.ready).toBe(true);
  });

  it('SIGTERM during a roll: the new workers that got ready are drained with the pod, not killed; exit 0', async () => {
    sup = await startSupervisor({
      app: fixtureApp('half-ready'),
      workers: 2,
      sets: ['supervisor.ready_timeout=20s', 'supervisor.heartbeat_interval=200ms', 'drain.delay=1s'],
    });
    const res = await sup.admin('/restart', { method: 'POST' });
    expect(res.status).toBe(202);
    const fresh = await sup.waitFor(
      (s) => s.other_workers.some((w) => w.state === 'ready'),
      'one new worker ready',
    );
    const readyPid = fresh.other_workers.find((w) => w.state === 'ready')!.pid;
    const requests = await slowOn(sup, async () => readyPid, 3000);
    sup.proc.kill('SIGTERM');
    const results = await Promise.all(requests);
    expect(results.filter((r) => r !== '200 done')).toEqual([]);
    expect((await sup.exited).code).toBe(0);
    expect(existsSync(sup.pidFile)).toBe(false);
  });
});
