/**
 * ARCHITECTURE.md §4, the signals table and the admin answers: every pod
 * drain trigger does the whole drain (readiness first, serve through
 * drain.delay, drain, close the sockets, remove the PID file, exit 0), a
 * second stop signal forces a non-zero exit, /ready says why it is 503, and
 * /status carries what the heartbeats report.
 */
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
const open: Socket[] = [];
afterEach(async () => {
  for (const s of open.splice(0)) s.destroy();
  await sup?.stop();
  sup = undefined;
});

function canConnect(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = connect(port, '127.0.0.1');
    s.once('connect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => resolve(false));
  });
}

type Trigger = (s: Running) => Promise<void> | void;

const drainTriggers: Array<[string, Trigger]> = [
  ['SIGTERM', (s) => void s.proc.kill('SIGTERM')],
  ['SIGINT (to the supervisor alone)', (s) => void s.proc.kill('SIGINT')],
  [
    'POST /drain',
    async (s) => {
      const res = await s.admin('/drain', { method: 'POST' });
      expect(res.status).toBe(202);
      // at once: the very next /ready is 503
      expect((await s.admin('/ready')).status).toBe(503);
    },
  ],
  [
    'hyp drain (the preStop hook)',
    (s) =>
      void spawn(process.execPath, [cli, 'drain', '--admin', `http://127.0.0.1:${s.adminPort}`], {
        stdio: 'ignore',
      }),
  ],
];

describe('contract §4: pod drain, for every trigger', () => {
  for (const [what, trigger] of drainTriggers) {
    it(`${what}: /ready 503 "draining", /health 200 ok, new connections served through drain.delay, the request in flight completes, sockets closed, PID file removed, exit 0`, async () => {
      sup = await startSupervisor({ app: fixtureApp('contracts'), workers: 2, sets: ['drain.delay=2s'] });
      const s = sup;
      const workers = (await s.status()).workers.map((w) => w.pid);
      expect(existsSync(s.pidFile)).toBe(true);
      const base = `http://127.0.0.1:${s.httpPort}`;
      const inflight = fetch(`${base}/api/slow?ms=3000`).then((r) => r.status);
      await s.waitFor((st) => st.workers.some((w) => w.inflight === 1), 'request in flight');

      await trigger(s);
      const notReady = await until(async () => {
        const r = await s.admin('/ready');
        return r.status === 503 ? await r.json() : undefined;
      }, '/ready 503');
      expect(notReady).toMatchObject({ reason: 'draining', error: { code: 'HYP_E_NOT_READY' } });
      const health = await s.admin('/health');
      expect(health.status).toBe(200);
      expect(((await health.json()) as { status: string }).status).toBe('ok');
      expect((await s.status()).state).toBe('draining');
      // still serving new connections during drain.delay
      const during = await fetch(`${base}/api/ping`, { headers: { connection: 'close' } });
      expect(await during.text()).toBe('pong');

      expect(await inflight).toBe(200);
      expect(await s.exited).toEqual({ code: 0, signal: null });
      expect(existsSync(s.pidFile)).toBe(false);
      expect(await canConnect(s.httpPort)).toBe(false);
      await until(() => workers.every((pid) => !isAlive(pid)) || undefined, 'workers gone', 5000);
      const lines = s.logs.map((l) => l.msg);
      const started = lines.indexOf('pod drain: not ready; serving through the delay');
      expect(started).toBeGreaterThanOrEqual(0);
      expect(lines.indexOf('pod drain: draining workers')).toBeGreaterThan(started);
      expect(lines.indexOf('pod drained; exiting')).toBeGreaterThan(started);
    });
  }
});

describe('contract §4: a second SIGTERM/SIGINT forces the stop', () => {
  for (const [first, second] of [
    ['SIGINT', 'SIGINT'],
    ['SIGTERM', 'SIGINT'],
    ['SIGINT', 'SIGTERM'],
  ] as const) {
    it(`${first} then ${second} during drain.delay: exit non-zero at once, no worker left, PID file removed`, async () => {
      sup = await startSupervisor({ app: fixtureApp('contracts'), workers: 2, sets: ['drain.delay=60s'] });
      const s = sup;
      const workers = (await s.status()).workers.map((w) => w.pid);
      s.proc.kill(first);
      await s.waitLog((l) => l.msg === 'pod drain: not ready; serving through the delay', 'drain started');
      s.proc.kill(second);
      const exit = await s.exited;
      expect(exit.signal).toBeNull();
      expect(exit.code).not.toBe(0);
      expect(exit.code).not.toBeNull();
      expect(existsSync(s.pidFile)).toBe(false);
      await until(() => workers.every((pid) => !isAlive(pid)) || undefined, 'workers gone', 5000);
    });
  }
});

describe('contract §4: the preStop hook, then the kubelet’s SIGTERM', () => {
  for (const hook of ['POST /drain', 'hyp drain --wait'] as const) {
    it(`${hook}, then SIGTERM: the SIGTERM joins the drain (no forced stop); the request in flight completes, exit 0`, async () => {
      sup = await startSupervisor({ app: fixtureApp('contracts'), workers: 2, sets: ['drain.delay=2s'] });
      const s = sup;
      const inflight = fetch(`http://127.0.0.1:${s.httpPort}/api/slow?ms=4000`, {
        headers: { connection: 'close' },
      }).then((r) => r.status);
      await s.waitFor((st) => st.workers.some((w) => w.inflight === 1), 'request in flight');
      if (hook === 'POST /drain') expect((await s.admin('/drain', { method: 'POST' })).status).toBe(202);
      else {
        const cliRun = spawn(
          process.execPath,
          [cli, 'drain', '--wait', '--admin', `http://127.0.0.1:${s.adminPort}`],
          { stdio: 'ignore' },
        );
        expect(await new Promise((r) => cliRun.once('exit', r))).toBe(0);
      }
      s.proc.kill('SIGTERM');
      expect(await inflight).toBe(200);
      expect(await s.exited).toEqual({ code: 0, signal: null });
      expect(s.logs.filter((l) => l.level === 'error')).toEqual([]);
      expect(existsSync(s.pidFile)).toBe(false);
    });
  }
});

describe('contract §4: /ready is 503 with a reason whenever the current generation has no ready worker', () => {
  it('while the first workers are starting: 503 naming it, /status state starting, /health 200 ok', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
    sup = await startSupervisor({
      app: fixtureApp('slow-setup'),
      workers: 1,
      ready: false,
      sets: ['drain.delay=0s', 'drain.timeout=2s'],
      env: { HYP_TEST_SETUP_GATE: join(dir, 'never') },
    });
    await sup.waitLog((l) => l.msg === 'setup waiting', 'setup waiting');
    const ready = await sup.admin('/ready');
    expect(ready.status).toBe(503);
    expect(await ready.json()).toEqual({
      status: 'not ready',
      reason: 'no worker ready yet',
      error: { code: 'HYP_E_NOT_READY', message: 'not ready: no worker ready yet' },
    });
    const status = await sup.status();
    expect(status).toMatchObject({ state: 'starting', ready: false, problem: 'no worker ready yet' });
    const health = await sup.admin('/health');
    expect(health.status).toBe(200);
    expect(((await health.json()) as { status: string }).status).toBe('ok');
  });

  it('after the only worker crashed, until its replacement is ready: 503 naming the crash, then 200', async () => {
    sup = await startSupervisor({
      app: fixtureApp('contracts'),
      workers: 1,
      sets: ['supervisor.backoff_initial=3s'],
    });
    const victim = (await sup.status()).workers[0]!.pid;
    process.kill(victim, 'SIGKILL');
    const down = await until(async () => {
      const r = await sup!.admin('/ready');
      return r.status === 503 ? ((await r.json()) as { reason: string }) : undefined;
    }, '/ready 503');
    expect(down.reason).toMatch(/^no ready worker: crash, signal SIGKILL/);
    expect((await sup.admin('/health')).status).toBe(200);
    await sup.waitFor((s) => s.ready && s.workers[0]?.pid !== victim, 'replacement ready');
    expect((await sup.admin('/ready')).status).toBe(200);
  });
});

describe('contract §3–§4: /status carries the heartbeats (connections, in-flight, ws clients, rss, event-loop delay)', () => {
  it("state, generation and each worker's pid, state, uptime, connections, in-flight and rss follow what the worker serves", async () => {
    sup = await startSupervisor({ app: fixtureApp('contracts'), workers: 1 });
    const s = sup;
    const close = { headers: { connection: 'close' } };
    const me = (await (await fetch(`http://127.0.0.1:${s.httpPort}/api/worker`, close)).json()) as {
      pid: number;
    };
    for (let i = 0; i < 3; i++) {
      const c = connect(s.httpPort, '127.0.0.1');
      open.push(c);
      await new Promise((r) => c.once('connect', r));
    }
    const slow = fetch(`http://127.0.0.1:${s.httpPort}/api/slow?ms=4000`, close).then((r) => r.status);
    type Full = {
      state: string;
      generation: number;
      workers: Array<Record<string, number | string>>;
    };
    const full = async () => (await (await s.admin('/status')).json()) as Full;
    const loaded = await until(async () => {
      const st = await full();
      const w = st.workers[0];
      return w && Number(w.connections) >= 4 && w.inflight === 1 ? st : undefined;
    }, 'the connections and the request in /status');
    expect(loaded).toMatchObject({ state: 'ready', generation: 1 });
    const w = loaded.workers[0]!;
    expect(w).toMatchObject({ pid: me.pid, state: 'ready', generation: 1, ws_clients: 0 });
    expect(w.uptime_s).toBeGreaterThan(0);
    expect(w.rss_bytes).toBeGreaterThan(10 * 1024 * 1024);
    expect(typeof w.loop_delay_ms).toBe('number');
    expect(w.loop_delay_ms).toBeGreaterThanOrEqual(0);
    expect(await slow).toBe(200);
    for (const c of open.splice(0)) c.destroy();
    // later heartbeats bring the figures down again
    const idle = await until(async () => {
      const st = await full();
      const x = st.workers[0];
      return x && x.connections === 0 && x.inflight === 0 ? x : undefined;
    }, 'connections back to 0');
    expect(Number(idle.uptime_s)).toBeGreaterThanOrEqual(Number(w.uptime_s));
  });
});
