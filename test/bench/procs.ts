/**
 * Child processes for benchmarks: the server under test always runs in its
 * own process so it does not share an event loop with the load generator.
 */
import { type ChildProcess, spawn, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

/** dist/test/bench → repository root */
export const root = resolve(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
export const dist = join(root, 'dist');

export interface Proc {
  child: ChildProcess;
  lines: string[];
  waitLine(re: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  stop(): Promise<void>;
}

/**
 * CPU pinning for throughput benches on a small machine: servers on the last
 * core, the load generator on the first, so neither steals the other's core
 * and every server under test gets the same one. Off with BENCH_PIN=0, or
 * where `taskset` (util-linux) is missing or there is a single core.
 */
export const pinning: { server: string; loader: string } | undefined = (() => {
  const cores = availableParallelism();
  if (process.env.BENCH_PIN === '0' || cores < 2) return undefined;
  if (spawnSync('taskset', ['-V']).status !== 0) return undefined;
  return { server: String(cores - 1), loader: '0' };
})();

/** `node args` — on the server core when `pinned` and pinning is available (children inherit it). */
export function startProc(args: string[], env: Record<string, string> = {}, pinned = false): Proc {
  const [cmd, argv] =
    pinned && pinning
      ? ['taskset', ['-c', pinning.server, process.execPath, ...args]]
      : [process.execPath, args];
  // taskset execs node in place: the child's pid is the server's.
  const child = spawn(cmd, argv, {
    env: { ...process.env, ...env },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: Array<() => void> = [];
  let buf = '';
  child.stdout!.on('data', (d: Buffer) => {
    buf += d.toString('utf8');
    let nl = buf.indexOf('\n');
    while (nl >= 0) {
      lines.push(buf.slice(0, nl));
      buf = buf.slice(nl + 1);
      nl = buf.indexOf('\n');
    }
    for (const w of waiters.splice(0)) w();
  });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  let seen = 0;
  return {
    child,
    lines,
    async waitLine(re, timeoutMs = 30_000) {
      const end = Date.now() + timeoutMs;
      for (;;) {
        for (; seen < lines.length; seen++) {
          const m = lines[seen]!.match(re);
          if (m) {
            seen++;
            return m;
          }
        }
        if (Date.now() > end || child.exitCode !== null)
          throw new Error(`no line matching ${re} (exit ${child.exitCode})`);
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
    async stop() {
      if (child.exitCode !== null) return;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), 15_000);
      await exited;
      clearTimeout(t);
    },
  };
}

export interface HypProc extends Proc {
  httpPort: number;
  adminPort: number;
}

/** `hyp run <app>` on ephemeral loopback ports. */
export async function startHyp(app: string, sets: string[] = [], pinned = false): Promise<HypProc> {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-bench-'));
  const all = [
    'server.addr=127.0.0.1:0',
    'admin.addr=127.0.0.1:0',
    `supervisor.pid_file=${join(dir, 'hyp.pid')}`,
    'drain.delay=0s',
    ...sets,
  ];
  const proc = startProc(
    [join(dist, 'supervisor', 'cli.js'), 'run', app, ...all.flatMap((s) => ['--set', s])],
    {
      HYP_LOG_FORMAT: 'json',
    },
    pinned,
  );
  const admin = await proc.waitLine(/"port":(\d+),"msg":"admin server listening"/);
  const adminPort = Number(admin[1]);
  const status = await waitReady(adminPort);
  return { ...proc, adminPort, httpPort: status.listeners.find((l) => l.name === 'http')!.port };
}

interface Status {
  ready: boolean;
  generation: number;
  listeners: Array<{ name: string; port: number }>;
  other_workers: unknown[];
}

export async function hypStatus(adminPort: number): Promise<Status> {
  return (await (await fetch(`http://127.0.0.1:${adminPort}/status`)).json()) as Status;
}

async function waitReady(adminPort: number): Promise<Status> {
  const end = Date.now() + 30_000;
  while (Date.now() < end) {
    const s = await hypStatus(adminPort).catch(() => undefined);
    if (s?.ready) return s;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error('hyp not ready');
}
