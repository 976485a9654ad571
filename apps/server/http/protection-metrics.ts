/**
 * What the HTTP listener's protections refuse, in the worker's registry
 * (summed across workers by the supervisor's /metrics):
 * - `hyp_http_connections_refused_total{reason}`: connections closed at
 *   accept; reason `max_connections` (`server.limits.max_connections`, the
 *   listener's `maxConnections`: Node closes them and emits 'drop'). A
 *   warning, at most one per 10 s per listener, says how many since the last;
 * - `hyp_http_client_errors_total{protocol,code}`: requests (HTTP/1.1) or
 *   sessions (HTTP/2) refused for what the peer sent or did not send in
 *   time, by the stable code of the refusal (catalog codes only, so the
 *   series are bounded). Connections that died underneath are not counted.
 *
 * Only refusals touch these; a request served normally never does.
 */
import type { Server as NetServer } from 'node:net';
import { Counter, type Registry } from 'prom-client';
import type { ErrorCode } from '../../../supervisor/errors.js';
import type { Logger } from '../../../supervisor/log.js';

export type ClientErrorProtocol = 'http1' | 'http2';

/** At most one max_connections warning per listener this often. */
const warnEveryMs = 10_000;

export class HttpProtectionMetrics {
  private readonly refused: Counter<'reason'> | undefined;
  private readonly clientErrors: Counter<'protocol' | 'code'> | undefined;
  /** Refusals since the last warning, and when that was (ms since epoch). */
  private droppedSinceWarn = 0;
  private warnedAt = 0;

  constructor(
    registry: Registry | undefined,
    private readonly log: Logger | undefined,
  ) {
    this.refused = registry && refusedCounter(registry);
    this.clientErrors = registry && clientErrorCounter(registry);
  }

  /** Count the connections `listener` drops at `maxConnections` (`limit`), and warn. */
  watchDrops(listener: NetServer, limit: number): void {
    listener.on('drop', () => this.dropped(limit));
  }

  /** A request or session refused for what the peer sent: `code` from the error catalog. */
  clientError(protocol: ClientErrorProtocol, code: ErrorCode): void {
    this.clientErrors?.inc({ protocol, code });
  }

  private dropped(limit: number): void {
    this.refused?.inc({ reason: 'max_connections' });
    this.droppedSinceWarn++;
    const now = Date.now();
    if (now - this.warnedAt < warnEveryMs) return;
    this.warnedAt = now;
    const dropped = this.droppedSinceWarn;
    this.droppedSinceWarn = 0;
    this.log?.warn(
      { reason: 'max_connections', dropped, max_connections: limit },
      `HTTP connections over server.limits.max_connections (${limit}) closed at accept: ${dropped} since the last warning`,
    );
  }
}

function refusedCounter(registry: Registry): Counter<'reason'> {
  const name = 'hyp_http_connections_refused_total';
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<'reason'>;
  const counter = new Counter({
    name,
    help: 'HTTP connections closed at accept without being served, by reason (max_connections: over server.limits.max_connections)',
    labelNames: ['reason'],
    registers: [registry],
  });
  // Served from 0, so the series exists before the first refusal.
  counter.inc({ reason: 'max_connections' }, 0);
  return counter;
}

function clientErrorCounter(registry: Registry): Counter<'protocol' | 'code'> {
  const name = 'hyp_http_client_errors_total';
  const existing = registry.getSingleMetric(name);
  if (existing) return existing as Counter<'protocol' | 'code'>;
  return new Counter({
    name,
    help: 'HTTP/1.1 requests refused by the parser or its timeouts (answered 400/408/413/431, or closed when pipelined behind an answer) and HTTP/2 sessions ended for what the peer sent (floods, protocol errors), by protocol and error code; connections reset by the peer are not counted',
    labelNames: ['protocol', 'code'],
    registers: [registry],
  });
}
