/**
 * Signals around the start of the pod: before `launch()` installs the
 * supervisor's handlers (held there deterministically by a preload that
 * delays the admin server's listen), and a pod drain while a worker's app
 * setup is still running.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cli,
  collectLogLines,
  fixtureApp,
  isAlive,
  type LogLine,
  type Running,
  root,
  startSupervisor,
  until,
} from '../helpers/supervisor.js';

const preload = pathToFileURL(join(root, 'dist', 'test', 'fixtures', 'apps', 'hold-admin-listen.js')).href;

interface Held {
  proc: ChildProcess;
  dir: string;
  pidFile: string;
  gate: string;
  logs: LogLine[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  waitLog(pred: (l: LogLine) => boolean, what: string): Promise<LogLine>;
}

let held: Held | undefined;
let sup: Running | undefined;
afterEach(async () => {
  if (held && held.proc.exitCode === null && held.proc.signalCode === null) {
    held.proc.kill('SIGKILL');
    await held.exited;
  }
  held = undefined;
  await sup?.stop();
  sup = undefined;
});

/** `hyp run` with its admin listen held until `gate` exists; resolves once it is held. */
async function startHeld(): Promise<Held> {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
  const pidFile = join(dir, 'hyp.pid');
  const gate = join(dir, 'gate');
  const sets = [
    'server.addr=127.0.0.1:0',
    'admin.addr=127.0.0.1:0',
    `supervisor.pid_file=${pidFile}`,
    'supervisor.workers=1',
    'drain.delay=0s',
    'drain.timeout=5s',
  ];
  const proc = spawn(
    process.execPath,
    ['--import', preload, cli, 'run', fixtureApp('basic'), ...sets.flatMap((s) => ['--set', s])],
    {
      cwd: dir,
      env: { ...process.env, HYP_LOG_FORMAT: 'json', HYP_TEST_LISTEN_GATE: gate },
      stdio: ['ignore', 'pipe', 'pipe'],
    },
  );
  const logs: LogLine[] = [];
  let err = '';
  collectLogLines(proc.stdout!, logs);
  proc.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    proc.once('exit', (code, signal) => res({ code, signal })),
  );
  const h: Held = {
    proc,
    dir,
    pidFile,
    gate,
    logs,
    stderr: () => err,
    exited,
    waitLog: (pred, what) => until(() => logs.find(pred), what, 20_000),
  };
  held = h;
  await until(() => err.includes('hyp-test: admin listen held'), 'admin listen held', 20_000);
  return h;
}

/** Wait for a log line, or fail at once with how the supervisor exited. */
async function logOrExit(h: Held, pred: (l: LogLine) => boolean, what: string): Promise<LogLine> {
  return Promise.race([
    h.waitLog(pred, what),
    h.exited.then((exit) => {
      throw new Error(`supervisor exited (${JSON.stringify(exit)}) before "${what}"`);
    }),
  ]);
}

const isEarly = (l: LogLine) => typeof l.msg === 'string' && l.msg.includes('before the supervisor launched');

describe('lifecycle: signals before launch', () => {
  for (const signal of ['SIGHUP', 'SIGUSR2'] as const) {
    it(`${signal} while the admin server is binding: the supervisor survives and rolls once, after generation 1 is ready`, async () => {
      const h = await startHeld();
      h.proc.kill(signal);
      h.proc.kill(signal);
      await logOrExit(h, isEarly, `${signal} noted`);
      writeFileSync(h.gate, '');
      await logOrExit(
        h,
        (l) => l.msg === 'generation ready; old generation draining' && l.generation === 2,
        'generation 2 ready',
      );
      // Generation 1 was ready before the roll started.
      const ready1 = h.logs.findIndex((l) => l.msg === 'worker ready' && l.gen === 1);
      const roll = h.logs.findIndex((l) => l.msg === 'rolling restart');
      expect(ready1).toBeGreaterThanOrEqual(0);
      expect(roll).toBeGreaterThan(ready1);
      if (signal === 'SIGHUP') expect(h.logs.some((l) => l.msg === 'configuration reloaded')).toBe(true);
      h.proc.kill('SIGTERM');
      expect((await h.exited).code).toBe(0);
      // Two signals before launch make one roll.
      expect(h.logs.filter((l) => l.msg === 'rolling restart')).toHaveLength(1);
      expect(h.logs.filter((l) => l.level === 'error')).toEqual([]);
    });
  }

  for (const signal of ['SIGTERM', 'SIGINT'] as const) {
    it(`${signal} while the admin server is binding: exit 0, no worker started, no PID file`, async () => {
      const h = await startHeld();
      h.proc.kill(signal);
      const exit = await h.exited;
      expect(exit).toEqual({ code: 0, signal: null });
      expect(h.logs.some(isEarly)).toBe(true);
      expect(h.logs.some((l) => l.msg === 'worker spawned')).toBe(false);
      expect(h.logs.some((l) => l.msg === 'supervisor started')).toBe(false);
      expect(existsSync(h.pidFile)).toBe(false);
      expect(h.logs.filter((l) => l.level === 'error')).toEqual([]);
    });
  }
});

describe('lifecycle: pod drain during app setup', () => {
  it('the worker starts no listener after the drain, exits 0 once setup returns', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    const gate = join(dir, 'setup-gate');
    sup = await startSupervisor({
      app: fixtureApp('slow-setup'),
      workers: 1,
      ready: false,
      sets: ['drain.delay=0s', 'drain.timeout=10s'],
      env: { HYP_TEST_SETUP_GATE: gate },
    });
    const waiting = await sup.waitLog((l) => l.msg === 'setup waiting', 'setup waiting', 20_000);
    sup.proc.kill('SIGTERM');
    await sup.waitLog(
      (l) => l.msg === 'worker draining' && l.pid === waiting.pid,
      'worker drain started',
      20_000,
    );
    writeFileSync(gate, '');
    const exit = await sup.exited;
    const workerLogs = sup.logs.filter((l) => l.pid === waiting.pid);
    expect(workerLogs.some((l) => l.msg === 'setup finished')).toBe(true);
    expect(workerLogs.some((l) => l.msg === 'http listener serving')).toBe(false);
    expect(workerLogs.some((l) => l.msg === 'worker ready')).toBe(false);
    const exited = sup.logs.find((l) => l.msg === 'worker exited' && l.worker_pid === waiting.pid);
    expect(exited?.exit).toBe('code 0');
    expect(exit.code).toBe(0);
  });

  it('setup that never returns: the worker exits at drain.timeout without it, no listener, the supervisor exits 0', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    sup = await startSupervisor({
      app: fixtureApp('slow-setup'),
      workers: 1,
      ready: false,
      sets: ['drain.delay=0s', 'drain.timeout=2s'],
      // The gate file is never written: setup waits forever.
      env: { HYP_TEST_SETUP_GATE: join(dir, 'never') },
    });
    const waiting = await sup.waitLog((l) => l.msg === 'setup waiting', 'setup waiting', 20_000);
    sup.proc.kill('SIGTERM');
    const exit = await sup.exited;
    const workerPid = Number(waiting.pid);
    expect(isAlive(workerPid)).toBe(false);
    const exited = sup.logs.find((l) => l.msg === 'worker exited' && l.worker_pid === workerPid);
    // The worker gives up on its own at the deadline; the supervisor need not kill it.
    expect(exited?.exit).toBe('code 0');
    expect(
      sup.logs.some(
        (l) => l.pid === workerPid && /setup still running at the drain deadline/.test(String(l.msg)),
      ),
    ).toBe(true);
    expect(sup.logs.filter((l) => l.pid === workerPid).some((l) => l.msg === 'http listener serving')).toBe(
      false,
    );
    expect(existsSync(sup.pidFile)).toBe(false);
    expect(exit).toEqual({ code: 0, signal: null });
  });
});
