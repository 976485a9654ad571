/**
 * Orderings around the start of the pod: a pod drain before any worker is
 * ready, and a drain request that reaches a worker before it has booted.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('lifecycle: pod drain while starting', () => {
  it('SIGTERM right after launch (drain.delay=0s): every worker drains at once, none is killed at the deadline, exit 0', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      ready: false,
      sets: ['drain.delay=0s', 'drain.timeout=5s'],
    });
    sup.proc.kill('SIGTERM');
    const exit = await sup.exited;
    const pids = sup.logs.filter((l) => l.msg === 'worker spawned').map((l) => Number(l.worker_pid));
    expect(pids).toHaveLength(2);
    expect(exit.code).toBe(0);
    expect(sup.logs.filter((l) => l.level === 'error')).toEqual([]);
    expect(existsSync(sup.pidFile)).toBe(false);
    await until(() => pids.every((pid) => !isAlive(pid)) || undefined, 'workers gone', 5000);
  });
});

describe('lifecycle: a crash during the pod drain delay', () => {
  it('the crashed worker is replaced: a connection opened later in drain.delay is served; exit 0, no worker left', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1, sets: ['drain.delay=4s'] });
    const victim = (await sup.status()).workers[0]!.pid;
    sup.proc.kill('SIGTERM');
    await sup.waitLog((l) => l.msg === 'pod drain: not ready; serving through the delay', 'drain started');
    process.kill(victim, 'SIGKILL');
    await sup.waitLog(
      (l) => typeof l.msg === 'string' && l.msg.includes('exited') && l.worker_pid === victim,
      'crash seen',
    );
    const res = await fetch(`http://127.0.0.1:${sup.httpPort}/api/ping`, { headers: { connection: 'close' } })
      .then(async (r) => `${r.status} ${await r.text()}`)
      .catch((err: Error) => `failed: ${String((err as { cause?: unknown }).cause ?? err)}`);
    expect(res).toBe('200 pong');
    expect((await sup.exited).code).toBe(0);
    const pids = sup.logs.filter((l) => l.msg === 'worker spawned').map((l) => Number(l.worker_pid));
    expect(pids).toHaveLength(2);
    await until(() => pids.every((pid) => !isAlive(pid)) || undefined, 'workers gone', 5000);
    expect(existsSync(sup.pidFile)).toBe(false);
  });
});

describe('lifecycle: a second supervisor', () => {
  function second(sets: string[]) {
    return spawnSync(
      process.execPath,
      [cli, 'run', fixtureApp('basic'), ...['server.addr=127.0.0.1:0', ...sets].flatMap((x) => ['--set', x])],
      { encoding: 'utf8', timeout: 20_000, env: { ...process.env, HYP_LOG_FORMAT: 'json' } },
    );
  }

  it('on the same PID file: exit 2, the first keeps its PID file and serves; on the same admin port: exit 2, no PID file of its own left behind', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1 });
    const samePid = second([`supervisor.pid_file=${sup.pidFile}`, 'admin.addr=127.0.0.1:0']);
    expect(samePid.status).toBe(2);
    expect(samePid.stderr).toContain('HYP_E_PIDFILE_LIVE');
    expect(readFileSync(sup.pidFile, 'utf8').trim()).toBe(String(sup.proc.pid));

    const otherPidFile = join(sup.dir, 'other.pid');
    const sameAdmin = second([
      `supervisor.pid_file=${otherPidFile}`,
      `admin.addr=127.0.0.1:${sup.adminPort}`,
    ]);
    expect(sameAdmin.status).toBe(2);
    expect(sameAdmin.stderr).toContain('HYP_E_LISTEN');
    expect(existsSync(otherPidFile)).toBe(false);

    expect((await sup.admin('/ready')).status).toBe(200);
    expect(readFileSync(sup.pidFile, 'utf8').trim()).toBe(String(sup.proc.pid));
  });
});
