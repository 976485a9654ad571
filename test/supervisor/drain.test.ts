/**
 * Pod drain (SIGTERM): readiness drops first, in-flight work finishes,
 * connections opened during drain.delay are served, then a clean exit.
 */
import { existsSync } from 'node:fs';
import { connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, isAlive, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** Can a TCP connection be opened right now? */
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

describe('pod drain on SIGTERM', () => {
  it('a 3 s request in flight completes 200, /ready is 503 before the listener stops, new connections during drain.delay are served, exit 0, PID file removed, no worker left', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2, sets: ['drain.delay=2s'] });
    const workers = (await sup.status()).workers.map((w) => w.pid);
    expect(existsSync(sup.pidFile)).toBe(true);
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const inflight = fetch(`${base}/api/slow?ms=3000`).then(async (r) => ({
      status: r.status,
      text: await r.text(),
    }));
    await sup.waitFor((s) => s.workers.some((w) => w.inflight === 1), 'request in flight');

    sup.proc.kill('SIGTERM');
    const readyDown = await until(async () => {
      const r = await sup!.admin('/ready');
      return r.status === 503 ? ((await r.json()) as { reason: string }) : undefined;
    }, '/ready 503');
    expect(readyDown.reason).toBe('draining');
    // The listener still accepts and serves: readiness dropped first.
    expect(await canConnect(sup.httpPort)).toBe(true);
    const health = await sup.admin('/health');
    expect(health.status).toBe(200);

    // A connection opened during drain.delay is served.
    const during = await fetch(`${base}/api/ping`, { headers: { connection: 'close' } });
    expect(await during.text()).toBe('pong');

    const done = await inflight;
    expect(done).toEqual({ status: 200, text: 'done' });
    const exit = await sup.exited;
    expect(exit.code).toBe(0);
    expect(existsSync(sup.pidFile)).toBe(false);
    for (const pid of workers) expect(isAlive(pid)).toBe(false);
    expect(await canConnect(sup.httpPort)).toBe(false);
    const lines = sup.logs.map((l) => l.msg);
    expect(lines.indexOf('pod drain: not ready; serving through the delay')).toBeLessThan(
      lines.indexOf('pod drained; exiting'),
    );
  });

  it('a second SIGTERM forces exit 1', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1, sets: ['drain.delay=30s'] });
    const worker = (await sup.status()).workers[0]!.pid;
    sup.proc.kill('SIGTERM');
    await sup.waitLog((l) => l.msg === 'pod drain: not ready; serving through the delay', 'drain started');
    sup.proc.kill('SIGTERM');
    const exit = await sup.exited;
    expect(exit.code).toBe(1);
    await until(() => !isAlive(worker) || undefined, 'worker gone', 5000);
    expect(existsSync(sup.pidFile)).toBe(false);
  });

  it('POST /drain from loopback drains the pod (202) and GET /drain reports progress', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 1, sets: ['drain.delay=1s'] });
    const res = await sup.admin('/drain', { method: 'POST' });
    expect(res.status).toBe(202);
    const progress = (await (await sup.admin('/drain')).json()) as {
      phase: string;
      state: string;
      endpoints: unknown;
    };
    expect(progress.state).toBe('draining');
    expect(['delay', 'workers']).toContain(progress.phase);
    // no drain.endpoints.service: nothing watched
    expect(progress.endpoints).toBeNull();
    expect((await sup.exited).code).toBe(0);
  });
});

describe('pod drain with a hung worker', () => {
  it('kills a worker still there at drain.timeout, says so, and still exits 0', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 1,
      sets: ['drain.delay=0s', 'drain.timeout=2s'],
    });
    const worker = (await sup.status()).workers[0]!.pid;
    const blocked = fetch(`http://127.0.0.1:${sup.httpPort}/block?ms=30000`).catch((err: Error) => err);
    await new Promise((r) => setTimeout(r, 300));
    sup.proc.kill('SIGTERM');
    expect((await sup.exited).code).toBe(0);
    expect(isAlive(worker)).toBe(false);
    const line = sup.logs.find(
      (l) => typeof l.msg === 'string' && l.msg.startsWith('drain did not finish within 2s'),
    );
    expect(line).toMatchObject({ level: 'error', killed: 1 });
    expect(await blocked).toBeInstanceOf(Error);
  });
});

describe('supervisor SIGKILL', () => {
  it('all its workers exit within 2 s when their IPC channel closes', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2 });
    const workers = (await sup.status()).workers.map((w) => w.pid);
    expect(workers).toHaveLength(2);
    sup.proc.kill('SIGKILL');
    await sup.exited;
    const killedAt = Date.now();
    await until(() => workers.every((pid) => !isAlive(pid)) || undefined, 'workers gone', 5000);
    expect(Date.now() - killedAt).toBeLessThanOrEqual(2000);
  });
});
