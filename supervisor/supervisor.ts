/**
 * The supervisor: holds the pod's sockets, runs generations of workers and
 * drains the pod. States: `starting → ready → draining → stopped`.
 *
 * | trigger                                        | transition / effect                              |
 * |------------------------------------------------|--------------------------------------------------|
 * | first worker of generation 1 ready             | starting → ready                                 |
 * | SIGUSR2, SIGHUP, POST /restart, `hyp restart`  | rollGeneration (state unchanged, stays ready)    |
 * | SIGTERM, SIGINT, POST /drain, `hyp drain`      | → draining: /ready 503, delay, drain, close      |
 * | all workers gone after drain                   | draining → stopped, exit 0                       |
 * | second SIGTERM / SIGINT                        | forced stop, exit 1                              |
 */
import { fileURLToPath } from 'node:url';
import { Backoff } from './backoff.js';
import { ConfigError } from './config/load.js';
import type { Config } from './config/schema.js';
import { durationMs, sizeBytes } from './config/units.js';
import { availableCpus } from './cpus.js';
import { type EndpointsTarget, type EndpointsView, EndpointsWatch, endpointsTarget } from './endpoints.js';
import { type CatalogEntry, catalog, type ErrorCode, errorMessage, HypError } from './errors.js';
import { PodHistory } from './history.js';
import {
  type BusMessage,
  type HistoryPublish,
  type HistoryRecoverRequest,
  recoveryTimeoutMs,
  type SupervisorMessage,
  type TicketKeys,
} from './ipc.js';
import { type HeldListener, holdListener } from './listeners.js';
import type { Logger } from './log.js';
import { SupervisorMetrics } from './metrics.js';
import { removePidFile, writePidFile } from './pidfile.js';
import { PodReplayWindows } from './replay.js';
import { checkTlsFiles, enabledTlsConfigs, LastGoodTls } from './tlscheck.js';
import { TicketKeyRotation } from './tlskeys.js';
import { type WorkerExit, WorkerProcess } from './worker-process.js';

export type SupervisorState = 'starting' | 'ready' | 'draining' | 'stopped';
export type DrainPhase = 'none' | 'delay' | 'workers' | 'closing' | 'done';

export interface SupervisorOptions {
  config: Config;
  /** Absolute path of the app module. */
  app: string;
  log: Logger;
  /** Re-reads config for SIGHUP; throws a HypError when the new config is invalid. */
  reloadConfig?: () => Config;
  /** Worker entry module (defaults to the compiled apps/server/worker.js). */
  workerEntry?: string;
  /** Called once the supervisor has stopped; defaults to process.exit. */
  exit?: (code: number) => void;
  /** Install process signal handlers (off in embedded tests). */
  handleSignals?: boolean;
}

export interface RollResult {
  ok: boolean;
  generation: number;
  error?: string;
}

const defaultWorkerEntry = fileURLToPath(new URL('../apps/server/worker.js', import.meta.url));
/** Recovery requests one worker may have waiting (each is small); past it one is refused at once. */
const maxWaitingRecoveries = 10_000;

export class Supervisor {
  state: SupervisorState = 'starting';
  config: Config;
  generation = 0;
  readonly listeners: HeldListener[] = [];
  readonly workers = new Map<number, WorkerProcess>();
  readonly metrics: SupervisorMetrics;
  drainPhase: DrainPhase = 'none';
  drainStartedAt: number | undefined;
  /** Why the pod is not ready, for /ready. */
  lastProblem: string | undefined;
  lastRoll: RollResult | undefined;
  ticketKeys: TicketKeys | undefined;
  /** Pod-wide WebSocket channel history (lives as long as the supervisor). */
  readonly history: PodHistory;
  /** Pod-wide WebSocket replay windows: a sealed frame replayed to another worker is refused too. */
  readonly replayWindows = new PodReplayWindows(() => this.workerCount);
  /** Each TLS listener's last files that passed the checks, for workers that start while they are broken on disk. */
  private readonly lastGoodTls = new LastGoodTls();

  private readonly log: Logger;
  private nextWorkerId = 1;
  private readonly backoffs = new Map<number, Backoff>();
  private readonly pendingRestarts = new Map<number, NodeJS.Timeout>();
  private rolling: Promise<RollResult> | undefined;
  private rollAgain = false;
  /** A re-read config waiting for the next roll; it becomes `config` once that roll's generation is ready. */
  private pendingConfig: Config | undefined;
  private watchdog: NodeJS.Timeout | undefined;
  private ticketRotation: TicketKeyRotation | undefined;
  private stopSignals = 0;
  private readonly stopped: Promise<number>;
  private resolveStopped!: (code: number) => void;
  private draining: Promise<void> | undefined;
  /** The pod's place in its Service's EndpointSlices (drain.endpoints.service), watched from ready. */
  private endpoints: EndpointsWatch | undefined;
  /** syncHolds is running; a call meanwhile asks it for another pass. */
  private syncingHolds = false;
  private syncHoldsAgain = false;
  /** Hooks run right before exit (admin server close, etc.). */
  readonly onStop: Array<() => void | Promise<void>> = [];

  constructor(private readonly opts: SupervisorOptions) {
    this.config = opts.config;
    this.log = opts.log;
    this.history = new PodHistory({
      size: opts.config.websocket.history_size,
      maxBytes: sizeBytes(opts.config.websocket.history_bytes),
    });
    this.metrics = new SupervisorMetrics(this);
    this.stopped = new Promise((resolve) => {
      this.resolveStopped = resolve;
    });
  }

  get workerCount(): number {
    return workerCountOf(this.config);
  }

  /** Listener names handed to workers, in fd order. */
  listenerConfig(config: Config = this.config): Array<{ name: string; addr: string }> {
    return [
      { name: 'http', addr: config.server.addr },
      ...Object.entries(config.tcp).map(([name, svc]) => ({ name, addr: svc.addr })),
    ];
  }

  /** Bind every listener. Throws HypError (exit 2); nothing is forked yet, no PID file written. */
  async bind(): Promise<void> {
    try {
      for (const { name, addr } of this.listenerConfig()) {
        const held = await holdListener(name, addr);
        this.listeners.push(held);
        this.log.info({ listener: name, addr, port: held.port, fd: held.fd }, 'holding listener');
      }
    } catch (err) {
      for (const l of this.listeners) l.close();
      throw err;
    }
  }

  /**
   * Write the PID file, spawn generation 1 and start watching it. Throws
   * HypError (exit 2) when the PID file names a live supervisor or cannot be
   * written. The PID file comes last of the start steps that can fail (after
   * the admin server's bind), so a start that fails never leaves one behind.
   */
  launch(): void {
    writePidFile(this.config.supervisor.pid_file);
    if (this.opts.handleSignals !== false) this.installSignals();
    this.watchdog = setInterval(() => this.checkHeartbeats(), 250);
    this.watchdog.unref();
    this.shareTicketKeys(this.config);
    this.generation = 1;
    this.lastProblem = 'no worker ready yet';
    for (let slot = 0; slot < this.workerCount; slot++) this.spawnWorker(slot, this.generation);
  }

  /**
   * Shared session-ticket keys, so TLS resumption works whichever worker
   * accepts. `share_ticket_keys: false` exists only to demonstrate the
   * per-worker alternative (resumption on ~1/N of reconnects).
   * HTTP and TCP services share one key set; the HTTP listener's schedule wins when both are on.
   * Started at launch, or before the first generation whose config turns TLS on (a reload).
   */
  private shareTicketKeys(config: Config): void {
    if (this.ticketRotation) return;
    const tls = sharedTicketTls(config)?.tls;
    if (!tls) return;
    this.ticketRotation = new TicketKeyRotation(durationMs(tls.ticket_rotation), (keys) => {
      this.log.debug({ previous: keys.previous.length }, 'TLS session-ticket keys rotated');
      this.setTicketKeys(keys);
    });
    this.ticketRotation.start();
  }

  /** A reloaded `ticket_rotation` takes effect: the period restarts from now, the keys stay. */
  private rescheduleTicketKeys(config: Config): void {
    const shared = sharedTicketTls(config);
    if (!this.ticketRotation || !shared) return;
    const { at, tls } = shared;
    const was = this.ticketRotation.interval;
    const ms = durationMs(tls.ticket_rotation);
    if (ms === was) return;
    this.ticketRotation.reschedule(ms);
    this.log.info(
      { key: `${at}.ticket_rotation`, interval_ms: ms, was_ms: was },
      `session-ticket keys now rotate every ${tls.ticket_rotation}`,
    );
  }

  /** Resolves with the exit code once stopped. */
  whenStopped(): Promise<number> {
    return this.stopped;
  }

  private installSignals(): void {
    process.on('SIGUSR2', () => void this.rollGeneration('SIGUSR2'));
    process.on('SIGHUP', () => void this.reload());
    const stop = (signal: string) => {
      this.stopSignals++;
      if (this.stopSignals > 1) this.forceStop(signal);
      else void this.drain(signal);
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
  }

  private spawnWorker(slot: number, generation: number, config: Config = this.config): WorkerProcess {
    const worker = new WorkerProcess({
      id: this.nextWorkerId++,
      slot,
      generation,
      entry: this.opts.workerEntry ?? defaultWorkerEntry,
      app: this.opts.app,
      config,
      listeners: this.listeners,
      ticketKeys: this.ticketKeys,
      tlsFallback: this.lastGoodTls.refresh(config),
      // the worker's own config: a roll that changes heartbeat_timeout changes its relay bound too
      relayStallMs: durationMs(config.supervisor.heartbeat_timeout),
    });
    this.workers.set(worker.id, worker);
    this.log.info({ worker: worker.id, worker_pid: worker.pid, slot, gen: generation }, 'worker spawned');
    worker.on('ready', () => this.onWorkerReady(worker));
    worker.on('exit', (exit) => this.onWorkerExit(worker, exit));
    // after onWorkerExit has taken it out of `workers`: a worker that exits releases its hold
    worker.on('ready', () => this.syncHolds());
    worker.on('exit', () => this.syncHolds());
    worker.on('backlog', (backedUp) => {
      if (backedUp) this.metrics.relayBacklogs.inc();
      this.syncHolds();
    });
    worker.on('stalled', (why) => this.cutOffRelay(worker, why));
    worker.on('bus', (message) => this.relay(message));
    worker.on('tls-reloaded', (at, files?: unknown, readAt?: unknown) => {
      // What a worker started from now on gets if the files on disk are broken then:
      // the bytes this worker installed (read again from disk only for a worker that sent none),
      // unless they were read before the pair held (reports of two workers cross).
      const got = this.lastGoodTls.reloaded(
        this.config,
        at,
        files === undefined ? undefined : { files, config, worker: worker.id, readAt },
      );
      if ('older' in got)
        this.log.debug(
          { at, worker: worker.id, behind_ms: got.older.behindMs },
          `last good TLS files of ${at} kept: an older pair than the one held`,
        );
      else if ('leaf' in got)
        this.log.info(
          {
            at,
            fingerprint: got.leaf.fingerprint256,
            not_after: got.leaf.validTo,
            from: got.from,
            worker: worker.id,
          },
          `last good TLS files of ${at} updated`,
        );
      else if (got.from === 'disk')
        this.log.warn(
          { at, err: errorMessage(got.error) },
          `last good TLS files of ${at} kept: the files changed again`,
        );
      else
        this.log.warn(
          {
            at,
            code: got.error instanceof HypError ? got.error.code : undefined,
            worker: worker.id,
            err: errorMessage(got.error),
          },
          `last good TLS files of ${at} kept: the pair worker ${worker.id} reported does not pass`,
        );
    });
    worker.on('history-publish', (m) => this.historyPublish(m, worker));
    worker.on('history-recover', (m) => this.historyRecover(worker, m));
    worker.on('nonce-claim', (m) => worker.send({ type: 'nonce-claimed', ...this.replayWindows.claim(m) }));
    worker.on('room', () => this.answerRecoveries(worker));
    worker.on('failing', (error) => this.replaceFailing(worker, error));
    return worker;
  }

  /**
   * A ready worker hit an uncaught exception. Its state may be damaged, but
   * its in-flight requests are probably fine: start a replacement in its
   * slot, and drain it once the replacement is ready (or could not start),
   * so neither its requests nor new connections are dropped. During a pod
   * drain or a roll, the drain already under way replaces it.
   */
  private replaceFailing(worker: WorkerProcess, error: string): void {
    if (worker.state !== 'ready' || worker.replacement !== undefined) return;
    if (this.state === 'draining' || this.state === 'stopped') return;
    // A worker of a roll still under way: replaced once the roll has made it current.
    if (worker.generation !== this.generation) return;
    this.metrics.restarts.inc({ reason: 'uncaught' });
    const fresh = this.spawnWorker(worker.slot, this.generation);
    worker.replacement = fresh;
    this.log.error(
      { worker: worker.id, worker_pid: worker.pid, gen: worker.generation, replacement: fresh.id, error },
      `worker ${worker.id} hit an uncaught exception; replacing it with worker ${fresh.id}, then draining it`,
    );
    // Drained by onWorkerReady when a worker of its slot is ready. If this one
    // fails to start, the slot's crash backoff starts another, and the damaged
    // worker keeps serving meanwhile: better than a slot with no worker.
    fresh.once('exit', () => {
      if (worker.replacement !== fresh || fresh.readyAt !== undefined) return;
      worker.replacement = undefined;
      if (worker.state === 'ready')
        this.log.error(
          { worker: worker.id, worker_pid: worker.pid, replacement: fresh.id },
          `the replacement of worker ${worker.id} failed to start; it keeps serving until one in its slot is ready`,
        );
    });
  }

  /** A worker is ready: a damaged (`failing`) one of its slot and generation can go now. */
  private retireFailing(ready: WorkerProcess): void {
    for (const w of this.workers.values()) {
      if (w === ready || w.slot !== ready.slot || w.generation !== ready.generation) continue;
      if (w.failing === undefined || w.state !== 'ready') continue;
      w.drain(
        Date.now() + durationMs(this.config.drain.timeout),
        `replaced by worker ${ready.id} after an uncaught exception`,
      );
      void this.metrics.keepCounts(this, w);
    }
  }

  private onWorkerReady(worker: WorkerProcess): void {
    this.log.info({ worker: worker.id, worker_pid: worker.pid, gen: worker.generation }, 'worker ready');
    if (worker.generation === this.generation) {
      this.retireFailing(worker);
      this.lastProblem = undefined;
      if (this.state === 'starting') {
        this.state = 'ready';
        this.log.info({ generation: this.generation }, 'supervisor ready');
        // known before a drain needs it
        this.watchEndpoints();
      }
    }
  }

  private onWorkerExit(worker: WorkerProcess, exit: WorkerExit): void {
    this.workers.delete(worker.id);
    this.metrics.workerExited(this);
    const how = exit.signal ? `signal ${exit.signal}` : `code ${exit.code}`;
    // Through drain.delay the pod still serves (the Service still sends traffic): a crash then is replaced.
    const expected = exit.wasState === 'draining' || !this.mayRestart();
    if (expected) {
      this.log.info(
        { worker: worker.id, worker_pid: worker.pid, gen: worker.generation, exit: how },
        'worker exited',
      );
      return;
    }
    // A worker of a generation still being rolled out: the roll handles it.
    if (worker.generation > this.generation) return;
    if (worker.generation < this.generation) return;
    // It crashed while its replacement was starting: that one takes the slot.
    if (worker.replacement !== undefined && worker.replacement.state !== 'exited') {
      this.log.error(
        { worker: worker.id, worker_pid: worker.pid, gen: worker.generation, exit: how },
        `worker exited before its replacement (worker ${worker.replacement.id}) was ready`,
      );
      return;
    }

    if (this.state === 'starting' && this.stopOnUnloadableApp(worker, exit)) return;

    // One restart per slot at a time (a failing worker and its replacement can both exit).
    if (this.pendingRestarts.has(worker.slot)) {
      this.log.error(
        { worker: worker.id, worker_pid: worker.pid, gen: worker.generation, exit: how },
        'worker exited unexpectedly; a restart of its slot is already pending',
      );
      return;
    }
    const reason = exit.killedFor ?? (exit.startError ? 'start-failed' : 'crash');
    this.metrics.restarts.inc({
      reason: reason === 'heartbeat timeout' ? 'heartbeat' : reason.split(' ')[0]!,
    });
    const backoff = this.backoffFor(worker.slot);
    const delay = backoff.next(worker.readyAt ? Date.now() - worker.readyAt : 0);
    // Exit 0 with no drain asked for is no clean exit: say so (the worker's HYP_E_APP_EXIT line names the call).
    const detail =
      exit.startError ?? `${reason}, ${how}${exit.code === 0 ? ' without being asked to drain' : ''}`;
    if (!this.hasReadyWorker()) this.lastProblem = `no ready worker: ${detail}`;
    this.log.error(
      {
        worker: worker.id,
        worker_pid: worker.pid,
        gen: worker.generation,
        exit: how,
        reason,
        attempt: backoff.attempts,
        restart_in_ms: delay,
      },
      `worker exited unexpectedly (${detail}); restarting in ${delay} ms`,
    );
    const timer = setTimeout(() => {
      this.pendingRestarts.delete(worker.slot);
      if (!this.mayRestart()) return;
      this.spawnWorker(worker.slot, this.generation);
    }, delay);
    this.pendingRestarts.set(worker.slot, timer);
  }

  /**
   * No worker has been ready yet and one could not load the app module (no
   * such file, not a `defineApp` default export; catalog exit 2): every
   * worker loads the same file, so a restart cannot help. Stop the pod with
   * that error and exit 2, as a bad config does, instead of restarting
   * workers forever behind a 503.
   */
  private stopOnUnloadableApp(worker: WorkerProcess, exit: WorkerExit): boolean {
    const code = exit.startError?.split(':', 1)[0] ?? '';
    if (!Object.hasOwn(catalog, code) || (catalog[code as ErrorCode] as CatalogEntry).exit !== 2)
      return false;
    this.log.fatal(
      { code, worker: worker.id, worker_pid: worker.pid, gen: worker.generation },
      `${exit.startError}; no worker can start, so the pod stops (exit 2)`,
    );
    for (const w of this.workers.values()) w.kill('app cannot be loaded');
    for (const l of this.listeners) l.close();
    removePidFile(this.config.supervisor.pid_file);
    void this.finish(2);
    return true;
  }

  /** Crashed workers are restarted until the pod drain stops serving (the end of drain.delay). */
  private mayRestart(): boolean {
    if (this.state === 'draining') return this.drainPhase === 'delay';
    return this.state === 'starting' || this.state === 'ready';
  }

  private backoffFor(slot: number): Backoff {
    let b = this.backoffs.get(slot);
    if (!b) {
      const s = this.config.supervisor;
      b = new Backoff(durationMs(s.backoff_initial), durationMs(s.backoff_max), durationMs(s.backoff_reset));
      this.backoffs.set(slot, b);
    }
    return b;
  }

  private checkHeartbeats(): void {
    const timeout = durationMs(this.config.supervisor.heartbeat_timeout);
    const readyTimeout = durationMs(this.config.supervisor.ready_timeout);
    const now = Date.now();
    for (const w of this.workers.values()) {
      if (w.state === 'exited') continue;
      if (w.heardFrom && now - w.lastHeartbeat > timeout) {
        this.log.error(
          {
            code: 'HYP_E_WORKER_HEARTBEAT',
            worker: w.id,
            worker_pid: w.pid,
            silent_ms: now - w.lastHeartbeat,
          },
          `${
            new HypError('HYP_E_WORKER_HEARTBEAT', {
              worker: w.id,
              timeout: this.config.supervisor.heartbeat_timeout,
            }).message
          } (its event loop was blocked, or the process stopped)`,
        );
        w.kill('heartbeat timeout');
      } else if (
        w.state === 'spawning' &&
        w.uptimeMs(now) > readyTimeout &&
        w.generation <= this.generation
      ) {
        this.log.error(
          { code: 'HYP_E_WORKER_READY_TIMEOUT', worker: w.id, worker_pid: w.pid },
          new HypError('HYP_E_WORKER_READY_TIMEOUT', {
            worker: w.id,
            timeout: this.config.supervisor.ready_timeout,
          }).message,
        );
        w.kill('ready timeout');
      }
    }
  }

  hasReadyWorker(generation = this.generation): boolean {
    for (const w of this.workers.values())
      if (w.generation === generation && w.state === 'ready') return true;
    return false;
  }

  currentWorkers(): WorkerProcess[] {
    return [...this.workers.values()].filter((w) => w.generation === this.generation);
  }

  readiness(): { ready: boolean; reason: string } {
    if (this.state === 'draining' || this.state === 'stopped') return { ready: false, reason: 'draining' };
    if (!this.hasReadyWorker()) return { ready: false, reason: this.lastProblem ?? 'no ready worker' };
    return { ready: true, reason: 'ok' };
  }

  /**
   * Start generation g+1, wait until every new worker is ready, then drain
   * the older generations. A new generation that does not get ready within
   * `supervisor.ready_timeout` is killed and g keeps serving.
   * Requests during a roll are coalesced into one more roll afterwards.
   */
  rollGeneration(reason: string): Promise<RollResult> {
    if (this.state === 'draining' || this.state === 'stopped') {
      return Promise.resolve({ ok: false, generation: this.generation, error: 'supervisor is draining' });
    }
    if (this.rolling) {
      this.rollAgain = true;
      return this.rolling;
    }
    this.rolling = this.doRoll(reason)
      .catch((err: unknown): RollResult => {
        // Nobody may be waiting (SIGUSR2, POST /restart without wait): never an unhandled rejection.
        const detail = errorMessage(err);
        this.log.error(
          { err, generation: this.generation + 1, kept: this.generation },
          new HypError('HYP_E_GENERATION_FAILED', { generation: this.generation + 1, detail }).message,
        );
        this.metrics.rollFailures.inc();
        this.lastRoll = { ok: false, generation: this.generation, error: detail };
        return this.lastRoll;
      })
      .finally(() => {
        this.rolling = undefined;
        if (this.rollAgain) {
          this.rollAgain = false;
          void this.rollGeneration(`${reason} (coalesced)`);
        }
      });
    return this.rolling;
  }

  private async doRoll(reason: string): Promise<RollResult> {
    const next = this.generation + 1;
    // The config of the new generation: the latest re-read one, else the running one.
    const config = this.pendingConfig ?? this.config;
    this.pendingConfig = undefined;
    const count = workerCountOf(config);
    this.log.info({ reason, from: this.generation, to: next, workers: count }, 'rolling restart');
    this.shareTicketKeys(config);
    const fresh = Array.from({ length: count }, (_, slot) => this.spawnWorker(slot, next, config));
    const timeoutMs = durationMs(config.supervisor.ready_timeout);
    const error = await new Promise<string | undefined>((resolve) => {
      let ready = 0;
      const timer = setTimeout(
        () => resolve(`not ready within ${config.supervisor.ready_timeout}`),
        timeoutMs,
      );
      for (const w of fresh) {
        w.once('ready', () => {
          if (++ready === fresh.length) {
            clearTimeout(timer);
            resolve(undefined);
          }
        });
        w.once('exit', (exit) => {
          clearTimeout(timer);
          resolve(exit.startError ?? `worker ${w.id} exited (${exit.signal ?? exit.code}) before ready`);
        });
      }
    });
    if (error || this.state === 'draining' || this.state === 'stopped') {
      // New workers that got ready have been accepting on the shared sockets:
      // drain them (a SIGKILL would cut their connections). During a pod
      // drain, that drain takes every worker (it started before the drain).
      if (this.state !== 'draining' && this.state !== 'stopped') {
        const deadline = Date.now() + durationMs(this.config.drain.timeout);
        for (const w of fresh) {
          if (w.state === 'spawning') w.kill('generation aborted');
          else w.drain(deadline, 'generation aborted');
        }
      }
      const detail = error ?? 'supervisor started draining';
      this.log.error(
        { generation: next, kept: this.generation },
        new HypError('HYP_E_GENERATION_FAILED', { generation: next, detail }).message,
      );
      this.metrics.rollFailures.inc();
      // Its config is not adopted: a worker that crashes later comes back as the running generation's.
      if (error && config !== this.config)
        this.log.error(
          { generation: this.generation },
          `the re-read configuration is not adopted (generation ${next} failed with it): generation ${this.generation} and its config stay; a SIGHUP re-reads the file again`,
        );
      this.lastRoll = { ok: false, generation: this.generation, error: detail };
      return this.lastRoll;
    }
    if (config !== this.config) this.adopt(config, next);
    const old = [...this.workers.values()].filter((w) => w.generation < next);
    for (const timer of this.pendingRestarts.values()) clearTimeout(timer);
    this.pendingRestarts.clear();
    this.backoffs.clear();
    this.generation = next;
    this.lastProblem = undefined;
    for (const w of fresh) if (w.failing !== undefined) this.replaceFailing(w, w.failing);
    if (this.state === 'starting') this.state = 'ready';
    const deadline = Date.now() + durationMs(this.config.drain.timeout);
    for (const w of old) {
      this.metrics.restarts.inc({ reason: 'rolling' });
      w.drain(deadline, `generation ${next} ready`);
      // What it counted since the last scrape would go with it.
      void this.metrics.keepCounts(this, w);
    }
    this.log.info({ generation: next, draining: old.length }, 'generation ready; old generation draining');
    this.lastRoll = { ok: true, generation: next };
    return this.lastRoll;
  }

  /**
   * SIGHUP: re-read the config and roll with it. A config that cannot be
   * loaded (file gone, invalid, unusable TLS files) is refused: logged with
   * why and counted, and the roll (the signal's contract) keeps the running
   * config. Keys fixed for the pod's life are named and kept. The new config
   * becomes the running one only once its generation is ready.
   */
  async reload(): Promise<RollResult> {
    if (!this.opts.reloadConfig) return this.rollGeneration('SIGHUP');
    if (this.state === 'draining' || this.state === 'stopped') {
      this.log.warn('SIGHUP during the pod drain: the config is not re-read and no roll starts');
      return { ok: false, generation: this.generation, error: 'supervisor is draining' };
    }
    let next: Config;
    try {
      next = this.opts.reloadConfig();
      // As at start: unusable certificate or key files are refused before any worker gets them.
      checkTlsFiles(next);
    } catch (err) {
      const why =
        err instanceof ConfigError
          ? err.lines().join('; ')
          : err instanceof HypError
            ? `${err.code}: ${err.message}`
            : errorMessage(err);
      this.log.error(
        { code: (err as HypError).code, generation: this.generation },
        `config reload failed, keeping the running config (the rolling restart uses it): ${why}`,
      );
      this.metrics.reloadFailures.inc();
      // SIGHUP is a rolling restart (ARCHITECTURE.md §signals) whatever the file says.
      return this.rollGeneration('SIGHUP');
    }
    this.keepPodLifeKeys(next);
    this.pendingConfig = next;
    this.log.info('configuration re-read; rolling to apply it');
    return this.rollGeneration('SIGHUP');
  }

  /**
   * Keys fixed for the pod's life: the held listeners (server.addr, each
   * tcp.<name>, added or removed), admin.addr and the PID file (written at
   * start, removed at exit, found by `hyp`). A change is named in a warning
   * and the running value is kept; the rest of `next` applies.
   */
  private keepPodLifeKeys(next: Config): void {
    const running = this.config;
    const fixed = (key: string, was: string, now: string): boolean => {
      if (was === now) return false;
      this.log.warn(
        { key, running: was, ignored: now },
        `${key} changed in config from ${JSON.stringify(was)} to ${JSON.stringify(now)}: it is fixed for the pod's life and applies at the next pod start`,
      );
      return true;
    };
    if (fixed('server.addr', running.server.addr, next.server.addr)) next.server.addr = running.server.addr;
    if (fixed('admin.addr', running.admin.addr, next.admin.addr)) next.admin.addr = running.admin.addr;
    if (fixed('supervisor.pid_file', running.supervisor.pid_file, next.supervisor.pid_file))
      next.supervisor.pid_file = running.supervisor.pid_file;
    if (next.app !== running.app) {
      this.log.warn(
        { key: 'app', running: this.opts.app, ignored: next.app },
        `app changed in config from ${JSON.stringify(running.app)} to ${JSON.stringify(next.app)}: workers keep loading ${this.opts.app} (the application module is fixed for the pod's life, and \`hyp run <app>\` names it over the config); the change applies at the next pod start`,
      );
      next.app = running.app;
    }
    const tcp: Config['tcp'] = {};
    for (const [name, held] of Object.entries(running.tcp)) {
      const wanted = next.tcp[name];
      if (wanted === undefined) {
        this.log.warn(
          { key: `tcp.${name}` },
          `tcp.${name} removed from config: its listener is held for the pod's life; it keeps being served with its running settings until the next pod start`,
        );
        tcp[name] = held;
        continue;
      }
      if (fixed(`tcp.${name}.addr`, held.addr, wanted.addr)) wanted.addr = held.addr;
      tcp[name] = wanted;
    }
    for (const name of Object.keys(next.tcp)) {
      if (Object.hasOwn(running.tcp, name)) continue;
      this.log.warn(
        { key: `tcp.${name}`, ignored: next.tcp[name]?.addr },
        `tcp.${name} added to config: listeners are bound once per pod, so it is served from the next pod start`,
      );
    }
    next.tcp = tcp;
    if (next.log.format !== running.log.format)
      this.log.warn(
        { key: 'log.format', running: running.log.format, workers: next.log.format },
        "log.format changed in config: new workers use it; the supervisor's own lines keep their format until the next pod start",
      );
    const ws = next.websocket;
    if (
      ws.bus.driver === 'ipc' &&
      (ws.history_size !== running.websocket.history_size ||
        ws.history_bytes !== running.websocket.history_bytes)
    )
      this.log.warn(
        { key: 'websocket.history_size', running: running.websocket.history_size },
        "websocket.history_size/history_bytes changed in config: the supervisor's pod-wide history (ipc bus) keeps the bounds it started with until the next pod start",
      );
  }

  /** The roll that carried `config` has made it current. */
  private adopt(config: Config, generation: number): void {
    const watched = JSON.stringify(this.config.drain.endpoints);
    this.config = config;
    if (JSON.stringify(config.drain.endpoints) !== watched) {
      this.endpoints?.stop();
      this.endpoints = undefined;
      this.watchEndpoints();
    }
    this.rescheduleTicketKeys(config);
    // The supervisor's own lines follow log.level too (the logger is shared with the admin server).
    this.log.level = config.log.level;
    this.log.info({ generation }, 'configuration reloaded');
  }

  /** Forward a bus message to every other live worker. */
  private relay(message: BusMessage): void {
    for (const w of this.workers.values()) {
      if (w.id === message.origin || w.state === 'exited' || w.state === 'spawning') continue;
      if (w.relayCutOff !== undefined) continue;
      w.send({ type: 'bus', message });
    }
  }

  /**
   * A worker that reads what is relayed slower than the pod publishes makes
   * Node queue the rest here, in the supervisor. While one is backed up
   * (worker-process.ts), every other worker serving clients holds: it stops
   * reading clients that publish (`bus-hold`, apps/server/ws/ipc-flow.ts)
   * until the backed-up one has caught up, or the relay gave up on it
   * (`bus-release`). Nothing is dropped; publishers wait in TCP flow control.
   * A worker that is not ready yet is told once it is (it has no clients before).
   *
   * Sending a hold can itself back a worker up (a `backlog` event inside
   * `send`): that call only asks for another pass, so no pass acts on a
   * stale list. A send can only back a worker up or cut it off, once each,
   * so passes end (bounded all the same).
   */
  private syncHolds(): void {
    if (this.syncingHolds) {
      this.syncHoldsAgain = true;
      return;
    }
    this.syncingHolds = true;
    try {
      for (let pass = 0; pass <= 2 * this.workers.size + 1; pass++) {
        this.syncHoldsAgain = false;
        const backedUp: WorkerProcess[] = [];
        for (const w of this.workers.values())
          if (w.backedUpSince !== undefined && w.relayCutOff === undefined && w.state !== 'exited')
            backedUp.push(w);
        for (const w of this.workers.values()) {
          const serving = w.state === 'ready' || w.state === 'draining';
          const hold = serving && w.relayCutOff === undefined && backedUp.some((b) => b !== w);
          if (hold === w.holding) continue;
          w.holding = hold;
          w.send({ type: hold ? 'bus-hold' : 'bus-release' });
        }
        if (!this.syncHoldsAgain) break;
      }
    } finally {
      this.syncingHolds = false;
    }
  }

  /**
   * The relay gives up on a worker that did not catch up (backed up and
   * reading nothing for heartbeat_timeout, or past relayMaxBacklogBytes
   * waiting): nothing more
   * is relayed to it, the others are released, and it is killed and
   * replaced, as for a missed heartbeat. Its clients see their connection
   * close and reconnect to another worker (resuming from the pod's history
   * where the channel keeps one), instead of silently missing what was no
   * longer relayed to them.
   */
  private cutOffRelay(worker: WorkerProcess, why: string): void {
    if (worker.state === 'exited') return;
    this.metrics.relayCutoffs.inc();
    const { messages, bytes } = worker.backlog;
    const err = new HypError('HYP_E_WORKER_RELAY_STALLED', { worker: worker.id, detail: why });
    this.log.error(
      {
        code: err.code,
        worker: worker.id,
        worker_pid: worker.pid,
        backlog_messages: messages,
        backlog_bytes: bytes,
        backed_up_ms: worker.backedUpSince === undefined ? 0 : Date.now() - worker.backedUpSince,
      },
      err.message,
    );
    worker.kill('relay stalled');
    this.syncHolds();
  }

  /**
   * Pod-wide channel history: assign the offset, keep the payload, deliver to
   * every live worker (the publisher too, so all deliver in the same order)
   * that wants them (not one still loading its app: `wantsHistory`).
   * The publisher's copy is marked `own`: a hold sent to a backed-up
   * publisher would wait behind its own backlog, so it holds its clients
   * itself once too many of its publishes are not back yet (ipc-flow.ts).
   */
  private historyPublish(m: HistoryPublish, from: WorkerProcess): void {
    if (typeof m.topic !== 'string' || typeof m.channel !== 'string' || !(m.payload instanceof Uint8Array))
      return;
    const offset = this.history.append(`${m.topic}\u0000${m.channel}`, m.payload);
    const delivery = {
      type: 'history',
      topic: m.topic,
      channel: m.channel,
      offset,
      payload: m.payload,
    } as const;
    for (const w of this.workers.values())
      if (w.state !== 'exited' && w.relayCutOff === undefined && w.wantsHistory)
        w.send(w === from ? { ...delivery, own: true } : delivery);
  }

  /**
   * A worker's recovery request: what follows the offset, or why it cannot be
   * replayed. Answered as the worker reads: a page is up to 1 MiB, and many
   * clients resuming on one worker at once (as after another worker was
   * replaced) would otherwise put far more than the relay's 32 MiB bound
   * in its queue at once, cut it off, and send its clients on to do the same
   * to the next worker. Requests wait here meanwhile, in order, small.
   */
  private historyRecover(worker: WorkerProcess, m: HistoryRecoverRequest): void {
    if (typeof m.topic !== 'string' || typeof m.channel !== 'string' || typeof m.offset !== 'string') return;
    if (worker.recoveries.length >= maxWaitingRecoveries) {
      worker.send(this.recoveryRefusal(m, `${maxWaitingRecoveries} recoveries wait for this worker to read`));
      return;
    }
    worker.recoveries.push({ request: m, at: Date.now() });
    this.answerRecoveries(worker);
  }

  /** Answers `worker`'s waiting recovery requests while it has room for them. */
  private answerRecoveries(worker: WorkerProcess): void {
    const waiting = worker.recoveries;
    while (waiting.length > 0 && worker.state !== 'exited' && worker.relayCutOff === undefined) {
      if (!worker.hasRoom) {
        worker.waitForRoom();
        return;
      }
      const { request, at } = waiting.shift()!;
      // the worker gave up on it (ipc-history.ts): no page nobody waits for
      const stale = Date.now() - at > recoveryTimeoutMs;
      // one reply carries at most ~1 MiB of payload: a long gap is paged, never one huge IPC message
      worker.send(
        stale
          ? this.recoveryRefusal(request, `not answered within ${recoveryTimeoutMs} ms`)
          : this.history.recoveryReply(request, 1024 * 1024),
      );
    }
  }

  private recoveryRefusal(m: HistoryRecoverRequest, reason: string): SupervisorMessage {
    return {
      type: 'history-recovered',
      id: m.id,
      topic: m.topic,
      head: this.history.head(`${m.topic}\u0000${m.channel}`),
      ok: false,
      entries: [],
      reason,
    };
  }

  /** Distribute new TLS session-ticket keys to every worker (and to future ones). */
  setTicketKeys(keys: TicketKeys): void {
    this.ticketKeys = keys;
    for (const w of this.workers.values()) w.send({ type: 'tls-keys', keys });
  }

  /**
   * Pod drain: /ready turns 503 at once, keep serving for drain.delay, then
   * drain every worker within drain.timeout, close the sockets, remove the
   * PID file and stop.
   */
  drain(source: string): Promise<void> {
    this.draining ??= this.doDrain(source).catch((err: unknown) => {
      // Callers do not wait (a signal, POST /drain): a failed drain still ends the pod, with exit 1.
      this.log.error({ err }, `pod drain failed: ${errorMessage(err)}`);
      this.forceStop('drain failure');
    });
    return this.draining;
  }

  private async doDrain(source: string): Promise<void> {
    this.state = 'draining';
    this.drainPhase = 'delay';
    this.drainStartedAt = Date.now();
    const delay = durationMs(this.config.drain.delay);
    const timeout = durationMs(this.config.drain.timeout);
    this.log.info(
      {
        source,
        delay_ms: delay,
        timeout_ms: timeout,
        service: this.config.drain.endpoints.service || undefined,
      },
      'pod drain: not ready; serving through the delay',
    );
    await this.serveThroughDelay(this.drainStartedAt, delay);

    // From here on no worker is started: every one there now is drained.
    this.drainPhase = 'workers';
    this.log.info({ workers: this.workers.size }, 'pod drain: draining workers');
    for (const timer of this.pendingRestarts.values()) clearTimeout(timer);
    this.pendingRestarts.clear();
    const deadline = Date.now() + timeout;
    const remaining = [...this.workers.values()];
    for (const w of remaining) w.drain(deadline, 'pod drain');
    const exits = await Promise.all(remaining.map((w) => w.exited));
    const killed = exits.filter((e) => e.killedFor === 'drain deadline').length;
    if (killed > 0) {
      this.log.error(
        { killed },
        new HypError('HYP_E_DRAIN_TIMEOUT', { timeout: this.config.drain.timeout, remaining: killed })
          .message,
      );
    }

    this.drainPhase = 'closing';
    for (const l of this.listeners) l.close();
    removePidFile(this.config.supervisor.pid_file);
    this.metrics.drainSeconds.set((Date.now() - this.drainStartedAt) / 1000);
    this.drainPhase = 'done';
    this.log.info({ took_ms: Date.now() - this.drainStartedAt }, 'pod drained; exiting');
    await this.finish(0);
  }

  /**
   * The pod's place in its Service's EndpointSlices as the watch sees it
   * (`GET /drain`); undefined while no watch runs (no drain.endpoints.service,
   * or not ready yet).
   */
  endpointsView(): (EndpointsTarget & EndpointsView) | undefined {
    const watch = this.endpoints;
    return watch === undefined ? undefined : { ...watch.target, ...watch.view() };
  }

  /** Watch the pod's place in drain.endpoints.service's EndpointSlices, if one is set and no watch runs. */
  private watchEndpoints(): void {
    const wanted = this.config.drain.endpoints;
    if (wanted.service === '' || this.endpoints || this.state === 'stopped') return;
    const { target, problem } = endpointsTarget(wanted);
    this.endpoints = new EndpointsWatch(target, this.log);
    if (problem !== undefined) this.endpoints.failWithout(problem);
    else void this.endpoints.start();
  }

  /**
   * The serving phase of a pod drain: drain.delay, or less once the pod has
   * left its Service's EndpointSlices, plus drain.endpoints.settle for the
   * kube-proxies and load balancers to apply the change. drain.delay stays the
   * upper bound (the grace period is computed from it).
   */
  private async serveThroughDelay(startedAt: number, delay: number): Promise<void> {
    this.watchEndpoints();
    const watch = this.endpoints;
    if (!watch) return sleep(delay);
    const { service, pod } = watch.target;
    const endsAt = startedAt + delay;
    let timer: NodeJS.Timeout | undefined;
    const delayOver = new Promise<void>((resolve) => {
      timer = setTimeout(resolve, delay);
    });
    try {
      // Each pass waits for a change of the watch's view or the end of the delay.
      while (Date.now() < endsAt) {
        const view = watch.view();
        if (view.state === 'left') {
          const afterMs = Math.max(0, view.at - startedAt);
          this.metrics.endpointsLeftSeconds.set({ service }, afterMs / 1000);
          const settle = durationMs(this.config.drain.endpoints.settle);
          const until = Math.min(endsAt, Math.max(view.at, startedAt) + settle);
          this.log.info(
            { pod, service, after_ms: afterMs, settle_ms: settle },
            `pod ${pod} left the endpoints of service ${service}; serving until drain.endpoints.settle is over`,
          );
          await Promise.race([delayOver, sleep(Math.max(0, until - Date.now()))]);
          return;
        }
        await Promise.race([delayOver, watch.changed()]);
      }
    } finally {
      clearTimeout(timer);
    }
    const view = watch.view();
    if (view.state === 'listed') {
      this.metrics.endpointsStillListed.inc({ service });
      const err = new HypError('HYP_W_DRAIN_ENDPOINTS', { pod, service, delay: this.config.drain.delay });
      this.log.warn({ code: err.code, pod, service }, err.message);
    } else if (view.state === 'never-listed') {
      const err = new HypError('HYP_W_DRAIN_ENDPOINTS_UNAVAILABLE', {
        service,
        cause: `pod ${pod} has not been in them since the watch began (check drain.endpoints.service and drain.endpoints.pod)`,
      });
      this.log.warn({ code: err.code, pod, service }, err.message);
    } else if (view.state === 'unknown') {
      this.log.info(
        { pod, service, cause: view.cause },
        `pod drain: drain.delay is over; the endpoints were not known (${view.cause})`,
      );
    }
  }

  private forceStop(signal: string): void {
    this.log.error({ signal }, new HypError('HYP_E_FORCED_STOP').message);
    for (const w of this.workers.values()) w.kill('forced stop');
    for (const l of this.listeners) l.close();
    removePidFile(this.config.supervisor.pid_file);
    void this.finish(1);
  }

  private async finish(code: number): Promise<void> {
    if (this.state === 'stopped') return;
    this.state = 'stopped';
    if (this.watchdog) clearInterval(this.watchdog);
    this.ticketRotation?.stop();
    this.endpoints?.stop();
    for (const hook of this.onStop) {
      try {
        await hook();
      } catch {}
    }
    this.resolveStopped(code);
    (this.opts.exit ?? process.exit)(code);
  }
}

function workerCountOf(config: Config): number {
  return config.supervisor.workers > 0 ? config.supervisor.workers : availableCpus();
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** The TLS settings whose `ticket_rotation` drives the shared keys (the HTTP listener's first), if any share them. */
function sharedTicketTls(config: Config): { at: string; tls: Config['server']['tls'] } | undefined {
  return enabledTlsConfigs(config).find(({ tls }) => tls.share_ticket_keys);
}
