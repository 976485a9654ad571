/**
 * One worker process as the supervisor sees it:
 * `spawning → ready → draining → exited`.
 *
 * The held listener fds go to the child at 3..n (`LISTEN_FDS`,
 * `LISTEN_FDNAMES`) with the IPC channel right after them.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Config } from './config/schema.js';
import {
  type BusMessage,
  type HistoryPublish,
  type HistoryRecoverRequest,
  isWorkerMessage,
  type SupervisorMessage,
  type TicketKeys,
  type WorkerLoad,
  workerEnv,
} from './ipc.js';
import type { HeldListener } from './listeners.js';

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
  failing: [string];
}

const emptyLoad: WorkerLoad = { connections: 0, inflight: 0, wsClients: 0, rss: 0, loopDelayMs: 0 };

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
  private readonly child: ChildProcess;
  private killedFor: string | undefined;
  private startError: string | undefined;
  private deadlineTimer: NodeJS.Timeout | undefined;
  private nextRequest = 1;
  private readonly pending = new Map<number, (metrics: unknown[]) => void>();
  readonly exited: Promise<WorkerExit>;

  constructor(opts: SpawnOptions) {
    super();
    this.id = opts.id;
    this.slot = opts.slot;
    this.generation = opts.generation;
    const fds = opts.listeners.map((l) => l.fd);
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
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        const exit: WorkerExit = {
          code,
          signal,
          killedFor: this.killedFor,
          startError: this.startError,
          wasState: this.state,
        };
        this.state = 'exited';
        if (this.deadlineTimer) clearTimeout(this.deadlineTimer);
        for (const resolvePending of this.pending.values()) resolvePending([]);
        this.pending.clear();
        this.emit('exit', exit);
        resolve(exit);
      });
    });
    // A failed spawn (e.g. EAGAIN) also ends in 'exit'; keep 'error' from throwing.
    this.child.on('error', () => {});
    this.child.on('message', (m: unknown) => this.onMessage(m));
    this.send({
      type: 'config',
      config: opts.config,
      workerId: opts.id,
      generation: opts.generation,
      listeners: opts.listeners.map((l) => l.name),
      app: opts.app,
    });
    if (opts.ticketKeys) this.send({ type: 'tls-keys', keys: opts.ticketKeys });
  }

  get pid(): number {
    return this.child.pid ?? 0;
  }

  send(message: SupervisorMessage): void {
    if (!this.child.connected) return;
    this.child.send(message, (err) => {
      // The child may be gone between the check and the write; its exit handler reports it.
      void err;
    });
  }

  private onMessage(m: unknown): void {
    if (!isWorkerMessage(m)) return;
    switch (m.type) {
      case 'ready':
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
        const { type: _t, ...load } = m;
        this.load = load;
        break;
      }
      case 'start-failed':
        this.startError = `${m.code}: ${m.message}`;
        break;
      case 'failing':
        if (this.failing !== undefined) break;
        this.failing = typeof m.error === 'string' ? m.error : 'uncaught exception';
        this.emit('failing', this.failing);
        break;
      case 'metrics':
        this.pending.get(m.id)?.(m.metrics);
        this.pending.delete(m.id);
        break;
      case 'bus':
        this.emit('bus', { ...m.message, origin: this.id });
        break;
      case 'history-publish':
        this.emit('history-publish', m);
        break;
      case 'history-recover?':
        this.emit('history-recover', m);
        break;
      default:
        break;
    }
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
