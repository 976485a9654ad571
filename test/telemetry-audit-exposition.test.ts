/**
 * The pod's /metrics as Prometheus reads it, from a real supervisor with real
 * workers: a strict parse of the text exposition (one HELP and TYPE per
 * family, histogram buckets cumulative and consistent with _count, escaped
 * label values, no series twice) with two workers whose application
 * metrics disagree, across a rolling restart and a worker that died, and
 * the pod's counters never going back.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Counter, Histogram, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { PodHistory } from '../supervisor/history.js';
import { SupervisorMetrics } from '../supervisor/metrics.js';
import type { Supervisor } from '../supervisor/supervisor.js';
import { memoryLog } from './apps/server/http/harness.js';
import { type Family, parseExposition, seriesValue } from './apps/server/telemetry/exposition.js';
import { type Running, root, startSupervisor, until } from './helpers/supervisor.js';

/**
 * An app whose metrics differ between workers: odd worker ids register
 * `app_conflict` as a counter, even ones as a gauge with other help; both
 * count requests with a label value that needs escaping and observe a
 * histogram.
 */
function writeApp(): string {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-telemetry-audit-'));
  const file = join(dir, 'app.mjs');
  const index = pathToFileURL(join(root, 'dist', 'apps', 'server', 'index.js')).href;
  const prom = pathToFileURL(join(root, 'node_modules', 'prom-client', 'index.js')).href;
  writeFileSync(
    file,
    `import { defineApp } from ${JSON.stringify(index)};
import prom from ${JSON.stringify(prom)};
const { Counter, Gauge, Histogram } = prom;
export default defineApp((app, { workerId }) => {
  const registers = [app.registry];
  const hits = new Counter({ name: 'app_hits_total', help: 'hits "quoted" \\\\ back\\nslash', labelNames: ['path'], registers });
  const lat = new Histogram({ name: 'app_latency_seconds', help: 'latency', buckets: [0.1, 1], registers });
  if (workerId % 2 === 1) new Counter({ name: 'app_conflict', help: 'a counter here', registers }).inc(3);
  else new Gauge({ name: 'app_conflict', help: 'a gauge there', registers }).set(7);
  app.get('/hit', (c) => {
    hits.inc({ path: '/a"b\\\\c\\nd' });
    lat.observe(0.5);
    return c.json({ worker: workerId });
  });
});
`,
  );
  return file;
}

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

async function scrape(): Promise<{ text: string; families: Map<string, Family> }> {
  const res = await sup!.admin('/metrics');
  expect(res.status).toBe(200);
  const text = await res.text();
  return { text, families: parseExposition(text) };
}

async function hit(n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    const res = await fetch(`http://127.0.0.1:${sup!.httpPort}/hit`);
    expect(res.status).toBe(200);
    await res.text();
  }
}

const served = { method: 'GET', route: '/hit', status: '200' };

describe('pod /metrics of two workers whose app metrics disagree', () => {
  it('is valid Prometheus text: one type per family, escaped labels, consistent histograms', async () => {
    sup = await startSupervisor({ app: writeApp(), workers: 2 });
    await hit(6);
    const { families } = await until(async () => {
      const s = await scrape();
      return seriesValue(s.families, 'hyp_http_requests_total', served) === 6 ? s : undefined;
    }, 'six requests counted');
    expect(seriesValue(families, 'app_hits_total', { path: '/a"b\\c\nd' })).toBe(6);
    expect(seriesValue(families, 'app_latency_seconds_count')).toBe(6);
    expect(families.get('app_conflict')?.samples).toHaveLength(1);
    // Node's default metrics stay per worker.
    const cpu = families.get('process_cpu_seconds_total');
    expect(new Set(cpu?.samples.map((s) => s.labels.worker_id)).size).toBe(2);
    await sup.waitLog((l) => l.code === 'HYP_E_METRICS_MISMATCH', 'the type conflict logged');
  });

  it('counters never go back across a rolling restart and a killed worker, scraped all along', async () => {
    sup = await startSupervisor({ app: writeApp(), workers: 2 });
    let last = -1;
    let lastHits = -1;
    let scrapes = 0;
    let stop = false;
    const problems: string[] = [];
    const scraper = (async () => {
      const end = Date.now() + 60_000;
      while (!stop && Date.now() < end && scrapes < 5000) {
        scrapes++;
        let s: Awaited<ReturnType<typeof scrape>>;
        try {
          s = await scrape();
        } catch (err) {
          problems.push(String(err));
          continue;
        }
        const n = seriesValue(s.families, 'hyp_http_requests_total', served) ?? 0;
        const h = seriesValue(s.families, 'app_hits_total', { path: '/a"b\\c\nd' }) ?? 0;
        if (n < last) problems.push(`hyp_http_requests_total went from ${last} to ${n}`);
        if (h < lastHits) problems.push(`app_hits_total went from ${lastHits} to ${h}`);
        last = n;
        lastHits = h;
      }
    })();
    await hit(10);
    await until(async () => (last >= 10 ? true : undefined), 'ten requests scraped');
    const before = await sup.status();
    process.kill(sup.proc.pid!, 'SIGUSR2');
    await sup.waitFor(
      (s) => s.generation === before.generation + 1 && s.workers.every((w) => w.state === 'ready'),
      'the new generation',
    );
    await until(
      async () => ((await sup!.status()).other_workers.length === 0 ? true : undefined),
      'old drained',
    );
    await hit(10);
    const [victim] = (await sup.status()).workers;
    await until(async () => (last >= 20 ? true : undefined), 'twenty requests scraped');
    process.kill(victim!.pid, 'SIGKILL');
    await sup.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.pid !== victim!.pid && w.state === 'ready'),
      'a replacement',
    );
    await hit(5);
    await until(async () => (last >= 25 ? true : undefined), 'twenty-five requests scraped');
    stop = true;
    await scraper;
    expect(problems).toEqual([]);
    expect(scrapes).toBeGreaterThan(3);
  });
});

describe('pod /metrics: a worker that exits while a scrape waits for it', () => {
  async function jobs(n: number): Promise<unknown[]> {
    const registry = new Registry();
    new Counter({ name: 'app_jobs_total', help: 'jobs', registers: [registry] }).inc(n);
    return registry.getMetricsAsJSON();
  }

  /** Two workers counting 2 and 3; worker 2 answers the second scrape with `reply` and exits meanwhile. */
  async function scrapes(reply: (own: unknown[]) => unknown[]): Promise<string[]> {
    const workers = new Map<number, { generation: number; state: string; metrics(): Promise<unknown[]> }>();
    const dumps = new Map([
      [1, await jobs(2)],
      [2, await jobs(3)],
    ]);
    let exiting = false;
    for (const id of [1, 2])
      workers.set(id, {
        generation: 1,
        state: 'ready',
        metrics: async () => {
          if (!exiting || id !== 2) return dumps.get(id)!;
          workers.delete(2); // its 'exit' came while the scrape waited
          return reply(dumps.get(id)!);
        },
      });
    const sup = {
      workers,
      generation: 1,
      state: 'ready',
      history: new PodHistory({ size: 1 }),
    } as unknown as Supervisor;
    const metrics = new SupervisorMetrics(sup);
    const value = async () => /^app_jobs_total (\S+)$/m.exec((await metrics.render(sup)).body)?.[1] ?? '';
    const seen = [await value()];
    exiting = true;
    seen.push(await value(), await value());
    return seen;
  }

  it('it answered before it went: its counts are served once, and stay', async () => {
    expect(await scrapes((own) => own)).toEqual(['5', '5', '5']);
  });

  it('it went without answering: its counts of the scrape before are served once, and stay', async () => {
    expect(await scrapes(() => [])).toEqual(['5', '5', '5']);
  });
});

describe('pod /metrics: families of workers whose sample names meet', () => {
  /** Worker 1 has a histogram `app_lat`, worker 2 a counter `app_lat_count` (4) and `app_jobs_total` (2). */
  async function clash(generations: [number, number]) {
    const older = new Registry();
    new Histogram({ name: 'app_lat', help: 'latency', buckets: [1], registers: [older] }).observe(0.5);
    const newer = new Registry();
    new Counter({ name: 'app_lat_count', help: 'renamed', registers: [newer] }).inc(4);
    new Counter({ name: 'app_jobs_total', help: 'jobs', registers: [newer] }).inc(2);
    const workers = new Map([
      [1, { generation: generations[0], state: 'ready', metrics: async () => older.getMetricsAsJSON() }],
      [2, { generation: generations[1], state: 'ready', metrics: async () => newer.getMetricsAsJSON() }],
    ]);
    const sup = {
      workers,
      generation: Math.max(...generations),
      state: 'ready',
      history: new PodHistory({ size: 1 }),
    } as unknown as Supervisor;
    const { log, logs } = memoryLog();
    const { body } = await new SupervisorMetrics(sup).render(sup, log);
    const families = parseExposition(body); // throws on a series served twice
    expect(seriesValue(families, 'app_jobs_total')).toBe(2);
    const refused = logs.filter((l) => l.code === 'HYP_E_METRICS_INVALID').map((l) => l.metric);
    return { families, refused };
  }

  it("one generation: a counter named like a histogram's _count is left out, the histogram served", async () => {
    const { families, refused } = await clash([1, 1]);
    expect(families.get('app_lat')?.type).toBe('histogram');
    expect(seriesValue(families, 'app_lat_count')).toBe(1);
    expect(families.has('app_lat_count')).toBe(false);
    expect(refused).toEqual(['app_lat_count']);
  });

  it("a rename in the next generation: the new generation's counter is served, the old histogram left out", async () => {
    const { families, refused } = await clash([1, 2]);
    expect(families.has('app_lat')).toBe(false);
    expect(families.get('app_lat_count')?.type).toBe('counter');
    expect(seriesValue(families, 'app_lat_count')).toBe(4);
    expect(refused).toEqual(['app_lat']);
  });
});

describe('pod /metrics: counts taken when a worker starts draining (keepCounts)', () => {
  async function jobs(n: number): Promise<unknown[]> {
    const registry = new Registry();
    new Counter({ name: 'app_jobs_total', help: 'jobs', registers: [registry] }).inc(n);
    return registry.getMetricsAsJSON();
  }

  function pod() {
    const dumps = new Map<number, unknown[]>();
    const gates = new Map<number, Promise<void>>();
    const workers = new Map<
      number,
      { id: number; generation: number; state: string; metrics(): Promise<unknown[]> }
    >();
    for (const id of [1, 2])
      workers.set(id, {
        id,
        generation: 1,
        state: 'ready',
        async metrics() {
          const dump = dumps.get(id)!; // read when asked, as a worker reads its counters
          await gates.get(id);
          return dump;
        },
      });
    const sup = { workers, generation: 1, state: 'ready', history: new PodHistory({ size: 1 }) };
    const metrics = new SupervisorMetrics(sup as unknown as Supervisor);
    const value = async () =>
      /^app_jobs_total (\S+)$/m.exec((await metrics.render(sup as unknown as Supervisor)).body)?.[1];
    return { dumps, gates, workers, metrics, sup: sup as unknown as Supervisor, value };
  }

  it('what a drained worker counted after the last scrape stays in the pod counter', async () => {
    const p = pod();
    p.dumps.set(1, await jobs(2));
    p.dumps.set(2, await jobs(3));
    expect(await p.value()).toBe('5');
    p.dumps.set(2, await jobs(10)); // 7 more requests, then the roll drains it
    await p.metrics.keepCounts(p.sup, p.workers.get(2)!);
    p.workers.delete(2); // it exits before the next scrape
    expect(await p.value()).toBe('12');
  });

  it("a scrape's reply that arrives after keepCounts' later one does not replace it", async () => {
    const p = pod();
    p.dumps.set(1, await jobs(2));
    p.dumps.set(2, await jobs(3));
    let open: () => void = () => {};
    p.gates.set(2, new Promise<void>((r) => (open = r)));
    const scrape = p.value(); // asks worker 2 while it has counted 3; its reply waits
    p.dumps.set(2, await jobs(10));
    p.gates.delete(2);
    await p.metrics.keepCounts(p.sup, p.workers.get(2)!); // asked later, answered first: 10
    open();
    expect(await scrape).toBe('5');
    p.workers.delete(2);
    expect(await p.value()).toBe('12');
  });
});

describe('supervisor counters with labels', () => {
  it('hyp_supervisor_worker_restarts_total has every documented reason from 0, so the first restart is an increase', async () => {
    sup = await startSupervisor({ app: writeApp(), workers: 1 });
    const { families } = await scrape();
    const reasons = families
      .get('hyp_supervisor_worker_restarts_total')
      ?.samples.map((s) => [s.labels.reason, s.value]);
    expect(reasons).toEqual(
      ['crash', 'heartbeat', 'start-failed', 'rolling', 'ready', 'uncaught', 'relay'].map((r) => [r, 0]),
    );
  });
});
