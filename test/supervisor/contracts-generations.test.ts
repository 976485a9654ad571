/**
 * ARCHITECTURE.md §3–§4, worker generations: a rolling restart waits for
 * every new worker before it drains the old generation, several old
 * generations drain at once, the pod stays ready through a roll whatever
 * started it, and a worker that exits unexpectedly comes back with
 * exponential backoff.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fixtureApp, type Running, type Status, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

type Answer = { pid: number; generation: number };

async function get(port: number, path: string): Promise<{ status: number; body: Answer }> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`, { headers: { connection: 'close' } });
  return { status: res.status, body: (await res.json()) as Answer };
}

describe('contract §3: a rolling restart waits until every new worker is ready, then drains g', () => {
  it('with one of two new workers ready, generation 1 keeps serving undrained and the pod stays ready; the second ready worker starts the drain', async () => {
    const gates = mkdtempSync(join(tmpdir(), 'hyp-gates-'));
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 2,
      sets: ['supervisor.ready_timeout=60s'],
      env: { HYP_TEST_GATE_DIR: gates },
    });
    const old = (await sup.status()).workers.map((w) => w.pid);
    expect((await sup.admin('/restart', { method: 'POST' })).status).toBe(202);
    const waiting = () => sup!.logs.filter((l) => l.msg === 'gated setup waiting').map((l) => Number(l.pid));
    await until(() => waiting().length === 2 || undefined, 'both new workers in setup');
    const [a, b] = waiting() as [number, number];

    writeFileSync(join(gates, String(a)), '');
    await sup.waitLog((l) => l.msg === 'worker ready' && l.worker_pid === a, 'first new worker ready');
    // Let a wrong implementation act on it: serve a few requests, read /status a few times.
    for (let i = 0; i < 10; i++) {
      const r = await get(sup.httpPort, '/api/worker');
      expect(r.status).toBe(200);
      expect(old.concat(a)).toContain(r.body.pid);
      const s = await sup.status();
      expect(s.generation).toBe(1);
      expect(s.ready).toBe(true);
      expect(s.workers.map((w) => [w.pid, w.state])).toEqual(old.map((pid) => [pid, 'ready']));
    }
    expect((await sup.admin('/ready')).status).toBe(200);
    const drainedEarly = sup.logs.filter((l) => l.msg === 'worker draining' && old.includes(Number(l.pid)));
    expect(drainedEarly).toEqual([]);

    writeFileSync(join(gates, String(b)), '');
    const after = await sup.waitFor(
      (s) => s.generation === 2 && s.other_workers.length === 0,
      'generation 1 drained',
    );
    expect(after.workers.map((w) => w.pid).sort()).toEqual([a, b].sort());
    // every old worker's drain began after the second new worker was ready
    const secondReady = sup.logs.findIndex((l) => l.msg === 'worker ready' && l.worker_pid === b);
    for (const pid of old) {
      const drained = sup.logs.findIndex((l) => l.msg === 'worker draining' && l.pid === pid);
      expect(drained).toBeGreaterThan(secondReady);
    }
  });
});

describe('contract §3: several old generations may drain at once', () => {
  it('two rolls while requests are in flight: generations 1 and 2 drain side by side, each finishes its request', async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 1,
      sets: ['drain.timeout=60s'],
    });
    const slow = (ms: number) => get(sup!.httpPort, `/api/slow?ms=${ms}`);
    const onFirst = slow(15_000);
    await sup.waitFor((s) => s.workers[0]!.inflight === 1, 'request in flight on generation 1');
    expect(
      ((await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as { ok: boolean }).ok,
    ).toBe(true);
    const onSecond = slow(10_000);
    await sup.waitFor(
      (s) => s.generation === 2 && s.workers[0]!.inflight === 1,
      'request in flight on generation 2',
    );
    expect(
      ((await (await sup.admin('/restart?wait=1', { method: 'POST' })).json()) as { ok: boolean }).ok,
    ).toBe(true);
    const both = (await sup.status()) as Status;
    expect(both.generation).toBe(3);
    expect(both.other_workers.map((w) => [w.generation, w.state]).sort()).toEqual([
      [1, 'draining'],
      [2, 'draining'],
    ]);
    expect((await sup.admin('/ready')).status).toBe(200);
    const [first, second] = await Promise.all([onFirst, onSecond]);
    expect(first).toMatchObject({ status: 200, body: { generation: 1 } });
    expect(second).toMatchObject({ status: 200, body: { generation: 2 } });
    await sup.waitFor((s) => s.other_workers.length === 0, 'old generations gone');
    const killed = sup.logs.filter((l) => typeof l.msg === 'string' && l.msg.includes('killed'));
    expect(killed).toEqual([]);
  });
});

describe('contract §4: a rolling restart keeps the pod ready, whatever starts it', () => {
  const triggers: Array<[string, (s: Running) => void]> = [
    ['SIGUSR2', (s) => s.proc.kill('SIGUSR2')],
    ['SIGHUP (config re-read)', (s) => s.proc.kill('SIGHUP')],
    ['POST /restart', (s) => void s.admin('/restart', { method: 'POST' })],
    [
      'hyp restart',
      (s) =>
        void spawn(process.execPath, [cli, 'restart', '--admin', `http://127.0.0.1:${s.adminPort}`], {
          stdio: 'ignore',
        }),
    ],
  ];
  it('SIGUSR2, SIGHUP, POST /restart and hyp restart each roll one generation; /ready answers 200 all along', async () => {
    sup = await startSupervisor({ app: fixtureApp('contracts'), workers: 2 });
    for (const [what, trigger] of triggers) {
      const before = await sup.status();
      const answers: number[] = [];
      let done = false;
      const poll = (async () => {
        for (let i = 0; i < 3000 && !done; i++) {
          answers.push((await sup!.admin('/ready')).status);
          await new Promise((r) => setTimeout(r, 10));
        }
      })();
      trigger(sup);
      const after = await sup.waitFor(
        (s) => s.generation === before.generation + 1 && s.other_workers.length === 0,
        `${what}: the roll done`,
      );
      done = true;
      await poll;
      expect(after.workers.map((w) => w.pid)).not.toContain(before.workers[0]!.pid);
      expect(answers.length, what).toBeGreaterThan(0);
      expect(
        answers.filter((s) => s !== 200),
        what,
      ).toEqual([]);
      expect(after.state).toBe('ready');
    }
  });
});

describe('contract §3: a worker that exits unexpectedly is replaced with exponential backoff', () => {
  it('a ready worker SIGKILLed three times in a row: restarted after 200, 400, 800 ms', async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 1,
      sets: ['supervisor.backoff_initial=200ms', 'supervisor.backoff_max=10s', 'supervisor.backoff_reset=1h'],
    });
    for (let i = 0; i < 3; i++) {
      const victim = (await sup.status()).workers[0]!.pid;
      process.kill(victim, 'SIGKILL');
      await sup.waitFor(
        (s) => s.workers.length === 1 && s.workers[0]!.state === 'ready' && s.workers[0]!.pid !== victim,
        `replacement ${i + 1}`,
      );
    }
    const exits = sup.logs.filter(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('worker exited unexpectedly'),
    );
    expect(exits.map((l) => [l.reason, l.restart_in_ms])).toEqual([
      ['crash', 200],
      ['crash', 400],
      ['crash', 800],
    ]);
  });
});
