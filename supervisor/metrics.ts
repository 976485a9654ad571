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

  /** Prometheus text for the whole pod. */
  async render(sup: Supervisor): Promise<{ contentType: string; body: string }> {
    const perWorker = await Promise.all([...sup.workers.values()].map((w) => w.metrics()));
    const nonEmpty = perWorker.filter((m) => m.length > 0) as Parameters<
      typeof AggregatorRegistry.aggregate
    >[0];
    const own = await this.registry.metrics();
    const workers = nonEmpty.length ? await AggregatorRegistry.aggregate(nonEmpty).metrics() : '';
    return { contentType: this.registry.contentType, body: `${own}\n${workers}` };
  }
}
