import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import type { CodecName } from './codecs/index.js';
import type { SecurityFailure } from './security.js';

/**
 * The hub's Prometheus metrics, registered on the registry the worker
 * passes in (a private one otherwise, so two hubs never collide on the
 * global default registry). Label values are bounded: codec names, the
 * fixed failure reasons and drop reasons. Hubs on one registry (an app
 * with hubs on several paths) share one set: the figures are the worker's.
 */
export type DropReason = 'slow_consumer' | 'closed';

const shared = new WeakMap<Registry, WsMetrics>();

/** The metrics on `registry`, created on first use; a private registry when none is given. */
export function wsMetricsOn(registry?: Registry): WsMetrics {
  if (registry === undefined) return new WsMetrics();
  let metrics = shared.get(registry);
  if (metrics === undefined || registry.getSingleMetric('hyp_ws_connections') !== metrics.connections) {
    metrics = new WsMetrics(registry);
    shared.set(registry, metrics);
  }
  return metrics;
}

export class WsMetrics {
  readonly registry: Registry;
  readonly connections: Gauge<'codec'>;
  readonly messages: Counter<'codec' | 'direction'>;
  readonly bytes: Counter<'codec' | 'direction'>;
  readonly securityFailures: Counter<'reason'>;
  readonly dropped: Counter<'reason'>;
  readonly fanoutSeconds: Histogram<'scope'>;

  constructor(registry: Registry = new Registry(), prefix = 'hyp_ws_') {
    this.registry = registry;
    const registers = [registry];
    this.connections = new Gauge({
      name: `${prefix}connections`,
      help: 'Open WebSocket connections by codec',
      labelNames: ['codec'],
      registers,
    });
    this.messages = new Counter({
      name: `${prefix}messages_total`,
      help: 'WebSocket messages by codec and direction (in, out)',
      labelNames: ['codec', 'direction'],
      registers,
    });
    this.bytes = new Counter({
      name: `${prefix}bytes_total`,
      help: 'WebSocket payload bytes by codec and direction (in, out)',
      labelNames: ['codec', 'direction'],
      registers,
    });
    this.securityFailures = new Counter({
      name: `${prefix}security_failures_total`,
      help: 'Incoming frames refused, by reason (decrypt, signature, key_id, replay, decode)',
      labelNames: ['reason'],
      registers,
    });
    this.dropped = new Counter({
      name: `${prefix}dropped_messages_total`,
      help: 'Outgoing messages not sent, by reason (slow_consumer, closed)',
      labelNames: ['reason'],
      registers,
    });
    this.fanoutSeconds = new Histogram({
      name: `${prefix}fanout_seconds`,
      help: 'Time to serialize, seal and enqueue one delivery to all local recipients',
      labelNames: ['scope'],
      buckets: [0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1],
      registers,
    });
  }

  countIn(codec: CodecName, bytes: number): void {
    this.messages.inc({ codec, direction: 'in' });
    this.bytes.inc({ codec, direction: 'in' }, bytes);
  }

  /** One call per codec per fan-out, not per recipient: counters are not free. */
  countOut(codec: CodecName, messages: number, bytes: number): void {
    if (messages === 0) return;
    this.messages.inc({ codec, direction: 'out' }, messages);
    this.bytes.inc({ codec, direction: 'out' }, bytes);
  }

  securityFailure(reason: SecurityFailure): void {
    this.securityFailures.inc({ reason });
  }
}
