/**
 * Start the real `hyp` CLI as a child process on ephemeral loopback ports and
 * talk to it: the admin port and the HTTP port are read back from its own
 * log lines and /status, so tests never guess a free port.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import type { Readable } from 'node:stream';

export const root = resolve(import.meta.dirname, '..', '..');
export const cli = join(root, 'dist', 'supervisor', 'cli.js');
export const fixtureApp = (name: string) => join(root, 'dist', 'test', 'fixtures', 'apps', `${name}.js`);
export const demoApp = join(root, 'dist', 'apps', 'demo', 'app.js');

export type LogLine = Record<string, unknown> & { msg?: string; level?: string };

export interface Running {
  proc: ChildProcess;
  pidFile: string;
  dir: string;
  logs: LogLine[];
  stderr: string[];
  adminPort: number;
  httpPort: number;
  admin(path: string, init?: RequestInit): Promise<Response>;
  status(): Promise<Status>;
  waitFor(pred: (s: Status) => boolean, what: string, timeoutMs?: number): Promise<Status>;
  waitLog(pred: (l: LogLine) => boolean, what: string, timeoutMs?: number): Promise<LogLine>;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stop(): Promise<void>;
}

export interface WorkerView {
  id: number;
  pid: number;
  state: string;
  generation: number;
  connections: number;
  inflight: number;
}

export interface Status {
  state: string;
  generation: number;
  ready: boolean;
  workers: WorkerView[];
  other_workers: WorkerView[];
  listeners: Array<{ name: string; port: number }>;
  problem: string | null;
}

/** Parse the JSON log lines `stream` prints into `logs` (a line that is not JSON is kept as `{ msg, level: 'raw' }`). */
export function collectLogLines(stream: Readable, logs: LogLine[]): void {
  let buf = '';
  stream.on('data', (chunk: Buffer) => {
    buf += chunk.toString('utf8');
    for (let nl = buf.indexOf('\n'); nl >= 0; nl = buf.indexOf('\n')) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      try {
        logs.push(JSON.parse(line));
      } catch {
        logs.push({ msg: line, level: 'raw' });
      }
    }
  });
}

export async function until<T>(
  fn: () => Promise<T | undefined> | T | undefined,
  what: string,
  timeoutMs = 30_000,
): Promise<T> {
  const end = Date.now() + timeoutMs;
  let lastErr: unknown;
  while (Date.now() < end) {
    try {
      const v = await fn();
      if (v !== undefined && v !== false) return v;
    } catch (err) {
      lastErr = err;
    }
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`timed out waiting for ${what}${lastErr ? ` (last error: ${String(lastErr)})` : ''}`);
}

export interface StartOptions {
  app?: string;
  workers?: number;
  sets?: string[];
  env?: Record<string, string>;
  /** Wait for /ready (default true). */
  ready?: boolean;
  /**
   * Lead a process group of its own (`detached`), as a shell starts a
   * foreground job: a signal to `-proc.pid` reaches the workers too.
   * `stop()` then also SIGKILLs whatever of the group is left.
   */
  detached?: boolean;
}

export async function startSupervisor(opts: StartOptions = {}): Promise<Running> {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
  const pidFile = join(dir, 'hyp.pid');
  const sets = [
    'server.addr=127.0.0.1:0',
    'admin.addr=127.0.0.1:0',
    `supervisor.pid_file=${pidFile}`,
    `supervisor.workers=${opts.workers ?? 2}`,
    'drain.delay=1s',
    'drain.timeout=10s',
    ...(opts.sets ?? []),
  ];
  const proc = spawn(
    process.execPath,
    [cli, 'run', opts.app ?? demoApp, ...sets.flatMap((s) => ['--set', s])],
    {
      cwd: dir,
      env: { ...process.env, HYP_LOG_FORMAT: 'json', ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
      detached: opts.detached === true,
    },
  );
  const logs: LogLine[] = [];
  const stderr: string[] = [];
  collectLogLines(proc.stdout!, logs);
  proc.stderr!.on('data', (chunk: Buffer) => stderr.push(chunk.toString('utf8')));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    proc.once('exit', (code, signal) => res({ code, signal })),
  );

  const waitLog = (pred: (l: LogLine) => boolean, what: string, timeoutMs = 30_000) =>
    until(() => logs.find(pred), what, timeoutMs);
  const adminLine = await Promise.race([
    waitLog((l) => l.msg === 'admin server listening', 'admin server'),
    exited.then(({ code }) => {
      throw new Error(`supervisor exited with ${code} before listening: ${stderr.join('')}`);
    }),
  ]);
  const adminPort = Number(adminLine.port);
  const httpLine = await waitLog(
    (l) => l.msg === 'holding listener' && l.listener === 'http',
    'http listener',
  );
  const httpPort = Number(httpLine.port);
  const admin = (path: string, init?: RequestInit) => fetch(`http://127.0.0.1:${adminPort}${path}`, init);
  const status = async () => (await (await admin('/status')).json()) as Status;
  const waitFor = (pred: (s: Status) => boolean, what: string, timeoutMs = 30_000) =>
    until(
      async () => {
        const s = await status();
        return pred(s) ? s : undefined;
      },
      what,
      timeoutMs,
    );

  const running: Running = {
    proc,
    pidFile,
    dir,
    logs,
    stderr,
    adminPort,
    httpPort,
    admin,
    status,
    waitFor,
    waitLog,
    exited,
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM');
        const timer = setTimeout(() => proc.kill('SIGKILL'), 20_000);
        await exited;
        clearTimeout(timer);
      }
      if (opts.detached) {
        try {
          process.kill(-proc.pid!, 'SIGKILL');
        } catch {
          // the group is gone
        }
      }
    },
  };
  if (opts.ready !== false)
    await waitFor((s) => s.ready && s.workers.every((w) => w.state === 'ready'), 'supervisor ready');
  return running;
}

/**
 * Is the process still running? A zombie is not: it has exited and only
 * waits to be reaped — by whichever ancestor adopts orphans, which on these
 * machines takes 1.3–2 s after a supervisor is SIGKILLed (measured; the
 * workers themselves had exited within 50 ms).
 */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    return !/^State:\s+Z/m.test(readFileSync(`/proc/${pid}/status`, 'utf8'));
  } catch {
    return false; // gone between the two checks
  }
}

/** A worker started on its own (`dist/apps/server/worker.js <app>`, no supervisor), serving HTTP on an ephemeral loopback port. */
export interface StandaloneWorker {
  proc: ChildProcess;
  port: number;
  /** Its JSON log lines; stderr output as `{ msg, level: 'stderr' }`. */
  logs: LogLine[];
  /** How it exited, once it did. */
  exited(): { code: number | null; signal: NodeJS.Signals | null } | undefined;
  /** SIGKILL, unless it already exited. */
  stop(): Promise<void>;
}

export async function startStandaloneWorker(
  app: string,
  env: Record<string, string> = {},
): Promise<StandaloneWorker> {
  const proc = spawn(process.execPath, [join(root, 'dist', 'apps', 'server', 'worker.js'), app], {
    env: { ...process.env, HYP_SERVER_ADDR: '127.0.0.1:0', HYP_LOG_FORMAT: 'json', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let exit: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const gone = new Promise<void>((r) =>
    proc.once('exit', (code, signal) => {
      exit = { code, signal };
      r();
    }),
  );
  const logs: LogLine[] = [];
  collectLogLines(proc.stdout!, logs);
  proc.stderr!.on('data', (chunk: Buffer) => logs.push({ msg: chunk.toString('utf8'), level: 'stderr' }));
  const stop = async () => {
    if (exit === undefined) proc.kill('SIGKILL');
    await gone;
  };
  try {
    const serving = await until(() => logs.find((l) => l.msg === 'http listener serving'), 'listener');
    await until(() => logs.find((l) => l.msg === 'worker ready'), 'ready');
    return { proc, port: Number(serving.port), logs, exited: () => exit, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
