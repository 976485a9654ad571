/**
 * An app that misbehaves — a setup that never returns or throws something
 * odd, process.exit in app code, a blocked event loop, a process that would
 * not end after a drain, a default export that is not an app — is replaced
 * (or, when nothing could ever start, stops the pod), and the log says why
 * with a code.
 */
import { existsSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type LogLine, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

const restarts = (s: Running) =>
  s.logs.filter((l) => typeof l.msg === 'string' && l.msg.startsWith('worker exited unexpectedly'));
const fromWorker = (pid: number, code: string) => (l: LogLine) => l.pid === pid && l.code === code;

/** Two workers and a short backoff: a crash loop would show at once. */
const unloadable = (app: string) => ({
  app,
  workers: 2,
  ready: false,
  sets: ['supervisor.backoff_initial=100ms'],
});

/** The pod stopped with exit 2 before any worker was ready; its fatal line carries `code`. */
async function stoppedAtStart(s: Running, code: string): Promise<LogLine | undefined> {
  const exit = await Promise.race([
    s.exited,
    until(() => undefined, 'supervisor exit', 10_000).then(() => ({ code: -1 })),
  ]);
  expect(exit.code).toBe(2);
  const said = s.logs.find((l) => l.role === 'supervisor' && l.code === code);
  expect(said?.level).toBe('fatal');
  return said;
}

describe('app misbehaviour: start', () => {
  it('a default export that is not defineApp: HYP_E_APP_INVALID, the pod exits 2 at once, no crash loop, no PID file', async () => {
    sup = await startSupervisor(unloadable(fixtureApp('not-an-app')));
    const said = await stoppedAtStart(sup, 'HYP_E_APP_INVALID');
    expect(String(said?.msg)).toContain('must export default defineApp');
    expect(sup.logs.filter((l) => l.msg === 'worker spawned').length).toBeLessThanOrEqual(2);
    expect(existsSync(sup.pidFile)).toBe(false);
  });

  it('an app module that does not parse (ESM, CommonJS): HYP_E_APP_NOT_FOUND with the SyntaxError, the pod exits 2 at once', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-syntax-'));
    const esm = join(dir, 'app.mjs');
    writeFileSync(esm, "import './helper.mjs';\nexport default 1;\n");
    writeFileSync(join(dir, 'helper.mjs'), 'export const x = {;\n');
    const cjs = join(dir, 'app.cjs');
    writeFileSync(cjs, '\nmodule.exports = {;\n');
    for (const [app, where] of [
      [esm, '(in it or in a module it imports)'],
      [cjs, `at ${cjs}:2`],
    ] as const) {
      sup = await startSupervisor(unloadable(app));
      const said = await stoppedAtStart(sup, 'HYP_E_APP_NOT_FOUND');
      expect(String(said?.msg)).toContain(
        `app module ${app} cannot be loaded: SyntaxError: Unexpected token ';'`,
      );
      expect(String(said?.msg)).toContain(where);
      expect(restarts(sup)).toHaveLength(0);
      await sup.stop();
      sup = undefined;
    }
  });

  it('a SyntaxError the module itself throws at import (JSON.parse of a bad file) is a failed start, retried', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-syntax-'));
    const app = join(dir, 'app.mjs');
    writeFileSync(app, "JSON.parse('{');\nexport default 1;\n");
    sup = await startSupervisor({
      app,
      workers: 1,
      ready: false,
      sets: ['supervisor.backoff_initial=100ms'],
    });
    await until(() => restarts(sup!).length >= 2 || undefined, 'two restarts', 10_000);
    expect(String(restarts(sup)[0]!.msg)).toContain('HYP_E_APP_START: app failed to start: ');
    expect(String(restarts(sup)[0]!.msg)).toContain('JSON');
    expect(sup.proc.exitCode).toBeNull();
    // The worker's line: the error's own message once, its cause as an object.
    const said = sup.logs.find((l) => l.role === 'worker' && l.code === 'HYP_E_APP_START');
    const err = said?.err as { message: string; cause?: { type: string; message: string } };
    expect(err.cause?.type).toBe('SyntaxError');
    expect(err.message).toBe(`app failed to start: ${err.cause?.message}`);
  });

  it('setup throws a string, undefined, an object whose toString throws: HYP_E_APP_START exit 70, the reason readable', async () => {
    for (const [kind, reason] of [
      ['string', 'config key DB_URL missing'],
      ['undefined', 'undefined'],
      ['hostile', 'unprintable'],
    ] as const) {
      sup = await startSupervisor({
        app: fixtureApp('setup-throws-odd'),
        workers: 1,
        ready: false,
        env: { HYP_TEST_THROW: kind },
        sets: ['supervisor.backoff_initial=5s'],
      });
      const line = await sup.waitLog((l) => restarts(sup!).includes(l), `${kind}: restart line`, 10_000);
      expect(line.exit).toBe('code 70');
      expect(line.reason).toBe('start-failed');
      expect(String(line.msg)).toContain('HYP_E_APP_START: app failed to start: ');
      expect(String(line.msg)).toContain(reason);
      const ready = (await (await sup.admin('/ready')).json()) as { reason: string };
      expect(ready.reason).toContain(reason);
      await sup.stop();
    }
  });

  it('setup never resolves: killed at supervisor.ready_timeout (HYP_E_WORKER_READY_TIMEOUT), restarted with backoff, /ready says why', async () => {
    sup = await startSupervisor({
      app: fixtureApp('setup-never-resolves'),
      workers: 1,
      ready: false,
      sets: ['supervisor.ready_timeout=1s', 'supervisor.backoff_initial=100ms'],
    });
    await until(() => restarts(sup!).length >= 2 || undefined, 'two restarts', 15_000);
    const [first, second] = restarts(sup);
    expect([first!.reason, second!.reason]).toEqual(['ready timeout', 'ready timeout']);
    expect([first!.restart_in_ms, second!.restart_in_ms]).toEqual([100, 200]);
    const killed = sup.logs.find((l) => l.code === 'HYP_E_WORKER_READY_TIMEOUT');
    expect(killed?.level).toBe('error');
    expect(String(killed?.msg)).toContain('did not become ready within 1s');
    const ready = await sup.admin('/ready');
    expect(ready.status).toBe(503);
    expect(((await ready.json()) as { reason: string }).reason).toContain('ready timeout');
  });

  it('process.exit(3) during setup: a failed start, replaced with backoff; the worker names the call (HYP_E_APP_EXIT)', async () => {
    sup = await startSupervisor({
      app: fixtureApp('exits'),
      workers: 1,
      ready: false,
      env: { HYP_TEST_EXIT_IN_SETUP: '3' },
      sets: ['supervisor.backoff_initial=100ms'],
    });
    await until(() => restarts(sup!).length >= 2 || undefined, 'two restarts', 15_000);
    const first = restarts(sup)[0]!;
    expect(first.exit).toBe('code 3');
    expect(first.restart_in_ms).toBe(100);
    const said = await sup.waitLog(fromWorker(Number(first.worker_pid), 'HYP_E_APP_EXIT'), 'HYP_E_APP_EXIT');
    expect(said.level).toBe('error');
    expect(String(said.msg)).toContain('process.exit(3)');
    expect(said.stage).toBe('setup');
  });
});

describe('app misbehaviour: serving', () => {
  it('process.exit(0) in a handler: not a clean drain; replaced, the other worker serves, the log names the call', async () => {
    sup = await startSupervisor({ app: fixtureApp('exits'), workers: 2 });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const before = await sup.status();
    await fetch(`${base}/exit?code=0`, { headers: { connection: 'close' } }).catch(() => undefined);
    const line = await sup.waitLog((l) => restarts(sup!).includes(l), 'restart line', 10_000);
    expect(line.exit).toBe('code 0');
    expect(line.level).toBe('error');
    const victim = Number(line.worker_pid);
    expect(before.workers.map((w) => w.pid)).toContain(victim);
    const said = await sup.waitLog(fromWorker(victim, 'HYP_E_APP_EXIT'), 'HYP_E_APP_EXIT');
    expect(String(said.msg)).toContain('process.exit(0)');
    expect(said.stage).toBe('serving');
    expect(
      (await fetch(`${base}/api/ping`, { headers: { connection: 'close' } }).then((r) => r.text())) as string,
    ).toBe('pong');
    await sup.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.state === 'ready' && w.pid !== victim),
      'slot refilled',
      15_000,
    );
    const metrics = await (await sup.admin('/metrics')).text();
    expect(metrics).toMatch(/hyp_supervisor_worker_restarts_total\{reason="crash"\} 1/);
  });

  it('a handler blocking the event loop past heartbeat_timeout: killed (HYP_E_WORKER_HEARTBEAT) and replaced; the other worker keeps serving', async () => {
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      sets: ['supervisor.heartbeat_interval=200ms', 'supervisor.heartbeat_timeout=1s'],
    });
    const base = `http://127.0.0.1:${sup.httpPort}`;
    const before = await sup.status();
    const blocked = fetch(`${base}/block?ms=60000`, { headers: { connection: 'close' } }).then(
      (r) => r.status,
      () => 'cut',
    );
    const killed = await sup.waitLog((l) => l.code === 'HYP_E_WORKER_HEARTBEAT', 'heartbeat kill', 10_000);
    expect(killed.level).toBe('error');
    expect(String(killed.msg)).toContain('sent no heartbeat for 1s');
    // Meanwhile (and after) the other worker answers.
    const pong = await fetch(`${base}/api/ping`, { headers: { connection: 'close' } }).then((r) => r.text());
    expect(pong).toBe('pong');
    expect(await blocked).toBe('cut');
    const line = await sup.waitLog((l) => restarts(sup!).includes(l), 'restart line', 10_000);
    expect(line.reason).toBe('heartbeat timeout');
    expect(line.exit).toBe('signal SIGKILL');
    const after = await sup.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.state === 'ready') && s.ready,
      'slot refilled',
      15_000,
    );
    const survivors = after.workers.filter((w) => before.workers.some((b) => b.pid === w.pid));
    expect(survivors).toHaveLength(1);
  });

  it('an app that keeps its process alive and whose onShutdown hook throws: the drained worker still exits 0 on its own, the failure logged', async () => {
    sup = await startSupervisor({ app: fixtureApp('shutdown-misbehaves'), workers: 1 });
    const old = (await sup.status()).workers[0]!;
    const res = await sup.admin('/restart?wait=1', { method: 'POST' });
    expect(res.status).toBe(200);
    const exit = await sup.waitLog((l) => l.msg === 'worker exited' && l.worker_pid === old.pid, 'old exit');
    expect(exit.exit).toBe('code 0');
    const failed = sup.logs.find((l) => l.pid === old.pid && l.code === 'HYP_E_SHUTDOWN_HOOK');
    expect(failed?.level).toBe('error');
    expect(String(failed?.msg)).toContain('pool already closed');
  });
});
