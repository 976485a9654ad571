/**
 * HTTP metrics in the worker's prom-client registry:
 * `hyp_http_requests_total{method,route,status}`,
 * `hyp_http_request_duration_seconds{method,route,status}` and
 * `hyp_http_requests_in_flight`. `route` is the pattern (`/users/:id`) or
 * `(not found)`, never the raw path, so cardinality stays bounded.
 *
 * The request path only bumps numbers in a series object bound once per
 * `{method, route, status}` (prom-client's labelled `inc`/`observe` hash the
 * labels on every call, several times the cost of the rest of a hello-world
 * route). The registry reads the series when it is scraped, in prom-client's
 * own exposition and JSON shapes, so aggregation across workers still works.
 */
import { METHODS } from 'node:http';
import type { Metric, MetricValueWithName, Registry } from 'prom-client';
import { Gauge } from 'prom-client';

type Label = 'method' | 'route' | 'status';

const knownMethods: ReadonlySet<string> = new Set(METHODS);

/**
 * A request method as a label: one Node knows (all HTTP/1.1 can carry), else
 * `_OTHER` (the OpenTelemetry convention). HTTP/2 takes any token as
 * `:method`, so the raw value would let clients add series without bound.
 */
export function methodLabel(method: string): string {
  return knownMethods.has(method) ? method : '_OTHER';
}
type Labels = Record<Label, string>;

const buckets = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

/** The live numbers of one `{method, route, status}`. */
export class HttpSeries {
  count = 0;
  sum = 0;
  /** Per-bucket (not cumulative) counts; the last slot is `+Inf`. */
  readonly hits = new Float64Array(buckets.length + 1);

  constructor(readonly labels: Labels) {}

  record(seconds: number): void {
    this.count++;
    this.sum += seconds;
    let i = 0;
    while (i < buckets.length && seconds > buckets[i]!) i++;
    this.hits[i]!++;
  }

  reset(): void {
    this.count = 0;
    this.sum = 0;
    this.hits.fill(0);
  }
}

export class HttpMetrics {
  /** Requests started and not yet closed. */
  inFlight = 0;
  private readonly all: HttpSeries[] = [];

  constructor(registry: Registry) {
    register(
      registry,
      new SeriesView(
        'hyp_http_requests_total',
        'counter',
        'HTTP requests answered, by method, route pattern and status',
        this.all,
        counterValues,
      ),
    );
    register(
      registry,
      new SeriesView(
        'hyp_http_request_duration_seconds',
        'histogram',
        'HTTP request duration from routing to response close, by method, route pattern and status',
        this.all,
        histogramValues,
      ),
    );
    const metrics = this;
    if (registry.getSingleMetric('hyp_http_requests_in_flight'))
      registry.removeSingleMetric('hyp_http_requests_in_flight');
    new Gauge({
      name: 'hyp_http_requests_in_flight',
      help: 'HTTP requests being handled by this worker',
      registers: [registry],
      collect() {
        this.set(metrics.inFlight);
      },
    });
  }

  /** The series of a label set, by `method route status` (two routes can share one; see `series`). */
  private readonly byLabels = new Map<string, HttpSeries>();

  /**
   * The series of a method, route pattern and status (callers keep it; see
   * Route.series). Two routes with one pattern (an explicit HEAD route
   * added after GET served HEAD) share it: a label set twice in one
   * exposition is invalid.
   */
  series(method: string, route: string, status: number): HttpSeries {
    const key = `${method} ${status} ${route}`;
    let series = this.byLabels.get(key);
    if (series === undefined) {
      series = new HttpSeries({ method, route, status: String(status) });
      this.byLabels.set(key, series);
      this.all.push(series);
    }
    return series;
  }
}

type Values = (name: string, all: readonly HttpSeries[]) => MetricValueWithName<Label | 'le'>[];

/** A read-only metric over the series, shaped like prom-client's own for the registry. */
class SeriesView {
  readonly aggregator = 'sum';
  constructor(
    readonly name: string,
    readonly type: 'counter' | 'histogram',
    readonly help: string,
    private readonly all: HttpSeries[],
    private readonly values: Values,
  ) {}

  /** What prom-client's Registry reads for the text exposition and `getMetricsAsJSON`. */
  async get(): Promise<{
    name: string;
    help: string;
    type: string;
    aggregator: string;
    values: MetricValueWithName<string>[];
  }> {
    return {
      name: this.name,
      help: this.help,
      type: this.type,
      aggregator: this.aggregator,
      values: this.values(this.name, this.all),
    };
  }

  reset(): void {
    for (const s of this.all) s.reset();
  }
}

function counterValues(name: string, all: readonly HttpSeries[]): MetricValueWithName<Label>[] {
  return all.map((s) => ({ labels: { ...s.labels }, value: s.count, metricName: name }));
}

function histogramValues(name: string, all: readonly HttpSeries[]): MetricValueWithName<Label | 'le'>[] {
  const out: MetricValueWithName<Label | 'le'>[] = [];
  for (const s of all) {
    let acc = 0;
    for (let i = 0; i < buckets.length; i++) {
      acc += s.hits[i]!;
      out.push({ labels: { le: buckets[i]!, ...s.labels }, value: acc, metricName: `${name}_bucket` });
    }
    out.push({ labels: { le: '+Inf', ...s.labels }, value: s.count, metricName: `${name}_bucket` });
    out.push({ labels: { ...s.labels }, value: s.sum, metricName: `${name}_sum` });
    out.push({ labels: { ...s.labels }, value: s.count, metricName: `${name}_count` });
  }
  return out;
}

/** Register, replacing a previous app's view of the same name (one registry, several Apps in tests). */
function register(registry: Registry, view: SeriesView): void {
  if (registry.getSingleMetric(view.name)) registry.removeSingleMetric(view.name);
  registry.registerMetric(view as unknown as Metric);
}
