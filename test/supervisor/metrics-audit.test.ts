/**
 * The pod's /metrics against hostile or unlucky worker dumps: one worker or
 * one application metric must never fail the scrape for the others, make it
 * invalid Prometheus text, or grow the supervisor's memory without bound;
 * and the pod's counters must not fall back when a worker is replaced.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { PodHistory } from '../../supervisor/history.js';
import { maxSeriesPerWorker, SupervisorMetrics } from '../../supervisor/metrics.js';
import type { Supervisor } from '../../supervisor/supervisor.js';
import { memoryLog } from '../apps/server/http/harness.js';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

interface StubWorker {
  id: number;
  generation: number;
  state: string;
  dump: unknown[];
  metrics(): Promise<unknown[]>;
}

/** A pod whose workers answer `metrics?` with whatever their `dump` holds at the time. */
function pod(...workers: Array<{ id: number; generation?: number; dump: unknown[] }>) {
  const map = new Map<number, StubWorker>();
  const add = (w: { id: number; generation?: number; dump: unknown[] }) => {
    const stub: StubWorker = {
      id: w.id,
      generation: w.generation ?? 1,
      state: 'ready',
      dump: w.dump,
      metrics: async () => stub.dump,
    };
    map.set(w.id, stub);
    return stub;
  };
  for (const w of workers) add(w);
  const sup = {
    workers: map,
    generation: 1,
    state: 'ready',
    drainStartedAt: undefined,
    history: new PodHistory({ size: 1 }),
  } as unknown as Supervisor;
  return { sup, workers: map, add };
}

async function counterDump(name: string, value: number, labels: Record<string, string> = {}) {
  const registry = new Registry();
  const c = new Counter({
    name,
    help: `${name} help`,
    labelNames: Object.keys(labels),
    registers: [registry],
  });
  c.inc(labels, value);
  return registry.getMetricsAsJSON() as Promise<unknown[]>;
}

async function histogramDump(buckets: number[], observations: number[]) {
  const registry = new Registry();
  const h = new Histogram({ name: 'app_latency_seconds', help: 'latency', buckets, registers: [registry] });
  for (const o of observations) h.observe(o);
  return registry.getMetricsAsJSON() as Promise<unknown[]>;
}

/**
 * Checks the text exposition format the way Prometheus' parser reads it:
 * one HELP and one TYPE per family, valid metric and label names, escaped
 * label values, float values, no sample twice.
 */
function expectValidExposition(text: string): void {
  const name = '[a-zA-Z_:][a-zA-Z0-9_:]*';
  const labelPair = '[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\\\\n]|\\\\[\\\\"n])*"';
  const value = '(?:[-+]?(?:\\d+\\.?\\d*(?:[eE][-+]?\\d+)?|\\.\\d+)|[-+]?Inf|NaN|Nan)';
  const sample = new RegExp(`^(${name})(\\{(?:${labelPair}(?:,${labelPair})*,?)?\\})? ${value}$`);
  const help = new RegExp(`^# HELP (${name}) .*$`);
  const type = new RegExp(`^# TYPE (${name}) (counter|gauge|histogram|summary|untyped)$`);
  const helps = new Set<string>();
  const types = new Set<string>();
  const samples = new Set<string>();
  for (const line of text.split('\n')) {
    if (line === '') continue;
    if (line.startsWith('# HELP ')) {
      const m = help.exec(line);
      expect(m, `HELP line: ${line}`).not.toBeNull();
      expect(helps.has(m![1]!), `second HELP for ${m![1]}`).toBe(false);
      helps.add(m![1]!);
    } else if (line.startsWith('# TYPE ')) {
      const m = type.exec(line);
      expect(m, `TYPE line: ${line}`).not.toBeNull();
      expect(types.has(m![1]!), `second TYPE for ${m![1]}`).toBe(false);
      types.add(m![1]!);
    } else {
      const m = sample.exec(line);
      expect(m, `sample line: ${JSON.stringify(line)}`).not.toBeNull();
      const labels = (m![2] ?? '')
        .slice(1, -1)
        .split(/,(?=[a-zA-Z_])/)
        .sort()
        .join(',');
      const key = `${m![1]}{${labels}}`;
      expect(samples.has(key), `sample twice: ${key}`).toBe(false);
      samples.add(key);
    }
  }
}

/** Cumulative bucket counts of `app_latency_seconds` by `le`, in the order served. */
function buckets(text: string): Array<[string, number]> {
  return [...text.matchAll(/^app_latency_seconds_bucket\{le="([^"]+)"\} (\S+)$/gm)].map((m) => [
    m[1]!,
    Number(m[2]),
  ]);
}

describe('pod /metrics: one bad application metric', () => {
  it('drops only that metric, not the rest of its worker', async () => {
    const good = await counterDump('app_jobs_total', 2);
    const bad = {
      name: 'app bad name',
      help: 'x',
      type: 'counter',
      aggregator: 'sum',
      values: [{ value: 1 }],
    };
    const { sup } = pod(
      { id: 1, dump: [...good, bad] },
      { id: 2, dump: await counterDump('app_jobs_total', 3) },
    );
    const { log, logs } = memoryLog();
    const { body } = await new SupervisorMetrics(sup).render(sup, log);
    expect(body).toMatch(/^app_jobs_total 5$/m);
    expect(body).not.toContain('app bad name');
    expectValidExposition(body);
    expect(
      logs.some((l) => l.code === 'HYP_E_METRICS_INVALID' && String(l.msg).includes('app bad name')),
    ).toBe(true);
  });

  it('never renders a label name, metric type or sample name that breaks the exposition', async () => {
    const families = [
      {
        name: 'app_a',
        help: 'a',
        type: 'gauge',
        aggregator: 'sum',
        values: [{ labels: { 'x"}': 'v' }, value: 1 }],
      },
      { name: 'app_b', help: 'b', type: 'gauge\nfoo 1', aggregator: 'sum', values: [{ value: 1 }] },
      {
        name: 'app_c',
        help: 'c',
        type: 'gauge',
        aggregator: 'sum',
        values: [{ value: 1, metricName: 'x y' }],
      },
      { name: 'app_d', help: 'd', type: 'gauge', aggregator: 'toString', values: [{ value: 1 }] },
      {
        name: 'app_e',
        help: 'e',
        type: 'gauge',
        aggregator: 'sum',
        values: [{ labels: { v: {} }, value: 1 }],
      },
      {
        name: 'app_ok',
        help: 'line one\nline "two" \\ three',
        type: 'gauge',
        aggregator: 'sum',
        values: [{ labels: { path: 'a"b\\c\nd' }, value: Number.NaN }],
      },
    ];
    const { sup } = pod({ id: 1, dump: families });
    const { log } = memoryLog();
    const { body } = await new SupervisorMetrics(sup).render(sup, log);
    expectValidExposition(body);
    expect(body).toContain('app_ok{path="a\\"b\\\\c\\nd"} Nan');
    for (const left of ['app_a', 'app_b', 'app_c', 'app_d', 'app_e'])
      expect(body).not.toMatch(new RegExp(`^${left}`, 'm'));
  });

  it("keeps the supervisor's own family when an app metric has its name (one HELP, one TYPE)", async () => {
    const clash = await counterDump('hyp_supervisor_generation', 41);
    const { sup } = pod({ id: 1, dump: [...clash, ...(await counterDump('app_jobs_total', 1))] });
    const { log, logs } = memoryLog();
    const { body } = await new SupervisorMetrics(sup).render(sup, log);
    expectValidExposition(body);
    expect(body).toMatch(/^hyp_supervisor_generation 1$/m);
    expect(body).toMatch(/^app_jobs_total 1$/m);
    expect(logs.some((l) => l.code === 'HYP_E_METRICS_INVALID')).toBe(true);
  });
});

describe('pod /metrics: a label explosion in one worker', () => {
  it('refuses the exploding family of that worker (HYP_E_METRICS_TOO_MANY), serves everything else', async () => {
    const registry = new Registry();
    const users = new Gauge({
      name: 'app_by_user',
      help: 'per user',
      labelNames: ['user'],
      registers: [registry],
    });
    for (let i = 0; i <= maxSeriesPerWorker; i++) users.set({ user: String(i) }, 1);
    new Counter({ name: 'app_jobs_total', help: 'jobs', registers: [registry] }).inc(2);
    const exploding = (await registry.getMetricsAsJSON()) as unknown[];
    const { sup } = pod({ id: 1, dump: exploding }, { id: 2, dump: await counterDump('app_jobs_total', 3) });
    const { log, logs } = memoryLog();
    const metrics = new SupervisorMetrics(sup);
    for (let scrape = 0; scrape < 2; scrape++) {
      const { body } = await metrics.render(sup, log);
      expect(body).toMatch(/^app_jobs_total 5$/m);
      expect(body).not.toContain('app_by_user');
      expect(body).toMatch(/^hyp_supervisor_generation 1$/m);
    }
    const refused = logs.filter((l) => l.code === 'HYP_E_METRICS_TOO_MANY');
    expect(refused).toHaveLength(1); // logged once, not on every scrape
    expect(refused[0]).toMatchObject({ metric: 'app_by_user', worker: 1, series: maxSeriesPerWorker + 1 });
  });
});

describe('pod /metrics: scrapes at the same time', () => {
  it('share one round of worker dumps, so the supervisor never holds more than one per worker', async () => {
    const { sup, workers } = pod(
      { id: 1, dump: await counterDump('app_jobs_total', 2) },
      { id: 2, dump: await counterDump('app_jobs_total', 3) },
    );
    let asked = 0;
    for (const w of workers.values()) {
      const answer = w.metrics;
      w.metrics = () => {
        asked++;
        return answer();
      };
    }
    const metrics = new SupervisorMetrics(sup);
    const { log } = memoryLog();
    const bodies = await Promise.all(Array.from({ length: 20 }, () => metrics.render(sup, log)));
    for (const { body } of bodies) expect(body).toMatch(/^app_jobs_total 5$/m);
    expect(asked).toBe(2);
    await metrics.render(sup, log); // a later scrape asks again
    expect(asked).toBe(4);
  });
});

describe('pod /metrics: counters across worker restarts', () => {
  it('keeps what an exited worker had counted, so the pod counter never goes down', async () => {
    const { sup, workers, add } = pod(
      { id: 1, dump: await counterDump('app_jobs_total', 2, { kind: 'a' }) },
      { id: 2, dump: await counterDump('app_jobs_total', 3, { kind: 'a' }) },
    );
    const metrics = new SupervisorMetrics(sup);
    const { log } = memoryLog();
    expect((await metrics.render(sup, log)).body).toMatch(/^app_jobs_total\{kind="a"\} 5$/m);
    workers.delete(2); // exited
    add({ id: 3, dump: await counterDump('app_jobs_total', 1, { kind: 'a' }) }); // its replacement
    workers.get(1)!.dump = await counterDump('app_jobs_total', 4, { kind: 'a' });
    expect((await metrics.render(sup, log)).body).toMatch(/^app_jobs_total\{kind="a"\} 8$/m);
  });

  it("does not keep an exited worker's gauges or its per-worker (worker_id) series", async () => {
    const registry = new Registry();
    new Gauge({ name: 'app_queue', help: 'q', registers: [registry] }).set(7);
    new Counter({
      name: 'process_cpu_seconds_total',
      help: 'cpu',
      labelNames: ['worker_id'],
      registers: [registry],
    }).inc({ worker_id: '2' }, 9);
    const { sup, workers } = pod(
      { id: 1, dump: await counterDump('app_jobs_total', 1) },
      { id: 2, dump: await registry.getMetricsAsJSON() },
    );
    const metrics = new SupervisorMetrics(sup);
    const { log } = memoryLog();
    expect((await metrics.render(sup, log)).body).toMatch(/^app_queue 7$/m);
    workers.delete(2);
    const { body } = await metrics.render(sup, log);
    expect(body).not.toMatch(/^app_queue /m);
    expect(body).not.toContain('worker_id="2"');
    expect(body).toMatch(/^app_jobs_total 1$/m);
  });

  it('keeps the last counts of a live worker that did not answer this scrape', async () => {
    const { sup, workers } = pod(
      { id: 1, dump: await counterDump('app_jobs_total', 2) },
      { id: 2, dump: await counterDump('app_jobs_total', 3) },
    );
    const metrics = new SupervisorMetrics(sup);
    const { log } = memoryLog();
    expect((await metrics.render(sup, log)).body).toMatch(/^app_jobs_total 5$/m);
    workers.get(2)!.dump = []; // what WorkerProcess.metrics() gives on a timeout
    expect((await metrics.render(sup, log)).body).toMatch(/^app_jobs_total 5$/m);
  });
});

describe('pod /metrics: families that differ between workers', () => {
  it('merges histograms with different buckets into cumulative, consistent buckets', async () => {
    // generation 1 has buckets 1, 2; the new generation 2 has 1, 5
    const { sup } = pod(
      { id: 1, generation: 1, dump: await histogramDump([1, 2], [1.5, 1.5, 1.5, 1.5, 3]) },
      { id: 2, generation: 2, dump: await histogramDump([1, 5], [0.5, 9, 9]) },
    );
    const { log } = memoryLog();
    const { body } = await new SupervisorMetrics(sup).render(sup, log);
    expectValidExposition(body);
    const served = buckets(body);
    const values = served.map(([, v]) => v);
    expect(values).toEqual([...values].sort((a, b) => a - b)); // cumulative: never decreasing
    expect(served.at(-1)).toEqual(['+Inf', 8]);
    expect(Object.fromEntries(served)).toMatchObject({ '1': 1, '2': 5, '5': 5 });
    expect(body).toMatch(/^app_latency_seconds_count 8$/m);
  });

  it("serves the newest generation's type when a metric changed type, and logs the mismatch", async () => {
    const registry = new Registry();
    new Gauge({ name: 'app_jobs_total', help: 'now a gauge', registers: [registry] }).set(10);
    const { sup } = pod(
      { id: 1, generation: 1, dump: await counterDump('app_jobs_total', 2) },
      { id: 2, generation: 2, dump: await registry.getMetricsAsJSON() },
    );
    const { log, logs } = memoryLog();
    const { body } = await new SupervisorMetrics(sup).render(sup, log);
    expectValidExposition(body);
    expect(body).toMatch(/^# TYPE app_jobs_total gauge$/m);
    expect(body).toMatch(/^app_jobs_total 10$/m);
    expect(logs.some((l) => l.code === 'HYP_E_METRICS_MISMATCH')).toBe(true);
  });
});

describe('pod /metrics of a real supervisor', () => {
  let sup: Running | undefined;
  afterEach(async () => {
    await sup?.stop();
    sup = undefined;
  });

  const get = async (path: string) => {
    const res = await fetch(`http://127.0.0.1:${sup!.httpPort}${path}`);
    expect(res.status).toBe(200);
    await res.text();
  };
  const scrape = async () => {
    const res = await sup!.admin('/metrics');
    expect(res.status).toBe(200);
    return res.text();
  };

  it('a worker killed with SIGKILL: the pod counters go on from what it had counted', async () => {
    sup = await startSupervisor({ app: fixtureApp('metrics-throws'), workers: 1 });
    const [first] = (await sup.status()).workers;
    for (let i = 0; i < 3; i++) await get('/api/worker');
    // Requests are counted when their response closes, a tick after the client has the body.
    const before = await until(async () => {
      const text = await scrape();
      return (
        /^hyp_http_requests_total\{method="GET",route="\/api\/worker",status="200"\} 3$/m.test(text) && text
      );
    }, 'three requests counted');
    expect(before).toMatch(/^app_jobs_total 3$/m);
    process.kill(first!.pid, 'SIGKILL');
    await sup.waitFor(
      (s) => s.workers.length === 1 && s.workers[0]!.pid !== first!.pid && s.workers[0]!.state === 'ready',
      'a replacement',
    );
    await get('/api/worker');
    const served = /^hyp_http_requests_total\{method="GET",route="\/api\/worker",status="200"\} (\d+)$/m;
    const after = await until(async () => {
      const text = await scrape();
      const n = served.exec(text)?.[1];
      return n !== undefined && n !== '3' && text; // 3: the new worker's request not counted yet
    }, "the new worker's request counted");
    expectValidExposition(after);
    expect(after).toMatch(/^app_jobs_total 4$/m);
    expect(after).toMatch(/^hyp_http_requests_total\{method="GET",route="\/api\/worker",status="200"\} 4$/m);
    expect(after).not.toContain(`worker_id="${first!.id}"`);
  });

  it('a label explosion is left out by the worker itself, so PID 1 never decodes it', async () => {
    sup = await startSupervisor({ app: fixtureApp('metrics-explode'), workers: 1 });
    for (let scrape_ = 0; scrape_ < 2; scrape_++) {
      const text = await scrape();
      expect(text).toMatch(/^app_jobs_total 1$/m);
      expect(text).not.toContain('app_by_user');
    }
    const refused = sup.logs.filter((l) => l.code === 'HYP_E_METRICS_TOO_MANY');
    // Once, by the worker: the supervisor never received the family.
    expect(refused.map((l) => [l.role, l.metric, l.series])).toEqual([
      ['worker', 'app_by_user', maxSeriesPerWorker + 1],
    ]);
  });

  it('an app metric with a hostile shape leaves the scrape valid and the other metrics served', async () => {
    sup = await startSupervisor({ app: fixtureApp('metrics-hostile'), workers: 2 });
    await get('/count');
    const text = await scrape();
    expectValidExposition(text);
    expect(text).toMatch(/^app_jobs_total 1$/m);
    expect(text).toMatch(/^hyp_supervisor_generation 1$/m);
    expect(text).toContain('app_paths_total{path="/a\\"b\\\\c\\nd"} 2');
    await sup.waitLog(
      (l) => l.code === 'HYP_E_METRICS_INVALID' && String(l.msg).includes('app_custom'),
      'the custom metric refused',
    );
  });
});
