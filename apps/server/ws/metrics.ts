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

/**
 * Why a node's part of presence was repaired: it went silent for the
 * liveness window (`silence`), announced it holds nothing while this view
 * listed members of it (`reset`), or its snapshot replaced this view's
 * part of it (`snapshot`).
 */
export type RepairReason = 'silence' | 'reset' | 'snapshot';
const repairReasons: readonly RepairReason[] = ['silence', 'reset', 'snapshot'];

/** What the presence gauges read from one hub at scrape time (nothing is counted per join or leave). */
export interface PresenceFigures {
  /** The other nodes whose room members the hub lists. */
  peerNodes(): Iterable<string>;
  /** (room, client id) memberships the hub lists, every node's. */
  memberships(): number;
}

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
  readonly presenceNodes: Gauge;
  readonly presenceMembers: Gauge;
  readonly presenceRepairs: Counter<'reason'>;
  readonly held: Counter;
  /** The hubs on this registry, read by the presence gauges. */
  private readonly presences = new Set<PresenceFigures>();

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
    const presences = this.presences;
    // Every worker of a pod sees the same nodes and members: a pod's /metrics shows the largest view, not a sum.
    this.presenceNodes = new Gauge({
      name: `${prefix}presence_nodes`,
      help: 'Other nodes (hubs of other workers and pods) whose room members this worker lists',
      aggregator: 'max',
      registers,
      collect() {
        const nodes = new Set<string>();
        for (const p of presences) for (const node of p.peerNodes()) nodes.add(node);
        this.set(nodes.size);
      },
    });
    this.presenceMembers = new Gauge({
      name: `${prefix}presence_members`,
      help: 'Room memberships (room, client id) this worker lists, on every node',
      aggregator: 'max',
      registers,
      collect() {
        let n = 0;
        for (const p of presences) n += p.memberships();
        this.set(n);
      },
    });
    this.presenceRepairs = new Counter({
      name: `${prefix}presence_repairs_total`,
      help: "Repairs of another node's room members, by reason (silence, reset, snapshot)",
      labelNames: ['reason'],
      registers,
    });
    for (const reason of repairReasons) this.presenceRepairs.inc({ reason }, 0);
    this.held = new Counter({
      name: `${prefix}backpressure_pauses_total`,
      help: "Times a client was not read from until this worker's IPC channel to the supervisor drained (it publishes faster than the pod relays)",
      registers,
    });
  }

  /** Lists a hub's presence in the presence gauges until the returned function is called. */
  trackPresence(figures: PresenceFigures): () => void {
    this.presences.add(figures);
    return () => this.presences.delete(figures);
  }

  presenceRepair(reason: RepairReason): void {
    this.presenceRepairs.inc({ reason });
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
