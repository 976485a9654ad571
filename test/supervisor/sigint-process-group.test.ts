/**
 * README: "Workers ignore SIGINT/SIGTERM when supervised: a terminal's
 * Ctrl-C (sent to the whole process group) ... must not stop workers ahead
 * of the supervisor's ordered drain." The supervisor runs in a process group
 * of its own, as in a terminal; SIGINT goes to the whole group, workers
 * included. The workers keep serving, the supervisor runs the pod drain, the
 * workers drain over IPC, and a slow request in flight completes 200.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  cli,
  collectLogLines,
  fixtureApp,
  isAlive,
  type LogLine,
  type Status,
  until,
} from '../helpers/supervisor.js';

interface Group {
  proc: ChildProcess;
  pidFile: string;
  logs: LogLine[];
  stderr: () => string;
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  httpPort: number;
  status(): Promise<Status>;
}

let group: Group | undefined;
afterEach(async () => {
  const g = group;
  group = undefined;
  if (!g) return;
  // The group is ours (its leader is the supervisor this spec spawned): nothing in it outlives the spec.
  try {
    process.kill(-g.proc.pid!, 'SIGKILL');
  } catch {
    // already gone
  }
  await g.exited;
});

/** `hyp run` as the leader of a new process group (`detached`), as a shell starts a foreground job; resolves once ready. */
async function startInOwnGroup(app: string, sets: string[]): Promise<Group> {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
  const pidFile = join(dir, 'hyp.pid');
  const all = [
    'server.addr=127.0.0.1:0',
    'admin.addr=127.0.0.1:0',
    `supervisor.pid_file=${pidFile}`,
    ...sets,
  ];
  const proc = spawn(process.execPath, [cli, 'run', app, ...all.flatMap((s) => ['--set', s])], {
    cwd: dir,
    detached: true,
    env: { ...process.env, HYP_LOG_FORMAT: 'json' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  const logs: LogLine[] = [];
  let err = '';
  collectLogLines(proc.stdout!, logs);
  proc.stderr!.on('data', (chunk: Buffer) => {
    err += chunk.toString('utf8');
  });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) =>
    proc.once('exit', (code, signal) => res({ code, signal })),
  );
  const g: Group = {
    proc,
    pidFile,
    logs,
    stderr: () => err,
    exited,
    httpPort: 0,
    status: async () => {
      const admin = logs.find((l) => l.msg === 'admin server listening');
      return (await (await fetch(`http://127.0.0.1:${Number(admin?.port)}/status`)).json()) as Status;
    },
  };
  group = g;
  const http = await Promise.race([
    until(() => logs.find((l) => l.msg === 'holding listener' && l.listener === 'http'), 'http listener'),
    exited.then((exit) => {
      throw new Error(`supervisor exited (${JSON.stringify(exit)}) before listening: ${err}`);
    }),
  ]);
  await until(() => logs.find((l) => l.msg === 'admin server listening'), 'admin server');
  g.httpPort = Number(http.port);
  await until(async () => {
    const s = await g.status();
    return s.ready && s.workers.length > 0 && s.workers.every((w) => w.state === 'ready');
  }, 'supervisor ready');
  return g;
}

describe('Ctrl-C in a terminal: SIGINT to the whole process group', () => {
  it('workers ignore it and drain over IPC: a slow request in flight completes 200, the supervisor exits 0', async () => {
    const g = await startInOwnGroup(fixtureApp('basic'), [
      'supervisor.workers=2',
      'drain.delay=1s',
      'drain.timeout=20s',
    ]);
    const pgid = g.proc.pid!;
    const workers = (await g.status()).workers.map((w) => w.pid);
    expect(workers).toHaveLength(2);
    // The workers are in the supervisor's group: a group signal reaches them too.
    for (const pid of workers) {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
      // Field 5 (pgrp), after the parenthesised command name.
      const pgrp = Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[2]);
      expect(pgrp).toBe(pgid);
    }

    const inflight = fetch(`http://127.0.0.1:${g.httpPort}/api/slow?ms=3000`).then(
      async (r) => ({ status: r.status, text: await r.text() }),
      (err: unknown) => ({ status: 0, text: String(err) }),
    );
    await until(async () => (await g.status()).workers.some((w) => w.inflight === 1), 'request in flight');

    process.kill(-pgid, 'SIGINT');

    expect(await inflight).toEqual({ status: 200, text: 'done' });
    const exit = await g.exited;
    expect(exit, g.stderr()).toEqual({ code: 0, signal: null });

    // The supervisor's pod drain, started by the SIGINT, ran to its end.
    const msgs = g.logs.map((l) => l.msg);
    const drainStart = msgs.indexOf('pod drain: not ready; serving through the delay');
    expect(g.logs[drainStart]?.source).toBe('SIGINT');
    expect(msgs.indexOf('pod drain: draining workers')).toBeGreaterThan(drainStart);
    expect(msgs.indexOf('pod drained; exiting')).toBeGreaterThan(drainStart);
    // Every worker drained on the supervisor's IPC message and exited 0: none was stopped by the signal.
    for (const pid of workers) {
      expect(g.logs.find((l) => l.pid === pid && l.msg === 'worker draining')?.reason).toBe('pod drain');
      expect(g.logs.find((l) => l.msg === 'worker exited' && l.worker_pid === pid)?.exit).toBe('code 0');
      expect(isAlive(pid)).toBe(false);
    }
    expect(g.logs.filter((l) => /exited unexpectedly/.test(String(l.msg)))).toEqual([]);
    expect(existsSync(g.pidFile)).toBe(false);
  });
});
