/**
 * The pod's /metrics merges every worker's registry dump. One worker whose
 * dump is malformed (or clashes with the others) is left out; the scrape
 * still carries the supervisor's metrics and every other worker's.
 */
import { Counter, Registry } from 'prom-client';
import { describe, expect, it } from 'vitest';
import { PodHistory } from '../../supervisor/history.js';
import { SupervisorMetrics } from '../../supervisor/metrics.js';
import type { Supervisor } from '../../supervisor/supervisor.js';

async function dumpOf(value: number, type: 'counter' | 'gauge' = 'counter'): Promise<unknown[]> {
  const registry = new Registry();
  const metric =
    type === 'counter'
      ? new Counter({ name: 'app_jobs_total', help: 'jobs', registers: [registry] })
      : new Counter({ name: 'app_other_total', help: 'other', registers: [registry] });
  metric.inc(value);
  return registry.getMetricsAsJSON();
}

function podWith(dumps: unknown[][]): Supervisor {
  const workers = new Map(dumps.map((dump, i) => [i + 1, { state: 'ready', metrics: async () => dump }]));
  return {
    workers,
    generation: 1,
    state: 'ready',
    drainStartedAt: undefined,
    history: new PodHistory({ size: 1 }),
  } as unknown as Supervisor;
}

describe('pod /metrics aggregation', () => {
  it('sums the workers that send prom-client dumps and leaves out one that sends garbage', async () => {
    const garbage = [{ name: 'app_jobs_total', type: 'counter', values: 'not an array' }];
    const sup = podWith([await dumpOf(2), garbage as unknown[], await dumpOf(3), [null] as unknown[]]);
    const { body } = await new SupervisorMetrics(sup).render(sup);
    expect(body).toMatch(/^app_jobs_total 5$/m);
    expect(body).toMatch(/^hyp_supervisor_generation 1$/m);
  });

  it('leaves out a dump that cannot be merged with the others', async () => {
    const good = await dumpOf(4);
    // prom-client throws on an aggregator it does not know
    const clash = (await dumpOf(1)).map((m) => ({ ...(m as object), aggregator: 'no-such-aggregator' }));
    const sup = podWith([clash, good]); // prom-client reads the aggregator from the first dump
    const { body } = await new SupervisorMetrics(sup).render(sup);
    expect(body).toMatch(/^app_jobs_total 4$/m);
  });
});
