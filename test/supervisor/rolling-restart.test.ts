/**
 * Zero-downtime worker restarts inside the pod, under keep-alive load.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { LoadRun, summarize } from '../bench/load.js';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('rolling restart', () => {
  it('keep-alive load across 5 rolling restarts: 0 failed requests, every pid replaced, generation +5', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2 });
    const before = await sup.status();
    const firstPids = before.workers.map((w) => w.pid);

    const load = new LoadRun({
      url: `http://127.0.0.1:${sup.httpPort}`,
      connections: 32,
      requests: 1_000_000,
      maxMs: 120_000,
    });
    await until(() => load.result.ok > 500 || undefined, 'load running');
    for (let i = 1; i <= 5; i++) {
      const res = await sup.admin('/restart?wait=1', { method: 'POST' });
      const body = (await res.json()) as { ok: boolean; generation: number; error?: string };
      expect(
        body,
        `restart ${i}: ${body.error}; errors: ${JSON.stringify(sup.logs.filter((l) => l.level === 'error'))}`,
      ).toMatchObject({
        ok: true,
        generation: before.generation + i,
      });
      // the old generation has drained and exited before the next restart
      await sup.waitFor((s) => s.other_workers.length === 0, `generation ${body.generation - 1} gone`);
    }
    await until(() => load.result.sent >= 10_000 || undefined, '10,000 requests', 90_000);
    load.stop();
    const result = await load.done;
    console.log(`rolling restarts x5: ${summarize(result)}`);

    expect(result.sent).toBeGreaterThanOrEqual(10_000);
    expect(result.errors).toEqual({});
    expect(result.failed).toBe(0);
    const after = await sup.status();
    expect(after.generation).toBe(before.generation + 5);
    for (const pid of firstPids) {
      expect(after.workers.map((w) => w.pid)).not.toContain(pid);
      expect(isAlive(pid)).toBe(false);
    }
    expect(after.workers).toHaveLength(2);
  });

  it('SIGKILL of one worker under load: no connection refused, failures bounded by its in-flight requests, replaced, counted in /metrics', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2 });
    const load = new LoadRun({
      url: `http://127.0.0.1:${sup.httpPort}`,
      connections: 32,
      requests: 1_000_000,
      maxMs: 60_000,
    });
    await until(() => load.result.ok > 1000 || undefined, 'load running');
    const victim = (await sup.status()).workers[0]!;
    process.kill(victim.pid, 'SIGKILL');
    const replaced = await sup.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.state === 'ready' && w.pid !== victim.pid),
      'replacement ready',
    );
    const sentAtKill = load.result.sent;
    await until(() => load.result.sent > sentAtKill + 2000 || undefined, 'load continues after the kill');
    load.stop();
    const result = await load.done;
    console.log(`SIGKILL one worker: ${summarize(result)}`);

    expect(result.errors.ECONNREFUSED ?? 0).toBe(0);
    // At most the requests that were on the killed worker's 32-connection share can fail.
    expect(result.failed).toBeLessThanOrEqual(32);
    expect(replaced.workers.map((w) => w.pid)).not.toContain(victim.pid);
    const metrics = await (await sup.admin('/metrics')).text();
    expect(metrics).toMatch(/hyp_supervisor_worker_restarts_total\{reason="crash"\} 1/);
  });

  it('a worker whose event loop blocks past the heartbeat timeout is killed and replaced while the other keeps serving', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      sets: ['supervisor.heartbeat_timeout=3s'],
    });
    const start = await sup.status();
    // Blocks one worker for 30 s: far past the 3 s timeout.
    const blocked = fetch(`http://127.0.0.1:${sup.httpPort}/block?ms=30000`).catch((err: Error) => err);
    const killed = await sup.waitLog(
      (l) => typeof l.msg === 'string' && l.msg.includes('sent no heartbeat'),
      'heartbeat kill',
    );
    // meanwhile the other worker serves
    let served = 0;
    for (let i = 0; i < 20; i++) {
      const res = await fetch(`http://127.0.0.1:${sup.httpPort}/api/ping`);
      if ((await res.text()) === 'pong') served++;
    }
    expect(served).toBe(20);
    const after = await sup.waitFor(
      (s) =>
        s.workers.length === 2 &&
        s.workers.every((w) => w.state === 'ready') &&
        !s.workers.some((w) => w.pid === Number(killed.worker_pid)),
      'replacement',
    );
    expect(start.workers.map((w) => w.pid)).toContain(Number(killed.worker_pid));
    expect(isAlive(Number(killed.worker_pid))).toBe(false);
    expect(after.generation).toBe(start.generation);
    expect(await blocked).toBeInstanceOf(Error); // its connection died with the worker
    const metrics = await (await sup.admin('/metrics')).text();
    expect(metrics).toMatch(/hyp_supervisor_worker_restarts_total\{reason="heartbeat"\} 1/);
  });
});
