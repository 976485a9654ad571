/**
 * What the supervisor keeps per worker ends with the worker: an embedded
 * Supervisor (real worker processes, real sockets) is rolled, crashed and
 * replaced, and afterwards its per-worker tables hold the live workers only.
 * Map sizes and counts only: no heap or timing assertions.
 */
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { loadConfig } from '../../supervisor/config/load.js';
import { Supervisor } from '../../supervisor/supervisor.js';
import type { WorkerProcess } from '../../supervisor/worker-process.js';
import { fixtureApp, root, until } from '../helpers/supervisor.js';

const workerEntry = join(root, 'dist', 'apps', 'server', 'worker.js');

/** The supervisor's private per-worker tables, read through a cast. */
interface Internals {
  backoffs: Map<number, unknown>;
  pendingRestarts: Map<number, unknown>;
  metrics: { lastCounts: Map<number, unknown>; retired: Map<string, unknown> };
}

let running: Supervisor | undefined;
afterEach(async () => {
  const sup = running;
  running = undefined;
  if (sup && sup.state !== 'stopped') await sup.drain('test end');
});

function start(workers: number): Supervisor {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-test-'));
  const { config } = loadConfig({
    cwd: dir,
    env: {},
    sets: [
      'server.addr=127.0.0.1:0',
      'admin.addr=127.0.0.1:0',
      `supervisor.pid_file=${join(dir, 'hyp.pid')}`,
      `supervisor.workers=${workers}`,
      'supervisor.backoff_initial=50ms',
      'drain.delay=0s',
      'drain.timeout=5s',
    ],
  });
  const sup = new Supervisor({
    config,
    app: fixtureApp('basic'),
    workerEntry,
    log: pino({ level: 'silent' }),
    handleSignals: false,
    exit: () => {},
  });
  running = sup;
  return sup;
}

/** Every worker of the current generation ready, none other left. */
function settled(sup: Supervisor, workers: number): Promise<WorkerProcess[]> {
  return until(
    () => {
      const all = [...sup.workers.values()];
      const ok =
        all.length === workers &&
        all.every((w) => w.state === 'ready' && w.generation === sup.generation && w.failing === undefined);
      return ok ? all : undefined;
    },
    `${workers} ready workers of generation ${sup.generation} and no other`,
    30_000,
  );
}

async function get(sup: Supervisor, path: string): Promise<string> {
  const res = await fetch(`http://127.0.0.1:${sup.listeners[0]!.port}${path}`);
  return res.text();
}

/** The pod's hyp_http_requests_total for GET /api/ping 200, from a scrape. */
async function pings(sup: Supervisor): Promise<number> {
  const { body } = await sup.metrics.render(sup);
  const line = body
    .split('\n')
    .find(
      (l) =>
        l.startsWith('hyp_http_requests_total{') &&
        l.includes('route="/api/ping"') &&
        l.includes('status="200"'),
    );
  return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
}

describe('supervisor: per-worker tables end with their workers', () => {
  it('rolls with nobody scraping /metrics: the counts kept for drained workers end with them, and the pod keeps every count once', async () => {
    const sup = start(1);
    await sup.bind();
    sup.launch();
    await settled(sup, 1);
    const internals = sup as unknown as Internals;
    let served = 0;
    const rolls = 6;
    for (let i = 0; i < rolls; i++) {
      for (let r = 0; r < 3; r++) expect(await get(sup, '/api/ping')).toBe('pong');
      served += 3;
      const result = await sup.rollGeneration(`leak spec roll ${i + 1}`);
      expect(result.ok).toBe(true);
      await settled(sup, 1);
    }
    // Counts are taken at each drain's start (keepCounts): a pod that nobody
    // scrapes kept one dump per drained worker, for ever (6 here before).
    expect(internals.metrics.lastCounts.size).toBeLessThanOrEqual(sup.workers.size);
    // Nothing lost, nothing counted twice: the drained workers' counts are the pod's.
    expect(await pings(sup)).toBe(served);
    expect(internals.metrics.lastCounts.size).toBeLessThanOrEqual(sup.workers.size);
  });

  it('crashes (SIGKILL, uncaught exception) and rolls: workers, backoffs, pending restarts and kept counts hold the live workers only', async () => {
    const sup = start(2);
    await sup.bind();
    sup.launch();
    await settled(sup, 2);
    const internals = sup as unknown as Internals;
    let served = 0;
    for (let i = 0; i < 3; i++) {
      const [a] = await settled(sup, 2);
      for (let r = 0; r < 4; r++) expect(await get(sup, '/api/ping')).toBe('pong');
      served += 4;
      process.kill(a!.pid, 'SIGKILL');
      await a!.exited;
      await settled(sup, 2);
      // whichever worker takes it is replaced, then drained
      expect(await get(sup, '/throw-later')).toBe('thrown soon');
      await until(
        () => [...sup.workers.values()].some((w) => w.failing !== undefined) || undefined,
        'a failing worker',
      );
      await settled(sup, 2);
      expect((await sup.rollGeneration(`leak spec roll ${i + 1}`)).ok).toBe(true);
      await settled(sup, 2);
    }
    expect(sup.workers.size).toBe(2);
    expect(internals.pendingRestarts.size).toBe(0);
    expect(internals.backoffs.size).toBeLessThanOrEqual(2);
    expect(internals.metrics.lastCounts.size).toBeLessThanOrEqual(2);
    // SIGKILLed workers take what they counted since the last count with them; never more than served.
    const counted = await pings(sup);
    expect(counted).toBeLessThanOrEqual(served);
    expect(internals.metrics.lastCounts.size).toBeLessThanOrEqual(2);
    // the exited workers' counts are summed into one series set, not one per worker
    const retiredSeries = [...internals.metrics.retired.values()].reduce<number>(
      (n, f) => n + (f as { values: unknown[] }).values.length,
      0,
    );
    expect(retiredSeries).toBeLessThan(2_000);
  });
});
