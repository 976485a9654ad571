/**
 * Supervisor metrics, and the pod's /metrics: the supervisor's registry plus
 * every live worker's registry aggregated with prom-client's cluster
 * semantics (counters summed; Node's default metrics carry a worker_id label
 * so they stay per worker).
 */
import { AggregatorRegistry, Counter, Gauge, Registry } from 'prom-client';
import type { Supervisor } from './supervisor.js';

export class SupervisorMetrics {
  readonly registry = new Registry();
  readonly restarts: Counter<'reason'>;
  readonly rollFailures: Counter;
  readonly reloadFailures: Counter;
  readonly drainSeconds: Gauge;

  constructor(sup: Supervisor) {
    const registers = [this.registry];
    new Gauge({
      name: 'hyp_supervisor_workers',
      help: 'Worker processes by state',
      labelNames: ['state'],
      registers,
      collect() {
        const counts = { spawning: 0, ready: 0, draining: 0 };
        for (const w of sup.workers.values()) if (w.state !== 'exited') counts[w.state]++;
        for (const [state, n] of Object.entries(counts)) this.set({ state }, n);
      },
    });
    this.restarts = new Counter({
      name: 'hyp_supervisor_worker_restarts_total',
      help: 'Workers replaced, by reason (crash, heartbeat, start-failed, rolling, ready, uncaught)',
      labelNames: ['reason'],
      registers,
    });
    new Gauge({
      name: 'hyp_supervisor_ws_history_channels',
      help: 'Channels in the pod-wide WebSocket history',
      registers,
      collect() {
        this.set(sup.history.channels);
      },
    });
    new Gauge({
      name: 'hyp_supervisor_ws_history_evictions',
      help: 'Channels evicted from the pod-wide WebSocket history (least recently published first)',
      registers,
      collect() {
        this.set(sup.history.evictions);
      },
    });
    new Gauge({
      name: 'hyp_supervisor_ws_history_bytes',
      help: 'Payload bytes held by the pod-wide WebSocket history (bounded by websocket.history_bytes)',
      registers,
      collect() {
        this.set(sup.history.bytes);
      },
    });
    new Gauge({
      name: 'hyp_supervisor_ws_history_dropped',
      help: 'Messages dropped from the pod-wide WebSocket history to stay within websocket.history_bytes',
      registers,
      collect() {
        this.set(sup.history.dropped);
      },
    });
    new Gauge({
      name: 'hyp_supervisor_generation',
      help: 'Current worker generation',
      registers,
      collect() {
        this.set(sup.generation);
      },
    });
    new Gauge({
      name: 'hyp_supervisor_draining',
      help: '1 while the pod drains',
      registers,
      collect() {
        this.set(sup.state === 'draining' ? 1 : 0);
      },
    });
    this.drainSeconds = new Gauge({
      name: 'hyp_supervisor_drain_duration_seconds',
      help: 'Duration of the pod drain (so far, while draining)',
      registers,
      collect() {
        if (sup.state === 'draining' && sup.drainStartedAt)
          this.set((Date.now() - sup.drainStartedAt) / 1000);
      },
    });
    this.rollFailures = new Counter({
      name: 'hyp_supervisor_generation_failures_total',
      help: 'Rolling restarts aborted because the new generation did not get ready',
      registers,
    });
    this.reloadFailures = new Counter({
      name: 'hyp_supervisor_config_reload_failures_total',
      help: 'SIGHUP reloads refused because the new config is invalid',
      registers,
    });
  }

  /**
   * Prometheus text for the whole pod. A worker whose registry dump is not
   * prom-client's JSON shape, or cannot be merged, is left out of the scrape
   * rather than failing it for every worker.
   */
  async render(sup: Pick<Supervisor, 'workers'>): Promise<{ contentType: string; body: string }> {
    const perWorker = await Promise.all([...sup.workers.values()].map((w) => w.metrics()));
    const dumps = perWorker.filter(isMetricsDump);
    const own = await this.registry.metrics();
    return { contentType: this.registry.contentType, body: `${own}\n${await aggregate(dumps)}` };
  }
}

type MetricsDump = Parameters<typeof AggregatorRegistry.aggregate>[0][number];

/** prom-client's `getMetricsAsJSON()` shape, as far as aggregation reads it. */
function isMetricsDump(dump: unknown): dump is MetricsDump {
  if (!Array.isArray(dump) || dump.length === 0) return false;
  return dump.every((m: unknown) => {
    if (typeof m !== 'object' || m === null) return false;
    const { name, type, values } = m as Record<string, unknown>;
    return (
      typeof name === 'string' &&
      typeof type === 'string' &&
      Array.isArray(values) &&
      values.every(
        (v: unknown) =>
          typeof v === 'object' &&
          v !== null &&
          typeof (v as { value?: unknown }).value === 'number' &&
          typeof ((v as { labels?: unknown }).labels ?? {}) === 'object',
      )
    );
  });
}

/** All dumps merged; if they cannot be, those that merge on their own. */
async function aggregate(dumps: MetricsDump[]): Promise<string> {
  if (dumps.length === 0) return '';
  try {
    return await AggregatorRegistry.aggregate(dumps).metrics();
  } catch {
    const usable: MetricsDump[] = [];
    for (const dump of dumps) {
      try {
        await AggregatorRegistry.aggregate([...usable, dump]).metrics();
        usable.push(dump);
      } catch {}
    }
    return usable.length ? AggregatorRegistry.aggregate(usable).metrics() : '';
  }
}
