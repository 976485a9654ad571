/**
 * README: "Workers ignore SIGINT/SIGTERM when supervised: a terminal's
 * Ctrl-C (sent to the whole process group) ... must not stop workers ahead
 * of the supervisor's ordered drain." The supervisor runs in a process group
 * of its own, as in a terminal; SIGINT goes to the whole group, workers
 * included. The workers keep serving, the supervisor runs the pod drain, the
 * workers drain over IPC, and a slow request in flight completes 200.
 */
import { existsSync, readFileSync } from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let g: Running | undefined;
afterEach(async () => {
  await g?.stop();
  g = undefined;
});

describe('Ctrl-C in a terminal: SIGINT to the whole process group', () => {
  it('workers ignore it and drain over IPC: a slow request in flight completes 200, the supervisor exits 0', async () => {
    // `hyp run` as the leader of a new process group, as a shell starts a foreground job
    g = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      detached: true,
      sets: ['drain.delay=1s', 'drain.timeout=20s'],
    });
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
    expect(exit, g.stderr.join('')).toEqual({ code: 0, signal: null });

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
