/**
 * Prometheus metrics of the TCP services. The data path only bumps plain
 * numbers in a per-service `TcpStats`; the prom-client metrics read them at
 * scrape time, so a chunk read or written costs an addition, not a label
 * lookup.
 */
import { Counter, Gauge, type Registry } from 'prom-client';

export type RefuseReason = 'max_connections' | 'rate_limit' | 'draining';

export class TcpStats {
  open = 0;
  accepted = 0;
  refusedMaxConnections = 0;
  refusedRateLimit = 0;
  refusedDraining = 0;
  bytesIn = 0;
  bytesOut = 0;
  errors = 0;
  idleCloses = 0;
  /** Connections failed because a write found more than `max_buffered` bytes queued. */
  sendBufferCloses = 0;
  /** Handler failures caused by the peer resetting or leaving (logged at debug, not in `errors`). */
  handlerPeerGone = 0;

  constructor(readonly service: string) {}

  refused(reason: RefuseReason): void {
    if (reason === 'max_connections') this.refusedMaxConnections++;
    else if (reason === 'rate_limit') this.refusedRateLimit++;
    else this.refusedDraining++;
  }
}

/** The metric families of one registry; services of the same worker share them. */
class TcpMetrics {
  readonly services = new Set<TcpStats>();

  constructor(registry: Registry) {
    const services = this.services;
    const registers = [registry];
    new Gauge({
      name: 'hyp_tcp_connections',
      help: 'Open connections of each TCP service',
      labelNames: ['service'],
      registers,
      collect() {
        for (const s of services) this.set({ service: s.service }, s.open);
      },
    });
    const counter = (name: string, help: string, read: (s: TcpStats) => number) =>
      new Counter({
        name,
        help,
        labelNames: ['service'],
        registers,
        collect() {
          this.reset();
          for (const s of services) this.inc({ service: s.service }, read(s));
        },
      });
    counter(
      'hyp_tcp_connections_accepted_total',
      'Connections accepted and handed to the handler',
      (s) => s.accepted,
    );
    counter('hyp_tcp_received_bytes_total', 'Bytes read from TCP connections', (s) => s.bytesIn);
    counter('hyp_tcp_sent_bytes_total', 'Bytes written to TCP connections', (s) => s.bytesOut);
    counter('hyp_tcp_errors_total', 'Errors reported by TCP services and connections', (s) => s.errors);
    counter('hyp_tcp_idle_closes_total', 'Connections closed by the idle sweeper', (s) => s.idleCloses);
    counter(
      'hyp_tcp_send_buffer_closes_total',
      'Connections closed because a write found more than max_buffered bytes not yet sent',
      (s) => s.sendBufferCloses,
    );
    counter(
      'hyp_tcp_handler_peer_gone_total',
      'Handler failures caused by the peer resetting or leaving the connection (logged at debug, not in hyp_tcp_errors_total)',
      (s) => s.handlerPeerGone,
    );
    new Counter({
      name: 'hyp_tcp_connections_refused_total',
      help: 'Connections closed at accept: max_connections, rate_limit or draining',
      labelNames: ['service', 'reason'],
      registers,
      collect() {
        this.reset();
        for (const s of services) {
          this.inc({ service: s.service, reason: 'max_connections' }, s.refusedMaxConnections);
          this.inc({ service: s.service, reason: 'rate_limit' }, s.refusedRateLimit);
          this.inc({ service: s.service, reason: 'draining' }, s.refusedDraining);
        }
      },
    });
  }
}

const byRegistry = new WeakMap<Registry, TcpMetrics>();

/** Attach `stats` to the TCP metric families of `registry` (created on first use). */
export function registerTcpStats(registry: Registry, stats: TcpStats): () => void {
  let metrics = byRegistry.get(registry);
  if (metrics === undefined) {
    metrics = new TcpMetrics(registry);
    byRegistry.set(registry, metrics);
  }
  const set = metrics.services;
  set.add(stats);
  return () => set.delete(stats);
}
