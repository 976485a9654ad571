/**
 * One worker process as the supervisor sees it:
 * `spawning → ready → draining → exited`.
 *
 * The held listener fds go to the child at 3..n (`LISTEN_FDS`,
 * `LISTEN_FDNAMES`) with the IPC channel right after them.
 *
 * What the supervisor sends a worker that does not read its IPC channel
 * (event loop busy, SIGSTOP, a debugger) Node queues in the supervisor,
 * without bound. So every send is counted until Node has written it: once
 * Node's `send()` says stop (more than 128 KiB unwritten) with more than
 * `relayLowWater` messages or `relayLowWaterBytes` waiting, the worker is
 * backed up (`backlog` true) until no more than both wait (`backlog`
 * false); the supervisor then
 * holds the other workers' publishing clients (supervisor.ts `syncHolds`).
 * A backed-up worker that reads nothing for `relayStallMs` (stopped, or
 * its loop blocked), or with more than `relayMaxBacklogBytes` waiting, is
 * `stalled`: the relay gives up on it. One that is slow but reading is not
 * stalled by time: it holds the others, and only the byte bound applies;
 * nor is one that has not sent its first heartbeat yet (still loading).
 */
import { ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Config } from './config/schema.js';
import { durationMs } from './config/units.js';
import { errorMessage, HypError } from './errors.js';
import {
  type BusMessage,
  type HistoryPublish,
  type HistoryRecoverRequest,
  isWorkerMessage,
  type NonceClaim,
  type SupervisorMessage,
  type TicketKeys,
  type WorkerLoad,
  workerEnv,
} from './ipc.js';
import type { HeldListener } from './listeners.js';
import { createLogger, type Logger } from './log.js';
import type { TlsFiles } from './tlscheck.js';

export type WorkerState = 'spawning' | 'ready' | 'draining' | 'exited';

export interface SpawnOptions {
  id: number;
  slot: number;
  generation: number;
  entry: string;
  app: string;
  config: Config;
  listeners: readonly HeldListener[];
  execArgv?: string[];
  ticketKeys?: TicketKeys | undefined;
  /** The supervisor's last good TLS files per listener, for a worker that finds them broken on disk. */
  tlsFallback?: Record<string, TlsFiles> | undefined;
  /** Where malformed IPC messages are reported (default: a supervisor logger from `config.log`). */
  log?: Logger | undefined;
  /** How long a backed-up worker may read nothing before it is `stalled` (default: `supervisor.heartbeat_timeout`). */
  relayStallMs?: number | undefined;
}

export interface WorkerExit {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** Set when the supervisor killed it (heartbeat, ready timeout, drain deadline, forced stop). */
  killedFor: string | undefined;
  /** Reported by the worker before it exited on a failed start. */
  startError: string | undefined;
  wasState: WorkerState;
}

interface WorkerEvents {
  ready: [];
  exit: [WorkerExit];
  bus: [BusMessage];
  'history-publish': [HistoryPublish];
  'history-recover': [HistoryRecoverRequest];
  'nonce-claim': [NonceClaim];
  failing: [string];
  /** True once the worker's IPC channel is backed up, false once it caught up. */
  backlog: [boolean];
  /** `hasRoom` again, after `waitForRoom`. */
  room: [];
  /** The worker did not catch up (why): nothing more should be relayed to it. Once. */
  stalled: [string];
  /**
   * A certificate reload installed new files for the TLS listener at this key
   * path; the bytes the worker reported and when it read them (`readAt`),
   * unchecked (undefined from a worker that sent none): the supervisor
   * checks them (tlscheck.ts LastGoodTls).
   */
  'tls-reloaded': [string, unknown, unknown];
}

const emptyLoad: WorkerLoad = { connections: 0, inflight: 0, wsClients: 0, rss: 0, loopDelayMs: 0 };
const loadFields = ['connections', 'inflight', 'wsClients', 'rss', 'loopDelayMs'] as const;

/** Longest worker-supplied text kept (start errors, failing reasons): they end up in logs and /ready. */
const maxReportedChars = 2000;
/** Malformed messages logged per worker; past that they are only dropped (an app could send them in a loop). */
const maxReportedMalformed = 10;

/** Messages still unwritten at or below which a backed-up worker has caught up (as the worker's ipc-flow.ts). */
export const relayLowWater = 16;
/**
 * Estimated bytes unwritten past which a worker is backed up however few
 * messages they are: with large messages (max_message_size past 2 MiB), 16
 * of them are already past `relayMaxBacklogBytes`, and a worker that only
 * paused was cut off before any hold.
 */
export const relayLowWaterBytes = 4 * 1024 * 1024;
/**
 * Estimated bytes unwritten below which a history page (up to 1 MiB) is sent
 * to a worker: replays go at the pace it reads them, and stay below
 * `relayLowWaterBytes` so they alone do not hold the pod.
 */
export const recoveryRoomBytes = 2 * 1024 * 1024;
/** Estimated bytes waiting for one worker past which it is `stalled`, however long it has been backed up. */
export const relayMaxBacklogBytes = 32 * 1024 * 1024;

/**
 * About what a message takes in the supervisor until it is written: its
 * payloads' bytes plus a fixed share for the rest. Node does not say.
 */
function estimatedBytes(message: SupervisorMessage): number {
  const overhead = 256;
  switch (message.type) {
    case 'bus': {
      const payload = message.message.payload;
      if (payload instanceof Uint8Array) return overhead + payload.byteLength;
      if (typeof payload === 'string') return overhead + payload.length * 3;
      return overhead * 4;
    }
    case 'history':
      return overhead + message.payload.byteLength;
    case 'history-recovered': {
      let bytes = overhead;
      for (const entry of message.entries) bytes += 64 + entry.payload.byteLength;
      return bytes;
    }
    default:
      return overhead;
  }
}

let fallbackLog: Logger | undefined;
function defaultLog(config: Config): Logger {
  fallbackLog ??= createLogger({ role: 'supervisor', level: config.log.level, format: config.log.format });
  return fallbackLog;
}

/**
 * A heartbeat's load. Figures that are not finite numbers ≥ 0 count as 0 and
 * are named in `bad`: the heartbeat still proves the worker alive (a counting
 * slip in the worker must not get it killed), but /status stays numeric.
 */
function loadOf(m: Record<string, unknown>): { load: WorkerLoad; bad: string[] } {
  const load = { ...emptyLoad };
  const bad: string[] = [];
  for (const field of loadFields) {
    const v = m[field];
    if (typeof v === 'number' && Number.isFinite(v) && v >= 0) load[field] = v;
    else bad.push(field);
  }
  return { load, bad };
}

/** Nonces one claim may carry, and bytes per nonce (a GCM nonce is 12, a MAC 32). */
export const maxClaimNonces = 4096;
const maxNonceBytes = 64;

/** What is wrong with a `nonce-claim?` (undefined: nothing); the supervisor answers none that is. */
function malformedClaim(m: Record<string, unknown>): string | undefined {
  const { id, topic, windowMs, maxEntries, nonces, stamps } = m;
  if (typeof id !== 'number' || typeof topic !== 'string') return 'nonce-claim? without id and topic';
  if (!Number.isSafeInteger(windowMs) || (windowMs as number) < 1)
    return 'nonce-claim? windowMs is not a positive integer';
  if (!Number.isSafeInteger(maxEntries) || (maxEntries as number) < 1)
    return 'nonce-claim? maxEntries is not a positive integer';
  if (!Array.isArray(nonces) || !Array.isArray(stamps) || nonces.length !== stamps.length)
    return 'nonce-claim? without nonces and stamps of one length';
  if (nonces.length > maxClaimNonces) return `nonce-claim? with more than ${maxClaimNonces} nonces`;
  for (let i = 0; i < nonces.length; i++) {
    const nonce: unknown = nonces[i];
    if (!(nonce instanceof Uint8Array) || nonce.byteLength === 0 || nonce.byteLength > maxNonceBytes)
      return `nonce-claim? nonce ${i} is not 1 to ${maxNonceBytes} bytes`;
    if (typeof stamps[i] !== 'bigint') return `nonce-claim? stamp ${i} is not a bigint`;
  }
  return undefined;
}

function text(v: unknown): string | undefined {
  return typeof v === 'string' ? v.slice(0, maxReportedChars) : undefined;
}

export class WorkerProcess extends EventEmitter<WorkerEvents> {
  readonly id: number;
  readonly slot: number;
  readonly generation: number;
  readonly startedAt = Date.now();
  state: WorkerState = 'spawning';
  lastHeartbeat = Date.now();
  /** Set by the first heartbeat; until then only the ready timeout applies (slow module loading is not a hang). */
  heardFrom = false;
  load: WorkerLoad = emptyLoad;
  readyAt: number | undefined;
  /** Set when the worker reported an uncaught exception (what it was). */
  failing: string | undefined;
  /** The worker started in this one's slot to replace it after that. */
  replacement: WorkerProcess | undefined;
  /** Since when the worker's IPC channel has been backed up (Date.now()); undefined while it keeps up. */
  backedUpSince: number | undefined;
  /** Why the relay gave up on this worker (`stalled`); nothing more is relayed to it. */
  relayCutOff: string | undefined;
  /** The supervisor told it to hold its publishing clients (`bus-hold` sent, no `bus-release` yet). */
  holding = false;
  /**
   * Channel history is delivered to it (supervisor.ts `historyPublish`) from
   * the first message it sends that needs them: `ready`, a publish (its own
   * comes back), a subscribe's recovery request. Before, a worker still
   * loading its app has no use for them, and one whose loading blocks its
   * loop would back up on them and hold the pod. The supervisor reads these
   * before anything that could depend on what it delivers after.
   */
  wantsHistory = false;
  /** Its history recovery requests not answered yet, oldest first, with when they came (supervisor.ts). */
  readonly recoveries: Array<{ request: HistoryRecoverRequest; at: number }> = [];
  private waitingForRoom = false;
  private unwritten = 0;
  private unwrittenBytes = 0;
  private readonly relayStallMs: number;
  private stallTimer: NodeJS.Timeout | undefined;
  /** When Node last wrote a message to the worker (Date.now()), kept while it is backed up. */
  private lastWrittenAt = 0;
  private readonly child: ChildProcess;
  private killedFor: string | undefined;
  private startError: string | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private nextRequest = 1;
  private readonly pending = new Map<number, (metrics: unknown[]) => void>();
  private readonly log: Logger;
  private malformed = 0;
  readonly exited: Promise<WorkerExit>;

  constructor(opts: SpawnOptions) {
    super();
    this.id = opts.id;
    this.slot = opts.slot;
    this.generation = opts.generation;
    this.log = opts.log ?? defaultLog(opts.config);
    this.relayStallMs = opts.relayStallMs ?? durationMs(opts.config.supervisor.heartbeat_timeout);
    const fds = opts.listeners.map((l) => l.fd);
    let spawnError: unknown;
    try {
      this.child = spawn(process.execPath, [...(opts.execArgv ?? []), opts.entry], {
        stdio: ['ignore', 'inherit', 'inherit', ...fds, 'ipc'],
        serialization: 'advanced',
        env: {
          ...process.env,
          [workerEnv.listenFds]: String(fds.length),
          [workerEnv.listenFdNames]: opts.listeners.map((l) => l.name).join(':'),
          [workerEnv.role]: 'worker',
          [workerEnv.workerId]: String(opts.id),
          [workerEnv.generation]: String(opts.generation),
        },
      });
    } catch (err) {
      // Node throws for some spawn errors (E2BIG, ENOMEM, ...): a child that never was.
      spawnError = err;
      this.child = new ChildProcess();
    }
    this.exited = new Promise((resolve) => {
      const finish = (code: number | null, signal: NodeJS.Signals | null) => {
        if (this.state === 'exited') return;
        const exit: WorkerExit = {
          code,
          signal,
          killedFor: this.killedFor,
          startError: this.startError,
          wasState: this.state,
        };
        this.state = 'exited';
        if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
        // what waited unwritten is gone with the channel
        clearTimeout(this.stallTimer);
        this.backedUpSince = undefined;
        this.unwritten = 0;
        this.unwrittenBytes = 0;
        for (const resolvePending of this.pending.values()) resolvePending([]);
        this.pending.clear();
        this.emit('exit', exit);
        resolve(exit);
      };
      this.child.once('exit', finish);
      // A spawn that fails (EMFILE, EAGAIN at a pid limit, ENOENT, EACCES)
      // emits 'error' and never 'exit': end it here as a failed start, or
      // the supervisor would wait on it forever (no restart, no pod drain end).
      const spawnFailed = (err: unknown) => {
        if (this.child.pid !== undefined || this.state === 'exited') return;
        const failed = new HypError('HYP_E_WORKER_SPAWN', { worker: this.id, detail: errorMessage(err) });
        this.startError = `${failed.code}: ${failed.message}`;
        this.log.error({ code: failed.code, worker: this.id, err }, failed.message);
        finish(null, null);
      };
      this.child.on('error', spawnFailed);
      if (spawnError !== undefined) process.nextTick(spawnFailed, spawnError);
    });
    this.child.on('message', (m: unknown) => {
      // A listener that throws here would be an uncaught exception in the supervisor.
      try {
        const problem = this.onMessage(m);
        if (problem) this.reportMalformed(problem);
      } catch (err) {
        this.reportMalformed(`handling it threw: ${errorMessage(err)}`);
      }
    });
    this.send({
      type: 'config',
      config: opts.config,
      workerId: opts.id,
      generation: opts.generation,
      listeners: opts.listeners.map((l) => l.name),
      app: opts.app,
      ...(opts.tlsFallback === undefined ? {} : { tlsFallback: opts.tlsFallback }),
    });
    if (opts.ticketKeys) this.send({ type: 'tls-keys', keys: opts.ticketKeys });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  /** Messages and estimated bytes handed to Node and not yet written to the worker's channel. */
  get backlog(): { messages: number; bytes: number } {
    return { messages: this.unwritten, bytes: this.unwrittenBytes };
  }

  send(message: SupervisorMessage): void {
    if (!this.child.connected) return;
    const bytes = estimatedBytes(message);
    this.unwritten++;
    this.unwrittenBytes += bytes;
    // The child may be gone between the check and the write (the callback then gets an error);
    // its exit handler reports it.
    const written = () => this.written(bytes);
    let ok: boolean;
    try {
      ok = this.child.send(message, written);
    } catch (err) {
      // refused before it was queued: no callback comes
      this.unwritten--;
      this.unwrittenBytes -= bytes;
      throw err;
    }
    if (!ok && this.child.connected && this.aboveLowWater()) this.backUp();
    if (this.unwrittenBytes > relayMaxBacklogBytes)
      this.stall(`${this.unwritten} messages, about ${this.unwrittenBytes} bytes, wait unwritten`);
  }

  private aboveLowWater(): boolean {
    return this.unwritten > relayLowWater || this.unwrittenBytes > relayLowWaterBytes;
  }

  private backUp(): void {
    if (this.backedUpSince !== undefined || this.state === 'exited') return;
    this.backedUpSince = Date.now();
    this.lastWrittenAt = this.backedUpSince;
    this.checkStallIn(this.relayStallMs);
    this.emit('backlog', true);
  }

  /** One timer per backed-up spell, not one per write: it looks at `lastWrittenAt` when it fires. */
  private checkStallIn(ms: number): void {
    this.stallTimer = setTimeout(() => {
      const idle = Date.now() - this.lastWrittenAt;
      // before its first heartbeat only the ready timeout applies (slow module loading is not a hang)
      if (!this.heardFrom) this.checkStallIn(this.relayStallMs);
      else if (idle < this.relayStallMs) this.checkStallIn(this.relayStallMs - idle);
      else this.stall(`backed up, and nothing sent to it was read for ${idle} ms`);
    }, ms);
    this.stallTimer.unref();
  }

  private written(bytes: number): void {
    if (this.state === 'exited') return;
    this.unwritten--;
    this.unwrittenBytes -= bytes;
    if (this.backedUpSince !== undefined) {
      this.lastWrittenAt = Date.now();
      if (!this.aboveLowWater()) {
        this.backedUpSince = undefined;
        clearTimeout(this.stallTimer);
        this.emit('backlog', false);
      }
    }
    if (this.waitingForRoom && this.hasRoom) {
      this.waitingForRoom = false;
      this.emit('room');
    }
  }

  /** Little waits unwritten for it: a history page may go now (supervisor.ts `answerRecoveries`). */
  get hasRoom(): boolean {
    return this.backedUpSince === undefined && this.unwrittenBytes < recoveryRoomBytes;
  }

  /** Emit `room` once `hasRoom` again. */
  waitForRoom(): void {
    this.waitingForRoom = true;
  }

  private stall(why: string): void {
    if (this.relayCutOff !== undefined || this.state === 'exited') return;
    this.relayCutOff = why;
    clearTimeout(this.stallTimer);
    this.emit('stalled', why);
  }

  /**
   * Anything in the worker can write to the channel: every field is checked
   * before it is used. Returns what was wrong with a message it dropped.
   */
  private onMessage(m: unknown): string | undefined {
    if (!isWorkerMessage(m)) return undefined;
    const fields = m as unknown as Record<string, unknown>;
    switch (m.type) {
      case 'ready':
        this.wantsHistory = true;
        this.lastHeartbeat = Date.now();
        this.heardFrom = true;
        if (this.state === 'spawning') {
          this.state = 'ready';
          this.readyAt = Date.now();
          this.emit('ready');
        }
        break;
      case 'heartbeat': {
        this.lastHeartbeat = Date.now();
        this.heardFrom = true;
        const { load, bad } = loadOf(fields);
        this.load = load;
        if (bad.length > 0)
          return `heartbeat figures ${bad.join(', ')} are not finite numbers >= 0; taken as 0`;
        break;
      }
      case 'start-failed': {
        const code = text(fields.code) ?? 'HYP_E_APP_START';
        const message = text(fields.message) ?? 'the worker gave no readable reason';
        this.startError = `${code}: ${message}`;
        break;
      }
      case 'failing':
        if (this.failing !== undefined) break;
        this.failing = text(fields.error) ?? 'uncaught exception';
        this.emit('failing', this.failing);
        break;
      case 'metrics': {
        if (typeof fields.id !== 'number') return 'metrics without a numeric id';
        const resolvePending = this.pending.get(fields.id);
        this.pending.delete(fields.id);
        resolvePending?.(Array.isArray(fields.metrics) ? fields.metrics : []);
        break;
      }
      case 'bus': {
        const message = fields.message as Record<string, unknown> | null | undefined;
        if (typeof message !== 'object' || message === null || typeof message.topic !== 'string')
          return 'bus message without a topic';
        this.emit('bus', {
          topic: message.topic,
          payload: message.payload as BusMessage['payload'],
          origin: this.id,
        });
        break;
      }
      case 'history-publish':
        this.wantsHistory = true;
        if (
          typeof fields.topic !== 'string' ||
          typeof fields.channel !== 'string' ||
          !(fields.payload instanceof Uint8Array)
        )
          return 'history-publish without topic, channel and byte payload';
        this.emit('history-publish', m);
        break;
      case 'history-recover?':
        this.wantsHistory = true;
        if (
          typeof fields.id !== 'number' ||
          typeof fields.topic !== 'string' ||
          typeof fields.channel !== 'string' ||
          typeof fields.offset !== 'string'
        )
          return 'history-recover? without id, topic, channel and offset';
        this.emit('history-recover', m);
        break;
      case 'nonce-claim?': {
        const why = malformedClaim(fields);
        if (why !== undefined) return why;
        this.emit('nonce-claim', m);
        break;
      }
      case 'tls-reloaded':
        if (typeof fields.at !== 'string') return 'tls-reloaded without the listener (at)';
        this.emit('tls-reloaded', fields.at, fields.files, fields.readAt);
        break;
      default:
        break;
    }
    return undefined;
  }

  /** Log a dropped message (the first few per worker, so an app sending them in a loop cannot flood the log). */
  private reportMalformed(what: string): void {
    if (++this.malformed > maxReportedMalformed) return;
    const err = new HypError('HYP_E_IPC_MESSAGE', { worker: this.id, what });
    this.log.warn(
      { code: err.code, worker: this.id, worker_pid: this.pid, dropped: this.malformed },
      this.malformed === maxReportedMalformed ? `${err.message} (further ones are not logged)` : err.message,
    );
  }

  /** Ask the worker to drain; SIGKILL it if it is still there at the deadline (plus a short grace). */
  drain(deadline: number, reason: string): void {
    if (this.state === 'exited' || this.state === 'draining') return;
    this.state = 'draining';
    this.send({ type: 'drain', deadline, reason });
    this.deadlineTimer = setTimeout(
      () => this.kill('drain deadline'),
      Math.max(0, deadline - Date.now()) + 1000,
    );
  }

  kill(reason: string): void {
    if (this.state === 'exited') return;
    this.killedFor ??= reason;
    this.child.kill('SIGKILL');
  }

  /** The worker's prom-client registry as JSON; [] if it does not answer in time. */
  metrics(timeoutMs = 1000): Promise<unknown[]> {
    if (this.state === 'exited' || !this.child.connected) return Promise.resolve([]);
    const id = this.nextRequest++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        resolve([]);
      }, timeoutMs);
      this.pending.set(id, (metrics) => {
        clearTimeout(timer);
        resolve(metrics);
      });
      this.send({ type: 'metrics?', id });
    });
  }

  uptimeMs(now = Date.now()): number {
    return now - this.startedAt;
  }
}
