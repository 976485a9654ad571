/**
 * Supervisor metrics, and the pod's /metrics: the supervisor's registry plus
 * every live worker's registry aggregated with prom-client's cluster
 * semantics (each family's aggregator, `sum` by default; Node's default
 * metrics carry a worker_id label so they stay per worker).
 *
 * Worker dumps are application data: each family is checked before it is
 * served (a name, label or type Prometheus cannot parse would fail the
 * whole scrape), a worker sends at most `maxSeriesPerWorker` series, and the
 * counts of a worker that exits stay in the pod's counters, so a worker
 * restart is not a counter reset.
 */
import { Counter, Gauge, type Metric, Registry } from 'prom-client';
import { type ErrorCode, HypError } from './errors.js';
import type { Logger } from './log.js';
import type { Supervisor } from './supervisor.js';

/**
 * Series (samples: each histogram bucket, sum and count is one) one worker
 * may contribute to a scrape, and the most the pod keeps for exited
 * workers' counters. About 10 MB of text; the families that take a worker
 * past it are left out, largest first.
 */
export const maxSeriesPerWorker = 100_000;

/** The `reason` labels of hyp_supervisor_worker_restarts_total (supervisor.ts counts them). */
export const restartReasons = ['crash', 'heartbeat', 'start-failed', 'rolling', 'ready', 'uncaught', 'relay'];

/** The `reason` labels of hyp_admin_connections_shed_total (admin.ts counts them; README, admin endpoints). */
export const adminShedReasons = ['cap', 'ceiling', 'stalled', 'pipelined', 'budget'] as const;
export type AdminShedReason = (typeof adminShedReasons)[number];

/**
 * How long after a rendering of the workers' metrics finished a scrape is
 * served that rendering (the supervisor's own metrics are always fresh).
 * Prometheus scrapes every 15-60 s, from one or two replicas: each of those
 * is a fresh rendering; a burst of scrapes costs one.
 */
export const metricsReuseMs = 1000;

/** The workers' part of /metrics as rendered once: when it finished, and for which workers in which states. */
interface WorkersPart {
  body: Buffer;
  at: number;
  workers: string;
}

/** The live workers and their states: a rendering is not reused once a worker is spawned, drains or exits. */
function workersKey(sup: Pick<Supervisor, 'workers'>): string {
  let key = '';
  for (const [id, w] of sup.workers) key += `${id}:${(w as { state?: string }).state ?? ''} `;
  return key;
}

export class SupervisorMetrics {
  readonly registry = new Registry();
  readonly restarts: Counter<'reason'>;
  readonly rollFailures: Counter;
  readonly reloadFailures: Counter;
  readonly drainSeconds: Gauge;
  readonly endpointsLeftSeconds: Gauge<'service'>;
  readonly endpointsStillListed: Counter<'service'>;
  readonly relayBacklogs: Counter;
  readonly relayCutoffs: Counter;
  readonly adminShed: Counter<'reason'>;

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
      help: 'Workers replaced, by reason (crash, heartbeat, start-failed, rolling, ready, uncaught, relay)',
      labelNames: ['reason'],
      registers,
    });
    // Every reason from 0: a series that first appears at 1 is no increase to
    // Prometheus, so an alert on increase(...{reason="crash"}[5m]) would miss
    // a pod's first crash.
    for (const reason of restartReasons) this.restarts.inc({ reason }, 0);
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
    this.relayBacklogs = new Counter({
      name: 'hyp_supervisor_ws_relay_backlogs_total',
      help: "Times a worker's IPC channel backed up (it read relayed messages slower than the pod published); the other workers held their publishing clients until it caught up",
      registers,
    });
    this.relayCutoffs = new Counter({
      name: 'hyp_supervisor_ws_relay_cutoffs_total',
      help: 'Workers the relay gave up on (backed up and reading nothing for heartbeat_timeout, or 32 MiB waiting): killed and replaced (HYP_E_WORKER_RELAY_STALLED)',
      registers,
    });
    new Gauge({
      name: 'hyp_supervisor_ws_relay_backlog_bytes',
      help: 'Estimated bytes of relayed messages waiting in the supervisor for workers to read them',
      registers,
      collect() {
        let bytes = 0;
        for (const w of sup.workers.values()) bytes += w.backlog?.bytes ?? 0;
        this.set(bytes);
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
    this.endpointsLeftSeconds = new Gauge({
      name: 'hyp_supervisor_drain_endpoints_left_seconds',
      help: "Seconds from the pod drain's start to the pod leaving its Service's EndpointSlices (0: it had left before); absent until it has (drain.endpoints.service)",
      labelNames: ['service'],
      registers,
    });
    this.endpointsStillListed = new Counter({
      name: 'hyp_supervisor_drain_endpoints_still_listed_total',
      help: "Pod drains whose drain.delay ran out with the pod still ready in its Service's EndpointSlices (HYP_W_DRAIN_ENDPOINTS)",
      labelNames: ['service'],
      registers,
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
    this.adminShed = new Counter({
      name: 'hyp_admin_connections_shed_total',
      help: 'Admin server connections it closed, by reason: cap (over 256 open, oldest not being answered), ceiling (at 512 open, closed at accept), stalled (an answer the peer did not read for 10 s), pipelined (over 4 requests waiting for answers), budget (answers unread by their peers holding over 64 MiB: the oldest)',
      labelNames: ['reason'],
      registers,
    });
    for (const reason of adminShedReasons) this.adminShed.inc({ reason }, 0);
  }

  /**
   * Prometheus text for the whole pod. What one worker sends wrong (a
   * malformed family, a label explosion, a type other workers disagree
   * with) is left out and logged (HYP_E_METRICS_INVALID, _TOO_MANY,
   * _MISMATCH: once, until it is gone for a scrape); the rest is served.
   * The workers are asked afresh (or a rendering under way is shared).
   */
  async render(
    sup: Pick<Supervisor, 'workers'>,
    log?: Logger,
  ): Promise<{ contentType: string; body: string }> {
    const workers = await this.workersPart(sup, log, 0);
    return {
      contentType: this.registry.contentType,
      body: `${await this.registry.metrics()}\n${workers.body}`,
    };
  }

  /**
   * What GET /metrics serves: the supervisor's own registry, always fresh
   * (a few KB), and the workers' part as a Buffer that scrapes share. A
   * scrape within `metricsReuseMs` after a rendering of the workers
   * finished, with the same workers in the same states, is served that
   * rendering: a burst of scrapes (a client looping on /metrics, or
   * connections opened one after another that never read) costs one ask of
   * every worker and one body, not one each.
   */
  async scrape(
    sup: Pick<Supervisor, 'workers'>,
    log?: Logger,
  ): Promise<{ contentType: string; own: string; workers: Buffer }> {
    const workers = await this.workersPart(sup, log, metricsReuseMs);
    return {
      contentType: this.registry.contentType,
      own: `${await this.registry.metrics()}\n`,
      workers: workers.body,
    };
  }

  private workersPart(
    sup: Pick<Supervisor, 'workers'>,
    log: Logger | undefined,
    reuseMs: number,
  ): Promise<WorkersPart> {
    // Scrapes that arrive while one runs share it: each would otherwise hold
    // every worker's decoded dump at once (a client looping on /metrics could
    // multiply the supervisor's memory), and ask busy workers again.
    if (this.rendering) return this.rendering;
    const last = this.lastRendered;
    if (
      last !== undefined &&
      reuseMs > 0 &&
      performance.now() - last.at < reuseMs &&
      last.workers === workersKey(sup)
    )
      return Promise.resolve(last);
    const rendering = this.renderWorkers(sup, log);
    this.rendering = rendering;
    const done = () => {
      if (this.rendering === rendering) this.rendering = undefined;
    };
    rendering.then((part) => {
      done();
      this.lastRendered = part;
      // Not held past its window: an idle pod keeps no copy of its last scrape.
      clearTimeout(this.forgetTimer);
      this.forgetTimer = setTimeout(() => {
        if (this.lastRendered === part) this.lastRendered = undefined;
      }, metricsReuseMs).unref();
    }, done);
    return rendering;
  }

  private rendering: Promise<WorkersPart> | undefined;
  /** The last rendering of the workers' part, for scrapes within `metricsReuseMs` of it. */
  private lastRendered: WorkersPart | undefined;
  private forgetTimer: NodeJS.Timeout | undefined;

  private async renderWorkers(sup: Pick<Supervisor, 'workers'>, log?: Logger): Promise<WorkersPart> {
    const asked = [...sup.workers];
    const workers = workersKey(sup);
    const ask = ++this.asks;
    const replies = await Promise.all(asked.map(([, w]) => w.metrics()));
    const ownNames = new Set(this.registry.getMetricsAsArray().map((m) => m.name));
    // what a retirement at a worker's exit found is reported with this scrape
    const problems = this.exitProblems;
    this.exitProblems = new Problems();
    const dumps: Dump[] = [];
    asked.forEach(([id, w], i) => {
      const families = familiesOf(replies[i], id, ownNames, problems);
      const generation = w.generation ?? 0;
      if (families.length > 0) this.keep(id, ask, { generation, families: families.filter(isCount) });
      // One that exited since it was asked (a drained or killed worker: the
      // scrape waited for its reply) is served only as retired, below; served
      // here too, its counts were in this scrape twice, and the pod's
      // counters fell back at the next one.
      if (!sup.workers.has(id)) return;
      if (families.length > 0) dumps.push({ generation, families });
      else {
        // No answer in time: its counts of the last scrape keep the pod's counters from dipping.
        const last = this.lastCounts.get(id);
        if (last) dumps.push(last);
      }
    });
    this.retireExited(sup, problems);
    if (this.retired.size > 0) dumps.push({ generation: -1, families: [...this.retired.values()] });
    const merged = merge(dumps, problems);
    problems.report(this, log);
    return { body: Buffer.from(await exposition(merged)), at: performance.now(), workers };
  }

  /**
   * Take a worker's counts now, because it is about to drain: what it
   * counted since the last scrape would otherwise go with it (a drained
   * worker is often gone before the next scrape). Asked right after the
   * drain message, a worker answers with its counts at the drain's start;
   * only requests it finishes while draining can still be lost.
   */
  async keepCounts(
    sup: Pick<Supervisor, 'workers'>,
    worker: { id: number; generation?: number; metrics(timeoutMs?: number): Promise<unknown[]> },
  ): Promise<void> {
    const ask = ++this.asks;
    const reply = await worker.metrics();
    // Gone already: its exit (or a scrape) has retired the counts kept for it.
    if (!sup.workers.has(worker.id)) return;
    const ownNames = new Set(this.registry.getMetricsAsArray().map((m) => m.name));
    const families = familiesOf(reply, worker.id, ownNames, new Problems());
    if (families.length === 0) return;
    this.keep(worker.id, ask, { generation: worker.generation ?? 0, families: families.filter(isCount) });
  }

  /**
   * A worker has exited: the counts kept for it (its last scrape's, or
   * keepCounts' at its drain) join the pod's retired counts now. Left for the
   * next scrape, a pod that nobody scrapes kept one dump per drained or
   * crashed worker for its whole life. A scrape under way retires them
   * itself once it has its replies (one that asked the worker may still
   * bring its latest counts); retiring them here too would count them twice.
   */
  workerExited(sup: Pick<Supervisor, 'workers'>): void {
    if (this.rendering !== undefined) return;
    this.retireExited(sup, this.exitProblems);
  }

  /** Move the kept counts of every worker that is gone into the retired counts. */
  private retireExited(sup: Pick<Supervisor, 'workers'>, problems: Problems): void {
    for (const [id, last] of this.lastCounts) {
      if (sup.workers.has(id)) continue;
      this.lastCounts.delete(id);
      this.retire(id, last.families, problems);
    }
  }

  /** Problems a retirement at a worker's exit found, logged with the next scrape's. */
  private exitProblems = new Problems();

  /** Asks for worker dumps so far: a reply to an earlier ask never replaces a later one's counts. */
  private asks = 0;

  private keep(id: number, ask: number, counts: Dump): void {
    const kept = this.lastCounts.get(id);
    if (kept !== undefined && kept.ask > ask) return;
    this.lastCounts.set(id, { ...counts, ask });
  }

  /** Counts of the last scrape (or keepCounts), per live worker (counters and histograms only). */
  private readonly lastCounts = new Map<number, Dump & { ask: number }>();
  /** What exited workers had counted, by family name. */
  private readonly retired = new Map<string, Family>();
  private retiredSeries = 0;
  /** @internal Problems logged and still present at the last scrape (they are not logged again). */
  reported = new Set<string>();

  /** Add an exited worker's counts to the pod's (its own worker_id series end with it). */
  private retire(id: number, families: Family[], problems: Problems): void {
    const own = String(id);
    for (const family of families) {
      const values = family.values.filter((v) => v.labels.worker_id !== own);
      if (values.length === 0) continue;
      const before = this.retired.get(family.name);
      const next =
        before === undefined || before.type !== family.type
          ? { ...family, values }
          : sumFamilies([before, { ...family, values }]);
      const grown = this.retiredSeries - (before?.values.length ?? 0) + next.values.length;
      if (grown > maxSeriesPerWorker) {
        problems.add('HYP_E_METRICS_TOO_MANY', family.name, {
          worker: 'exited',
          series: grown,
          limit: maxSeriesPerWorker,
        });
        continue;
      }
      this.retiredSeries = grown;
      this.retired.set(family.name, next);
    }
  }
}

type FamilyType = 'counter' | 'gauge' | 'histogram' | 'summary' | 'untyped';
type AggregatorName = 'sum' | 'first' | 'min' | 'max' | 'average' | 'omit';

interface Sample {
  labels: Record<string, string>;
  value: number;
  metricName: string;
}

/** One metric family of one worker, checked (prom-client's JSON shape, label values as strings). */
interface Family {
  name: string;
  help: string;
  type: FamilyType;
  aggregator: AggregatorName;
  values: Sample[];
}

interface Dump {
  generation: number;
  families: Family[];
}

const familyTypes: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary', 'untyped']);
const aggregators: Record<Exclude<AggregatorName, 'omit'>, (values: number[]) => number> = {
  sum: (v) => v.reduce((a, b) => a + b, 0),
  first: (v) => v[0]!,
  min: (v) => Math.min(...v),
  max: (v) => Math.max(...v),
  average: (v) => v.reduce((a, b) => a + b, 0) / v.length,
};
const metricNamePattern = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const labelNamePattern = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** Problems of one scrape, logged after it unless they were already there at the scrape before. */
class Problems {
  private readonly found = new Map<
    string,
    { code: ErrorCode; name: string; fields: Record<string, string | number> }
  >();

  add(code: ErrorCode, name: string, fields: Record<string, string | number>): void {
    const shown = name.length > 200 ? `${name.slice(0, 200)}…` : name;
    const key = `${code} ${shown}`;
    if (!this.found.has(key)) this.found.set(key, { code, name: shown, fields });
  }

  report(owner: { reported: Set<string> }, log: Logger | undefined): void {
    let logged = 0;
    for (const [key, { code, name, fields }] of this.found) {
      if (owner.reported.has(key) || !log) continue;
      // A worker sending thousands of bad families gets a few lines, not thousands.
      if (++logged > 20) break;
      const err = new HypError(code, { name, ...fields });
      const line = { code, metric: name, ...fields };
      if (code === 'HYP_E_METRICS_MISMATCH') log.warn(line, err.message);
      else log.error(line, err.message);
    }
    owner.reported = new Set(this.found.keys());
  }
}

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null;

/**
 * Which families (by index, given their series counts) to leave out so the
 * rest fit `maxSeriesPerWorker`: the largest first. The worker applies it
 * before sending, the supervisor again on what it receives.
 */
export function overSeriesLimit(sizes: readonly number[]): Set<number> {
  let total = sizes.reduce((a, b) => a + b, 0);
  const refused = new Set<number>();
  if (total <= maxSeriesPerWorker) return refused;
  const largestFirst = sizes.map((_, i) => i).sort((a, b) => sizes[b]! - sizes[a]!);
  for (const i of largestFirst) {
    if (total <= maxSeriesPerWorker) break;
    refused.add(i);
    total -= sizes[i]!;
  }
  return refused;
}

/**
 * A worker's reply as families fit to serve. The series limit is applied
 * first, on the raw sizes, so a label explosion costs no checking work.
 */
function familiesOf(
  reply: unknown,
  worker: number,
  ownNames: ReadonlySet<string>,
  problems: Problems,
): Family[] {
  if (!Array.isArray(reply)) return [];
  const nameOf = (m: unknown) => (isObject(m) && typeof m.name === 'string' ? m.name : '(unnamed)');
  if (reply.length > maxSeriesPerWorker) {
    problems.add('HYP_E_METRICS_TOO_MANY', '(every metric)', {
      worker,
      series: reply.length,
      limit: maxSeriesPerWorker,
    });
    return [];
  }
  const sizes = reply.map((m) => (isObject(m) && Array.isArray(m.values) ? m.values.length : 0));
  const refused = overSeriesLimit(sizes);
  for (const i of refused)
    problems.add('HYP_E_METRICS_TOO_MANY', nameOf(reply[i]), {
      worker,
      series: sizes[i]!,
      limit: maxSeriesPerWorker,
    });
  const out: Family[] = [];
  reply.forEach((m: unknown, i) => {
    if (refused.has(i)) return;
    const checked = checkFamily(m, ownNames);
    if (typeof checked === 'string')
      problems.add('HYP_E_METRICS_INVALID', nameOf(m), { worker, detail: checked });
    else out.push(checked);
  });
  return out;
}

/** The family in the shape served, or what is wrong with it. */
function checkFamily(m: unknown, ownNames: ReadonlySet<string>): Family | string {
  if (!isObject(m)) return 'not an object';
  const { name, help, type, values } = m;
  const aggregator = m.aggregator ?? 'sum';
  if (typeof name !== 'string' || !metricNamePattern.test(name)) return 'not a valid metric name';
  if (ownNames.has(name)) return 'the supervisor serves a metric of that name';
  if (typeof type !== 'string' || !familyTypes.has(type)) return `unknown type ${JSON.stringify(type)}`;
  if (typeof aggregator !== 'string' || !(aggregator === 'omit' || Object.hasOwn(aggregators, aggregator)))
    return `unknown aggregator ${JSON.stringify(aggregator)}`;
  if (!Array.isArray(values)) return 'values is not an array';
  const samples: Sample[] = new Array(values.length);
  // Names already checked in this family: a family repeats a few names over many samples.
  const sampleNames = new Set<string>([name]);
  const labelNames = new Set<string>();
  const bucketName = `${name}_bucket`;
  for (let i = 0; i < values.length; i++) {
    const v: unknown = values[i];
    if (!isObject(v) || typeof v.value !== 'number') return 'a sample without a numeric value';
    const metricName: unknown = v.metricName ?? name;
    if (typeof metricName !== 'string') return 'a sample name that is not a string';
    if (!sampleNames.has(metricName)) {
      if (!metricName.startsWith(name) || !metricNamePattern.test(metricName))
        return `sample name ${JSON.stringify(metricName)} is not valid for this metric`;
      sampleNames.add(metricName);
    }
    const labels: Record<string, string> = {};
    const given = v.labels;
    if (given !== undefined && given !== null) {
      if (!isObject(given) || Array.isArray(given)) return 'labels is not an object';
      for (const label in given) {
        if (!Object.hasOwn(given, label)) continue;
        if (!labelNames.has(label)) {
          if (!labelNamePattern.test(label)) return `label name ${JSON.stringify(label)} is not valid`;
          labelNames.add(label);
        }
        const value = given[label];
        if (typeof value === 'string') labels[label] = value;
        else if (typeof value === 'number') labels[label] = String(value);
        else if (value !== undefined) return `label ${label} is neither a string nor a number`;
      }
    }
    if (type === 'histogram' && metricName === bucketName && Number.isNaN(leNumber(labels.le)))
      return 'a bucket without a numeric le label';
    samples[i] = { labels, value: v.value, metricName };
  }
  return { name, help: typeof help === 'string' ? help : '', type, aggregator, values: samples } as Family;
}

/** Counts that must not fall back when a worker exits: counters and histograms summed across workers. */
function isCount(f: Family): boolean {
  return (f.type === 'counter' || f.type === 'histogram') && f.aggregator === 'sum';
}

/**
 * One family per name. The newest generation's family sets the type (an
 * app that changed a metric's type mid-roll); a worker's family of another
 * type is left out. Families whose samples would meet are then resolved
 * (`sampleClashes`).
 */
function merge(dumps: Dump[], problems: Problems): Family[] {
  const byName = new Map<string, Array<{ family: Family; generation: number }>>();
  for (const { generation, families } of dumps)
    for (const family of families) {
      const group = byName.get(family.name);
      if (group) group.push({ family, generation });
      else byName.set(family.name, [{ family, generation }]);
    }
  const out: Array<{ family: Family; generation: number }> = [];
  for (const [name, group] of byName) {
    const newest = group.reduce((a, b) => (b.generation > a.generation ? b : a));
    const ref = newest.family;
    const same = group.filter(({ family }) => family.type === ref.type).map(({ family }) => family);
    if (same.length < group.length)
      for (const { family, generation } of group)
        if (family.type !== ref.type)
          problems.add('HYP_E_METRICS_MISMATCH', name, {
            worker: generation < 0 ? 'exited' : `of generation ${generation}`,
            type: family.type,
            served: ref.type,
          });
    if (ref.aggregator === 'omit') continue;
    out.push({
      family: sumFamilies([ref, ...same.filter((f) => f !== ref)], ref.aggregator),
      generation: newest.generation,
    });
  }
  return withoutSampleClashes(out, problems);
}

/**
 * Families of different names can serve the same sample (an app's
 * histogram `x` makes `x_count`; a counter named `x_count`, in another
 * worker, or the next generation after a rename): the sample would be in
 * the scrape twice, each with its own value. The newest generation's
 * family is served, then the shorter name (the histogram or summary); the
 * other is left out (HYP_E_METRICS_INVALID). Exited workers' counts are the
 * oldest, so a renamed metric's old family does not hold its new name.
 */
function withoutSampleClashes(
  served: Array<{ family: Family; generation: number }>,
  problems: Problems,
): Family[] {
  const owner = new Map<string, string>();
  const left = new Set<Family>();
  const order = [...served].sort(
    (a, b) => b.generation - a.generation || a.family.name.length - b.family.name.length,
  );
  for (const { family, generation } of order) {
    const names = sampleNames(family);
    const clash = names.find((n) => owner.has(n));
    if (clash !== undefined) {
      left.add(family);
      problems.add('HYP_E_METRICS_INVALID', family.name, {
        worker: generation < 0 ? 'exited' : `of generation ${generation}`,
        detail: `${clash} is also a sample of ${owner.get(clash)}`,
      });
      continue;
    }
    for (const n of names) owner.set(n, family.name);
  }
  const out: Family[] = [];
  for (const { family } of served) if (!left.has(family)) out.push(family);
  return out;
}

/** The names a family's samples (and HELP/TYPE lines) use, including a histogram's or summary's suffixes. */
function sampleNames(family: Family): string[] {
  const names = new Set([family.name]);
  if (family.type === 'histogram')
    for (const suffix of ['_bucket', '_sum', '_count']) names.add(family.name + suffix);
  if (family.type === 'summary') for (const suffix of ['_sum', '_count']) names.add(family.name + suffix);
  for (const sample of family.values) names.add(sample.metricName);
  return [...names];
}

/** Families of one name and type as one, by the first one's aggregator; histogram buckets aligned first. */
function sumFamilies(families: Family[], aggregator: Exclude<AggregatorName, 'omit'> = 'sum'): Family {
  const first = families[0]!;
  const aligned = first.type === 'histogram' ? alignBuckets(families) : families;
  // A sample per series; its value is summed in place, or gathered for the other aggregators.
  const series = new Map<string, { sample: Sample; values: number[] | undefined }>();
  const gather = aggregator !== 'sum';
  for (const family of aligned)
    for (const sample of family.values) {
      const key = `${sample.metricName} ${labelKey(sample.labels)}`;
      const found = series.get(key);
      if (found === undefined)
        series.set(key, { sample: { ...sample }, values: gather ? [sample.value] : undefined });
      else if (found.values) found.values.push(sample.value);
      else found.sample.value += sample.value;
    }
  const reduce = aggregators[aggregator];
  const values: Sample[] = [];
  for (const { sample, values: gathered } of series.values()) {
    if (gathered && gathered.length > 1) sample.value = reduce(gathered);
    values.push(sample);
  }
  return { ...first, values };
}

/**
 * Labels as a key no two different label sets share (prom-client's hash
 * joins with ',' and ':', so `{a: "1,b:2"}` and `{a: "1", b: "2"}` met).
 * Label names hold no '='; each value is prefixed with its length.
 */
function labelKey(labels: Record<string, string>): string {
  const names = Object.keys(labels);
  if (names.length > 1) names.sort();
  let key = '';
  for (const name of names) {
    const value = labels[name]!;
    key += `${name}=${value.length}:${value}`;
  }
  return key;
}

function leNumber(le: string | undefined): number {
  if (le === '+Inf') return Number.POSITIVE_INFINITY;
  if (le === undefined || le.trim() === '') return Number.NaN;
  return Number(le);
}

/**
 * Histograms whose bucket bounds differ (a new generation changed them)
 * get every bound of every family: a family's count at a bound it lacks is
 * its count at its largest bound below, a lower bound, so the summed
 * buckets stay cumulative and `+Inf` stays the total.
 */
function alignBuckets(families: Family[]): Family[] {
  const bounds = new Map<number, string>();
  const layouts = new Set<string>();
  for (const family of families) {
    const own = new Set<string>();
    for (const s of family.values)
      if (s.metricName === `${family.name}_bucket`) {
        const le = leNumber(s.labels.le);
        if (!bounds.has(le)) bounds.set(le, s.labels.le!);
        own.add(String(le));
      }
    layouts.add([...own].sort().join(' '));
  }
  if (layouts.size <= 1) return families;
  const all = [...bounds.keys()].sort((a, b) => a - b);
  return families.map((family) => {
    const bucketName = `${family.name}_bucket`;
    const rest: Sample[] = [];
    const series = new Map<string, { labels: Record<string, string>; counts: Map<number, number> }>();
    for (const s of family.values) {
      if (s.metricName !== bucketName) {
        rest.push(s);
        continue;
      }
      const { le, ...labels } = s.labels;
      const key = labelKey(labels);
      let one = series.get(key);
      if (!one) {
        one = { labels, counts: new Map() };
        series.set(key, one);
      }
      one.counts.set(leNumber(le), s.value);
    }
    const values: Sample[] = [];
    for (const { labels, counts } of series.values()) {
      let below = 0;
      for (const le of all) {
        below = counts.get(le) ?? below;
        values.push({ labels: { le: bounds.get(le)!, ...labels }, value: below, metricName: bucketName });
      }
    }
    return { ...family, values: [...values, ...rest] };
  });
}

/** The families as Prometheus text (prom-client's rendering and escaping). */
async function exposition(families: Family[]): Promise<string> {
  if (families.length === 0) return '';
  const registry = new Registry();
  for (const family of families)
    registry.registerMetric({ name: family.name, get: async () => family } as unknown as Metric);
  return registry.metrics();
}
