/**
 * Worker entry point. Supervised (LISTEN_FDS + IPC channel): waits for the
 * `config` message, serves the inherited fds, reports `ready`, heartbeats,
 * drains on request and exits when the supervisor goes away. Standalone
 * (`node dist/apps/server/worker.js app.js`): loads config itself and binds
 * its own sockets, or serves the ones a systemd socket unit hands it
 * (LISTEN_FDS without an IPC channel; activation.ts).
 */
import { resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pathToFileURL } from 'node:url';
import { collectDefaultMetrics, type MetricObjectWithValues, type MetricValue, Registry } from 'prom-client';
import { ConfigError, loadConfig } from '../../supervisor/config/load.js';
import type { Config } from '../../supervisor/config/schema.js';
import { durationMs } from '../../supervisor/config/units.js';
import { errorMessage, HypError } from '../../supervisor/errors.js';
import {
  firstListenFd,
  isSupervisorMessage,
  runtimeMessageTypes,
  type SupervisorMessage,
  type TicketKeys,
  type WorkerLoad,
  type WorkerMessage,
  workerEnv,
} from '../../supervisor/ipc.js';
import { createLogger, type Logger } from '../../supervisor/log.js';
import { maxSeriesPerWorker, overSeriesLimit } from '../../supervisor/metrics.js';
import { socketActivation } from './activation.js';
import { App, isAppDefinition } from './app.js';
import { HttpServer, type ListenTarget, listenTargetFor } from './http/server.js';
import { setInternalsLog } from './node-internals.js';
import { createTcpServices, listenTcpServices, type TcpService } from './tcp/services.js';
import { setTlsFallback } from './tls/fallback.js';
import type { IpcChannel } from './ws/bus.js';
import { flowOf } from './ws/ipc-flow.js';
import { drainSpreadMs } from './ws/options.js';

interface Boot {
  config: Config;
  app: string;
  workerId: number;
  generation: number;
  /** Listener name → inherited fd: the supervisor's, or a socket unit's (activation.ts); else empty. */
  fds: Map<string, number>;
  /** Standalone: why inherited sockets were left alone (logged once the logger exists). */
  activationIgnored?: string | undefined;
}

/** Time the shutdown hooks get when in-flight work ran to the drain deadline (the supervisor kills 1 s after it). */
const shutdownGraceMs = 500;

interface CollectableMetric {
  readonly name: string;
  get(): Promise<MetricObjectWithValues<MetricValue<string>>>;
}

/** A server the worker runs and drains: HTTP, TCP services, the WebSocket hub. */
export interface Drainable {
  drain(deadline: number): Promise<void>;
  readonly connections: number;
  readonly inflight?: number;
}

const supervised = typeof process.send === 'function' && process.env[workerEnv.listenFds] !== undefined;

/** The channel's own send, kept before the app's `process.send` is guarded (reserveRuntimeMessages). */
const sendToSupervisor = process.send?.bind(process);

/**
 * A send on a channel that has just closed fails with EPIPE (or
 * ERR_IPC_CHANNEL_CLOSED) before the worker reads the channel's end. That
 * is the supervisor going away, which the 'disconnect' handler answers by
 * draining: without a callback Node would emit it on `process` as an
 * uncaught exception (a `fatal` line and a 'failing' report).
 */
const channelGone = new Set(['EPIPE', 'ECONNRESET', 'ERR_IPC_CHANNEL_CLOSED', 'ERR_IPC_DISCONNECTED']);
function ignoreChannelGone(err: Error | null): void {
  if (err === null || channelGone.has((err as NodeJS.ErrnoException).code ?? '')) return;
  // Anything else stays what Node makes of it without a callback: an uncaught exception.
  throw err;
}

function send(message: WorkerMessage): void {
  if (process.connected) sendToSupervisor?.(message, undefined, undefined, ignoreChannelGone);
}

/**
 * From here on, the app's `process.send()` of a message type the supervisor
 * acts on (`ready`, `heartbeat`, `failing`, ...) throws HYP_E_IPC_RESERVED
 * at the call: a `ready` sent by an app's setup would make the supervisor
 * treat a worker that is not serving as ready. Other messages pass; without
 * a callback, a send that fails because the channel closed is ignored.
 */
function reserveRuntimeMessages(): void {
  const channelSend = process.send;
  if (typeof channelSend !== 'function') return;
  process.send = function guardedSend(this: NodeJS.Process, message: unknown, ...rest: unknown[]) {
    const type =
      typeof message === 'object' && message !== null ? (message as { type?: unknown }).type : undefined;
    if (typeof type === 'string' && runtimeMessageTypes.has(type))
      throw new HypError('HYP_E_IPC_RESERVED', { type });
    const sendOn = channelSend as (...args: unknown[]) => boolean;
    if (rest.some((arg) => typeof arg === 'function')) return sendOn.call(this, message, ...rest);
    // No callback (the hubs' bus and history sends, most app sends): a closed channel is not an app error.
    return sendOn.call(this, message, rest[0], rest[1], ignoreChannelGone);
  } as typeof process.send;
}

/**
 * The first `tls-keys` follows `config` in the same read from the IPC
 * channel, before main() listens for messages: keep the latest here.
 */
let earlyTicketKeys: TicketKeys | undefined;
/** Likewise a `drain` sent right after `config` (a pod drain at once after the spawn): kept, then obeyed. */
let earlyDrain: Extract<SupervisorMessage, { type: 'drain' }> | undefined;
if (supervised) {
  process.on('message', (m: unknown) => {
    if (isSupervisorMessage(m) && m.type === 'tls-keys') earlyTicketKeys = m.keys;
    if (isSupervisorMessage(m) && m.type === 'drain') earlyDrain ??= m;
  });
}

function bootFromSupervisor(): Promise<Boot> {
  return new Promise((resolveBoot) => {
    const onMessage = (m: unknown) => {
      if (!isSupervisorMessage(m) || m.type !== 'config') return;
      process.off('message', onMessage);
      const fds = new Map(m.listeners.map((name, i) => [name, firstListenFd + i] as const));
      // The supervisor's last good TLS files, for a listener whose files are broken now (tls/fallback.ts).
      setTlsFallback(m.tlsFallback, (at, files, readAt) => send({ type: 'tls-reloaded', at, files, readAt }));
      resolveBoot({ config: m.config, app: m.app, workerId: m.workerId, generation: m.generation, fds });
    };
    process.on('message', onMessage);
  });
}

function bootStandalone(): Boot {
  const { config } = loadConfig();
  const app = process.argv[2] ?? process.env.HYP_APP ?? config.app;
  if (!app) throw new HypError('HYP_E_APP_NOT_FOUND', { file: '(none)', detail: 'pass the app module path' });
  const activation = socketActivation(process.env, process.pid, ['http', ...Object.keys(config.tcp)]);
  return {
    config,
    app: resolve(app),
    workerId: 0,
    generation: 0,
    fds: activation.fds,
    activationIgnored: activation.ignored,
  };
}

export class WorkerRuntime {
  readonly registry = new Registry();
  readonly processRegistry = new Registry();
  readonly servers: Drainable[] = [];
  private readonly processLabels: Record<string, string>;
  /** Metrics whose collect() failed at the last scrape (logged once until they work again). */
  private readonly failingMetrics = new Set<string>();
  /** Families left out for their size at the last scrape (logged once until they fit). */
  private readonly tooManyMetrics = new Set<string>();
  private readonly drainController = new AbortController();
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 20 });
  private heartbeat: NodeJS.Timeout | undefined;
  private draining: Promise<void> | undefined;
  private starting: Promise<void> | undefined;
  app!: App;
  http!: HttpServer;
  tcp: TcpService[] = [];

  constructor(
    readonly boot: Boot,
    readonly log: Logger,
  ) {
    // Node's default metrics per worker: a label tells the workers apart once
    // the supervisor aggregates every registry.
    this.processLabels = { worker_id: String(boot.workerId) };
    this.processRegistry.setDefaultLabels(this.processLabels);
    collectDefaultMetrics({ register: this.processRegistry });
  }

  listenTarget(name: string, addr: string): ListenTarget {
    const fd = this.boot.fds.get(name);
    return fd !== undefined ? { fd } : listenTargetFor(addr);
  }

  /** A drain has begun: from then on nothing starts listening. */
  get drainStarted(): boolean {
    return this.drainController.signal.aborted;
  }

  /**
   * Load the app, run its setup, then listen. A drain that arrives before
   * the end (it waits for this) stops the start at the next step: a listener
   * started afterwards could accept a connection the exiting worker drops.
   */
  start(): Promise<void> {
    this.starting ??= this.doStart();
    return this.starting;
  }

  private async doStart(): Promise<void> {
    const { config, app: appPath, workerId, generation } = this.boot;
    const definition = await importApp(appPath);
    if (this.drainStarted) return;
    this.app = new App({ config, log: this.log, registry: this.registry, workerId });
    await definition.setup(this.app, {
      config,
      log: this.log,
      workerId,
      generation,
      signal: this.drainController.signal,
    });
    if (this.drainStarted) {
      this.log.info('drain started during app setup: no listener started');
      return;
    }

    // The TCP services are matched with their config before the HTTP listener
    // serves: a registration without its tcp.<name> section fails the start
    // (HYP_E_TCP_UNKNOWN_SERVICE) before a worker that will never be ready has
    // taken HTTP connections it would then drop.
    const tcp = createTcpServices({
      registrations: this.app.tcpServices,
      config,
      log: this.log,
      registry: this.registry,
      ticketKeys: earlyTicketKeys,
    });
    // known at once, so a `tls-keys` rotation while the listeners start reaches them too
    this.tcp = tcp;
    this.http = new HttpServer({
      config,
      handler: this.app.handle,
      streamHandler: this.app.handleStream,
      registry: this.registry,
      log: this.log,
      ticketKeys: earlyTicketKeys,
    });
    this.http.server.on('upgrade', this.app.handleUpgrade);
    // WebSocket hubs drain with close frames spread over drain.websocket_spread.
    const spreadMs = drainSpreadMs(config);
    for (const hub of this.app.websockets.values()) {
      this.servers.push({
        drain: (deadline) => hub.drain({ spreadMs, deadline }),
        get connections() {
          return hub.clients();
        },
      });
    }
    // Server-sent event streams close at drain start, each with a reconnect
    // hint spread over the same window; the HTTP server counts their connections.
    const app = this.app;
    this.servers.push({
      drain: async () => {
        const closed = app.drainEventStreams(spreadMs);
        if (closed > 0)
          this.log.info({ streams: closed, spread_ms: spreadMs }, 'event streams closed for the drain');
      },
      connections: 0,
    });
    const address = await this.http.listen(this.listenTarget('http', config.server.addr));
    this.servers.push(this.http);
    this.log.info({ listener: 'http', port: address.port }, 'http listener serving');
    if (this.drainStarted) return;

    await listenTcpServices(tcp, this.boot.fds);
    for (const service of tcp) {
      this.servers.push(service);
      this.log.info({ listener: service.name, port: service.address().port }, 'tcp service serving');
    }
  }

  startHeartbeat(): void {
    this.loopDelay.enable();
    const interval = durationMs(this.boot.config.supervisor.heartbeat_interval);
    const beat = () => {
      send({ type: 'heartbeat', ...this.load() });
      this.loopDelay.reset();
    };
    this.heartbeat = setInterval(beat, interval);
    beat();
  }

  load(): WorkerLoad {
    let connections = 0;
    let inflight = 0;
    for (const s of this.servers) {
      connections += s.connections;
      inflight += s.inflight ?? 0;
    }
    const p99 = this.loopDelay.percentile(99);
    let wsClients = 0;
    for (const hub of this.app?.websockets.values() ?? []) wsClients += hub.clients();
    return {
      connections,
      inflight,
      wsClients,
      rss: process.memoryUsage.rss(),
      loopDelayMs: Number.isFinite(p99) ? p99 / 1e6 : 0,
    };
  }

  /**
   * Both registries as prom-client JSON, for the supervisor's /metrics. A
   * metric whose `collect()` throws or rejects is left out and logged
   * (HYP_E_METRICS_COLLECT, once until it works again): prom-client's
   * `getMetricsAsJSON` would reject for the whole registry, and that
   * rejection, unhandled in the IPC handler, got the worker replaced on
   * every scrape.
   */
  async metricsJson(): Promise<unknown[]> {
    const [app, proc] = await Promise.all([
      this.registryJson(this.registry, {}),
      this.registryJson(this.processRegistry, this.processLabels),
    ]);
    return this.withinSeriesLimit([...app, ...proc]);
  }

  /**
   * At most `maxSeriesPerWorker` series go to the supervisor, the largest
   * families left out first (HYP_E_METRICS_TOO_MANY, logged once until the
   * family fits again). The supervisor applies the same limit, but only after
   * Node has decoded the whole IPC message in PID 1: a label explosion in an
   * app would cost the pod's supervisor its memory, on every scrape.
   */
  private withinSeriesLimit(families: unknown[]): unknown[] {
    const sizes = families.map((m) => (m as { values?: unknown[] }).values?.length ?? 0);
    const refused = overSeriesLimit(sizes);
    const nameOf = (i: number) => (families[i] as { name?: string }).name ?? '(unnamed)';
    const refusedNames = new Set([...refused].map(nameOf));
    for (const name of this.tooManyMetrics) if (!refusedNames.has(name)) this.tooManyMetrics.delete(name);
    for (const i of refused) {
      const name = nameOf(i);
      if (this.tooManyMetrics.has(name)) continue;
      this.tooManyMetrics.add(name);
      const err = new HypError('HYP_E_METRICS_TOO_MANY', {
        name,
        worker: this.boot.workerId,
        series: sizes[i]!,
        limit: maxSeriesPerWorker,
      });
      this.log.error({ code: err.code, metric: name, series: sizes[i] }, err.message);
    }
    return refused.size === 0 ? families : families.filter((_, i) => !refused.has(i));
  }

  /** What `getMetricsAsJSON` gives, metric by metric (its default-label merge included). */
  private async registryJson(registry: Registry, defaults: Record<string, string>): Promise<unknown[]> {
    // The array holds the metric instances (typed as their JSON shape).
    const metrics = registry.getMetricsAsArray() as unknown as CollectableMetric[];
    const results = await Promise.allSettled(metrics.map((m) => Promise.resolve().then(() => m.get())));
    const out: unknown[] = [];
    const defaultNames = Object.keys(defaults);
    results.forEach((result, i) => {
      const name = metrics[i]?.name ?? '(unnamed)';
      if (result.status === 'rejected') {
        if (this.failingMetrics.has(name)) return;
        this.failingMetrics.add(name);
        const err = new HypError('HYP_E_METRICS_COLLECT', { name, detail: errorMessage(result.reason) });
        this.log.error({ code: err.code, metric: name, err: result.reason }, err.message);
        return;
      }
      this.failingMetrics.delete(name);
      const item = result.value;
      if (defaultNames.length > 0)
        for (const v of item.values) {
          const labels: Partial<Record<string, string | number>> = { ...v.labels };
          for (const label of defaultNames) labels[label] = labels[label] || (defaults[label] as string);
          v.labels = labels;
        }
      out.push(item);
    });
    return out;
  }

  /**
   * The app's onShutdown hooks, bounded by the drain deadline (or
   * `shutdownGraceMs` when the servers' drain used it all): a hook that never
   * returns must not keep the worker — with the supervisor gone nothing
   * else would ever stop it.
   */
  private async runShutdownHooks(deadline: number): Promise<void> {
    if (!this.app) return;
    const startedAt = Date.now();
    const hooks = this.app.shutdown().catch((thrown: unknown) => {
      const err = new HypError('HYP_E_SHUTDOWN_HOOK', { detail: describeThrown(thrown) });
      this.log.error({ code: err.code, err: loggable(thrown) }, err.message);
    });
    if (await settlesBefore(hooks, Math.max(deadline, startedAt + shutdownGraceMs))) return;
    const err = new HypError('HYP_E_SHUTDOWN_TIMEOUT', {
      what: "the app's onShutdown hooks",
      timeout: 'the drain deadline',
    });
    this.log.warn(
      { code: err.code, waited_ms: Date.now() - startedAt },
      `${err.message}; exiting without them`,
    );
  }

  /**
   * Waits until what the worker queued on its IPC channel (the hubs'
   * publishes and relays) is written, at the latest until `deadline` (or
   * 500 ms when it has passed): Node drops those messages when the process
   * exits, so publishes taken during the drain would be lost.
   */
  private async ipcWritten(deadline: number): Promise<void> {
    if (!process.connected) return;
    const flow = flowOf(process as unknown as IpcChannel);
    let timer: NodeJS.Timeout | undefined;
    const late = new Promise<boolean>((resolve) => {
      timer = setTimeout(() => resolve(true), Math.max(500, deadline - Date.now()));
    });
    const timedOut = await Promise.race([flow.whenWritten().then(() => false), late]);
    clearTimeout(timer);
    if (timedOut) this.log.warn('IPC messages still unwritten at the drain deadline; exiting without them');
  }

  /** Idempotent: every trigger joins the first drain. */
  drain(deadline: number, reason: string): Promise<void> {
    this.draining ??= (async () => {
      this.log.info({ reason, deadline_ms: deadline - Date.now() }, 'worker draining');
      this.drainController.abort(new HypError('HYP_E_DRAINING'));
      // Still starting: let the app's setup return (it got the abort signal),
      // so no listener starts behind the drain and shutdown hooks do not race
      // setup. Setup still running at the deadline: leave without it.
      if (this.starting && !(await settlesBefore(this.starting, deadline))) {
        if (this.heartbeat) clearInterval(this.heartbeat);
        this.log.warn('app setup still running at the drain deadline; exiting without it');
        return;
      }
      await Promise.all(
        this.servers.map((s) => s.drain(deadline).catch((err) => this.log.error({ err }, 'drain'))),
      );
      await this.runShutdownHooks(deadline);
      if (this.heartbeat) clearInterval(this.heartbeat);
      await this.ipcWritten(deadline);
      this.log.info('worker drained');
    })();
    return this.draining;
  }
}

/**
 * What an app threw, as text, whatever it was: `errorMessage` stringifies a
 * non-Error, and an object whose `toString` (or an Error whose `message`
 * getter) throws would make the report of a failed start throw in turn, so
 * the worker died as a crash with the cause hidden.
 */
export function describeThrown(err: unknown): string {
  try {
    const text = errorMessage(err);
    if (typeof text === 'string') return text;
  } catch {}
  return `an unprintable ${err === null ? 'null' : typeof err} (converting it to text threw)`;
}

/** An app's thrown value for the log: only an Error goes to the serializer (another value's getters may throw). */
function loggable(err: unknown): unknown {
  return err instanceof Error ? err : describeThrown(err);
}

/** Set by the runtime's own exits; any other one is the app's process.exit() (or an empty event loop). */
let exitingOnPurpose = false;
function exitWorker(code: number): never {
  exitingOnPurpose = true;
  process.exit(code);
}

/** Whether `p` settles (resolved or rejected) before the deadline (epoch ms). */
async function settlesBefore(p: Promise<unknown>, deadline: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const settled = p.then(
    () => true,
    () => true,
  );
  const late = new Promise<boolean>((r) => {
    timer = setTimeout(() => r(false), Math.max(0, deadline - Date.now()));
  });
  try {
    return await Promise.race([settled, late]);
  } finally {
    clearTimeout(timer);
  }
}

async function importApp(file: string) {
  let mod: { default?: unknown };
  try {
    mod = (await import(pathToFileURL(file).href)) as { default?: unknown };
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' && String(err).includes(file)) {
      throw new HypError('HYP_E_APP_NOT_FOUND', { file, detail: errorMessage(err) });
    }
    // A module that does not parse fails the same way on every worker and
    // every restart: it cannot be loaded, like a missing one.
    const unparsable = parseFailure(err);
    if (unparsable !== undefined) throw new HypError('HYP_E_APP_NOT_FOUND', { file, detail: unparsable });
    throw new HypError('HYP_E_APP_START', { detail: describeThrown(err) }, { cause: err });
  }
  if (isAppDefinition(mod.default)) return mod.default;
  // tsc's CommonJS output of `export default defineApp(...)` (a "type": "commonjs"
  // project, what npm init -y writes) is `exports.default = ...`: import() sees
  // { __esModule: true, default: <the app> }.
  const wrapped = mod.default as { __esModule?: unknown; default?: unknown } | null | undefined;
  if (wrapped?.__esModule === true && isAppDefinition(wrapped.default)) return wrapped.default;
  throw new HypError('HYP_E_APP_INVALID', { file, detail: `default export is ${typeof mod.default}` });
}

/**
 * What is wrong when `err` says a module (the app's or one it imports) does
 * not parse, else undefined. V8 throws such a SyntaxError from Node's module
 * compiler; CommonJS and TypeScript ones open their stack with `path:line`.
 * A SyntaxError the module's own code throws (`JSON.parse` of a bad file)
 * has that code on top instead, and may not fail the next time.
 */
function parseFailure(err: unknown): string | undefined {
  if (!(err instanceof SyntaxError)) return undefined;
  const [first = '', second = ''] = err.stack?.split('\n', 3) ?? [];
  if (/^(?:file:\/\/|\/).*:\d+$/.test(first)) return `SyntaxError: ${err.message} at ${first}`;
  if (second.includes('(node:internal/modules/'))
    return `SyntaxError: ${err.message} (in it or in a module it imports)`;
  return undefined;
}

/**
 * No config, so no logger yet: the CLI's format on stderr (`hyp: CODE:
 * message`, one line per configuration problem), never a stack trace; an
 * error that is not a HypError is a failed start (HYP_E_APP_START, exit 70).
 */
function bootFailed(err: unknown): never {
  const hyp =
    err instanceof HypError
      ? err
      : new HypError('HYP_E_APP_START', { detail: describeThrown(err) }, { cause: err });
  const lines = hyp instanceof ConfigError ? hyp.lines() : [`${hyp.code}: ${hyp.message}`];
  for (const line of lines) process.stderr.write(`hyp: ${line}\n`);
  exitWorker(hyp.exitCode);
}

async function main(): Promise<void> {
  let boot: Boot;
  try {
    boot = supervised ? await bootFromSupervisor() : bootStandalone();
  } catch (err) {
    bootFailed(err);
  }
  const log = createLogger({
    role: 'worker',
    workerId: boot.workerId,
    generation: boot.generation,
    level: boot.config.log.level,
    format: boot.config.log.format,
  });
  setInternalsLog(log);
  if (boot.activationIgnored !== undefined) log.warn(boot.activationIgnored);
  const runtime = new WorkerRuntime(boot, log);
  const drainTimeout = durationMs(boot.config.drain.timeout);
  let ready = false;
  let failing = false;
  // An exit the runtime did not decide on: the supervisor only sees a code
  // (0 looks like a clean exit), so the worker names it while it still can.
  process.on('exit', (code) => {
    if (exitingOnPurpose) return;
    const stage = runtime.drainStarted ? 'drain' : ready ? 'serving' : 'setup';
    const err = new HypError('HYP_E_APP_EXIT', { exit_code: code, stage });
    log[stage === 'drain' ? 'warn' : 'error']({ code: err.code, exit_code: code, stage }, err.message);
  });
  // An uncaught exception (or unhandled rejection) in a serving worker: its
  // state may be damaged, but its in-flight requests and open connections
  // need not be lost. Supervised, ask for a replacement and keep serving
  // until the supervisor drains this worker; standalone, drain and exit 1.
  // Before ready it is a failed start: exit at once, as Node would.
  process.on('uncaughtException', (err, origin) => {
    log.fatal({ err: loggable(err), origin }, `uncaught exception in the worker (${origin})`);
    if (!ready) exitWorker(1);
    if (failing) return;
    failing = true;
    if (supervised && process.connected) {
      send({ type: 'failing', error: describeThrown(err) });
      return;
    }
    void runtime.drain(Date.now() + drainTimeout, 'uncaught exception').finally(() => exitWorker(1));
  });

  if (supervised) {
    reserveRuntimeMessages();
    // The supervisor orchestrates stops; a terminal's Ctrl-C or `tini -g`
    // reaching the whole process group must not stop workers early.
    process.on('SIGINT', () => {});
    process.on('SIGTERM', () => {});
    // No orphans: when the supervisor goes away, finish quickly and leave.
    process.on('disconnect', () => {
      void runtime.drain(Date.now() + 1000, 'supervisor gone').finally(() => exitWorker(0));
      // A drain already under way keeps its own, later deadline (drain is
      // idempotent): the orphan still leaves within 1 s, hooks' grace included.
      setTimeout(() => {
        log.warn("supervisor gone: exiting at the orphan deadline (1 s, plus the hooks' grace)");
        exitWorker(0);
      }, 1000 + shutdownGraceMs).unref();
    });
    process.on('message', (m: unknown) => {
      if (!isSupervisorMessage(m)) return;
      onSupervisorMessage(runtime, m).catch((err: unknown) =>
        log.error(
          { err, type: m.type },
          `handling the supervisor's ${m.type} message failed: ${errorMessage(err)}`,
        ),
      );
    });
    // A drain that arrived with `config`, before this listener existed (drain is idempotent).
    if (earlyDrain) void onSupervisorMessage(runtime, earlyDrain);
    runtime.startHeartbeat();
  } else {
    const stop = (signal: string) => {
      void runtime.drain(Date.now() + drainTimeout, signal).finally(() => exitWorker(0));
    };
    process.once('SIGTERM', () => stop('SIGTERM'));
    process.once('SIGINT', () => stop('SIGINT'));
  }

  try {
    await runtime.start();
  } catch (err) {
    // A setup that gave up on the drain's abort signal: the drain exits 0.
    if (runtime.drainStarted) {
      log.info(
        { err: loggable(err) },
        `app setup ended with an error after the drain started: ${describeThrown(err)}`,
      );
      return;
    }
    const hypErr =
      err instanceof HypError ? err : new HypError('HYP_E_APP_START', { detail: describeThrown(err) });
    log.error({ err: loggable(err), code: hypErr.code }, hypErr.message);
    send({ type: 'start-failed', code: hypErr.code, message: hypErr.message });
    // Let the IPC message flush before leaving.
    setTimeout(() => exitWorker(hypErr.exitCode), 50);
    return;
  }
  // Drained while starting: never ready; the drain finishes the worker.
  if (runtime.drainStarted) return;
  ready = true;
  send({ type: 'ready' });
  log.info('worker ready');
}

async function onSupervisorMessage(runtime: WorkerRuntime, m: SupervisorMessage): Promise<void> {
  switch (m.type) {
    case 'drain':
      await runtime.drain(m.deadline, m.reason);
      exitWorker(0);
      break;
    case 'tls-keys':
      runtime.http?.setTicketKeys(m.keys);
      for (const service of runtime.tcp) service.setTicketKeys(m.keys);
      break;
    case 'metrics?':
      send({ type: 'metrics', id: m.id, metrics: await runtime.metricsJson() });
      break;
    default:
      break;
  }
}

void main();
