/**
 * An app that throws during start: the supervisor stays up, reports why it
 * is not ready, and retries with a growing delay.
 */
import { spawnSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('app that throws during start', () => {
  it('backs off exponentially, /ready 503 with the reason, /health 200, one clear log line per attempt', async () => {
    sup = await startSupervisor({
      app: fixtureApp('throws'),
      workers: 1,
      ready: false,
      sets: ['supervisor.backoff_initial=100ms', 'supervisor.backoff_max=2s'],
    });
    const attempts = () =>
      sup!.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('worker exited unexpectedly'));
    await until(() => attempts().length >= 5 || undefined, '5 attempts', 30_000);
    const delays = attempts().map((l) => Number(l.restart_in_ms));
    expect(delays.slice(0, 5)).toEqual([100, 200, 400, 800, 1600]);
    for (const line of attempts()) {
      expect(line.level).toBe('error');
      expect(line.msg).toContain('database unreachable at db:5432');
      expect(line.msg).toContain('HYP_E_APP_START');
    }
    const ready = await sup.admin('/ready');
    expect(ready.status).toBe(503);
    const body = (await ready.json()) as { reason: string };
    expect(body.reason).toContain('database unreachable');
    expect((await sup.admin('/health')).status).toBe(200);
    expect(sup.proc.exitCode).toBeNull();
    const metrics = await (await sup.admin('/metrics')).text();
    expect(metrics).toMatch(/hyp_supervisor_worker_restarts_total\{reason="start-failed"\} [5-9]/);
  });

  it('a new generation that is not ready within supervisor.ready_timeout is killed; the old one keeps serving', async () => {
    sup = await startSupervisor({
      app: fixtureApp('hangs-after-first'),
      workers: 1,
      sets: ['supervisor.ready_timeout=2s'],
    });
    const before = await sup.status();
    const res = await sup.admin('/restart?wait=1', { method: 'POST' });
    expect(res.status).toBe(500);
    const body = (await res.json()) as {
      ok: boolean;
      error: string;
      generation: number;
      code: string;
      message: string;
    };
    expect(body.ok).toBe(false);
    expect(body.error).toContain('not ready within 2s');
    // the documented shape, plus the catalog's code and message
    expect(body.code).toBe('HYP_E_GENERATION_FAILED');
    expect(body.message).toBe(`generation ${before.generation + 1} failed to become ready: ${body.error}`);
    const after = await sup.waitFor((s) => s.other_workers.length === 0, 'aborted generation killed');
    expect(after.generation).toBe(before.generation);
    expect(after.workers.map((w) => w.pid)).toEqual(before.workers.map((w) => w.pid));
    const served = (await (await fetch(`http://127.0.0.1:${sup.httpPort}/api/worker`)).json()) as {
      generation: number;
    };
    expect(served.generation).toBe(before.generation);
    expect((await sup.admin('/ready')).status).toBe(200);
    const metrics = await (await sup.admin('/metrics')).text();
    expect(metrics).toMatch(/hyp_supervisor_generation_failures_total 1/);
    // `hyp restart` reports the failed roll by that code (exit 1), not as a failed admin request
    const cliRun = spawnSync(
      process.execPath,
      [cli, 'restart', '--admin', `http://127.0.0.1:${sup.adminPort}`],
      {
        encoding: 'utf8',
        timeout: 60_000,
      },
    );
    expect(cliRun.status).toBe(1);
    expect(cliRun.stderr).toMatch(
      /HYP_E_GENERATION_FAILED: generation \d+ failed to become ready: .*not ready within 2s/,
    );
    expect(cliRun.stderr).not.toMatch(/HYP_E_ADMIN_REQUEST/);
  });
});

describe('app that registers a TCP service with no tcp.<name> config', () => {
  it('fails its start before the HTTP listener serves: no connection is taken by a worker that will never be ready', async () => {
    sup = await startSupervisor({
      app: fixtureApp('tcp-unconfigured'),
      workers: 1,
      ready: false,
      sets: ['supervisor.backoff_initial=100ms', 'supervisor.backoff_max=200ms'],
    });
    const failures = () =>
      sup!.logs.filter((l) => typeof l.msg === 'string' && l.msg.includes('HYP_E_TCP_UNKNOWN_SERVICE'));
    await until(() => failures().length >= 2 || undefined, 'two failed starts', 30_000);
    expect(String(failures()[0]!.msg)).toContain('tcp.nope.addr');
    // the worker never got as far as accepting HTTP connections
    expect(sup.logs.filter((l) => l.msg === 'http listener serving')).toEqual([]);
    expect((await sup.admin('/ready')).status).toBe(503);
  });
});
