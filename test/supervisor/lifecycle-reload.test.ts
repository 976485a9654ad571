/**
 * SIGHUP re-reads the config file: a changed PID file path cannot move the
 * file the running supervisor wrote (it must still be removed at exit), and
 * an invalid file during a roll keeps the running config.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, collectLogLines, fixtureApp, type LogLine, until } from '../helpers/supervisor.js';

let proc: ChildProcess | undefined;
afterEach(() => {
  if (proc && proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  proc = undefined;
});

function config(pidFile: string, extra = ''): string {
  return `server:\n  addr: 127.0.0.1:0\nadmin:\n  addr: 127.0.0.1:0\nsupervisor:\n  workers: 1\n  pid_file: ${pidFile}\ndrain:\n  delay: 0s\n  timeout: 5s\n${extra}`;
}

function run(dir: string, file: string) {
  const child = spawn(process.execPath, [cli, 'run', fixtureApp('basic'), '--config', file], {
    cwd: dir,
    env: { ...process.env, HYP_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  collectLogLines(child.stdout!, logs);
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const waitLog = (pred: (l: LogLine) => boolean, what: string, timeoutMs = 20_000) =>
    until(() => logs.find(pred), what, timeoutMs);
  return { child, logs, exited, waitLog };
}

describe('lifecycle: SIGHUP reload', () => {
  it('a changed supervisor.pid_file keeps the running one, which is removed at exit', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    const file = join(dir, 'hyp.yaml');
    const first = join(dir, 'first.pid');
    const second = join(dir, 'second.pid');
    writeFileSync(file, config(first));
    const sup = run(dir, file);
    proc = sup.child;
    await sup.waitLog((l) => l.msg === 'worker ready', 'worker ready');
    expect(existsSync(first)).toBe(true);
    writeFileSync(file, config(second));
    sup.child.kill('SIGHUP');
    await sup
      .waitLog((l) => l.msg === 'generation ready; old generation draining', 'roll done', 40_000)
      .catch((err: Error) => {
        throw new Error(`${err.message}: ${JSON.stringify(sup.logs.filter((l) => l.role === 'supervisor'))}`);
      });
    sup.child.kill('SIGTERM');
    expect(await sup.exited).toBe(0);
    expect(existsSync(first)).toBe(false);
    expect(existsSync(second)).toBe(false);
  });

  it('a SIGHUP storm during a roll, the file invalid by then: the running config is kept, exactly one more roll', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    const file = join(dir, 'hyp.yaml');
    const pidFile = join(dir, 'hyp.pid');
    writeFileSync(file, config(pidFile));
    const sup = run(dir, file);
    proc = sup.child;
    await sup.waitLog((l) => l.msg === 'worker ready', 'worker ready');
    sup.child.kill('SIGHUP');
    await sup.waitLog((l) => l.msg === 'rolling restart', 'roll started');
    writeFileSync(file, config(pidFile, 'supervisor_typo: [\n'));
    for (let i = 0; i < 5; i++) sup.child.kill(i % 2 ? 'SIGUSR2' : 'SIGHUP');
    await sup.waitLog((l) => String(l.msg).startsWith('config reload failed'), 'reload refused');
    const rolled = (l: LogLine) => l.msg === 'generation ready; old generation draining';
    await until(() => sup.logs.filter(rolled).length >= 2 || undefined, 'two rolls', 20_000);
    await sup.waitLog((l) => l.msg === 'worker exited' && l.gen === 2, 'generation 2 drained');
    expect(sup.logs.filter((l) => l.msg === 'rolling restart').map((l) => l.to)).toEqual([2, 3]);
    expect(sup.child.exitCode).toBeNull();
    sup.child.kill('SIGTERM');
    expect(await sup.exited).toBe(0);
    expect(existsSync(pidFile)).toBe(false);
  });
});
