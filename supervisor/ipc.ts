/**
 * The supervisor ⇄ worker protocol. One discriminated union per direction,
 * sent over Node's IPC channel with `serialization: 'advanced'` (structured
 * clone: Buffers and Maps survive). The supervisor owns this module; the
 * worker implements it.
 */
import type { Config } from './config/schema.js';
import type { TlsFiles } from './tlscheck.js';

/** Per-worker load figures, sent every heartbeat interval. */
export interface WorkerLoad {
  connections: number;
  inflight: number;
  wsClients: number;
  rss: number;
  /** Event-loop delay p99 over the last interval, milliseconds. */
  loopDelayMs: number;
}

/** A TLS session-ticket key set: 48 bytes each (name 16 | hmac 16 | aes 16). */
export interface TicketKeys {
  /** The key new tickets are issued with. */
  current: Buffer;
  /** Older keys still accepted for resumption. */
  previous: Buffer[];
}

/** A message on the cross-worker bus (WebSocket fan-out and presence). */
export interface BusMessage {
  topic: string;
  /** Opaque payload; the hub defines it. */
  payload: Uint8Array | string | Record<string, unknown>;
  /** Worker id of the sender; the relay does not echo to it. */
  origin?: number;
}

/**
 * Pod-wide channel history (supervisor/history.ts): a worker's hub publishes
 * a channel message to the supervisor, which assigns its offset and sends it
 * to every live worker, the publisher included. `topic` names the hub (its
 * path); `payload` is opaque to the supervisor.
 */
export interface HistoryPublish {
  topic: string;
  channel: string;
  payload: Uint8Array;
}

export interface HistoryDelivery extends HistoryPublish {
  offset: string;
  /**
   * Set on the copy delivered to the worker that published it: that worker
   * counts its publishes not yet delivered back, which tells it how far
   * behind it reads its own channel (apps/server/ws/ipc-flow.ts).
   */
  own?: true;
}

export interface HistoryRecoverRequest {
  id: number;
  topic: string;
  channel: string;
  /** '' asks for the head only. */
  offset: string;
}

export interface HistoryRecoverReply {
  id: number;
  topic: string;
  /** The channel's resume point now. */
  head: string;
  ok: boolean;
  entries: Array<{ offset: string; payload: Uint8Array }>;
  /** The reply was cut at the supervisor's size bound: ask again from the last entry. */
  more?: boolean;
  /** Why recovery failed, when `ok` is false. */
  reason?: string;
}

/**
 * How long a worker waits for the supervisor's answer to a history recovery
 * request (apps/server/ws/ipc-history.ts); the supervisor sends no page to a
 * request that waited longer (supervisor.ts answerRecoveries).
 */
export const recoveryTimeoutMs = 5_000;

/**
 * A worker's batch of sealed frames to check against the pod's replay window
 * (`websocket.security.replay_window`; apps/server/ws/nonce-claims.ts): the
 * supervisor remembers every worker's nonces, so a frame replayed to another
 * worker is refused too. `nonces[i]` is the frame's GCM nonce or MAC,
 * `stamps[i]` its timestamp (ns since the epoch).
 */
export interface NonceClaim {
  id: number;
  /** The hub (its path): hubs keep separate windows. */
  topic: string;
  windowMs: number;
  /** The hub's own nonce cache size; the pod's holds this many per worker. */
  maxEntries: number;
  nonces: Uint8Array[];
  stamps: bigint[];
}

/** The answer: `verdicts[i]` is '' for a frame no worker saw, else why it is refused. */
export interface NonceClaimReply {
  id: number;
  topic: string;
  verdicts: string[];
}

/** How long a worker waits for the supervisor's verdicts before it refuses the frames (fail closed). */
export const nonceClaimTimeoutMs = 5_000;

export type SupervisorMessage =
  | {
      type: 'config';
      config: Config;
      workerId: number;
      generation: number;
      /** Listener names in fd order: fd 3 + index. */
      listeners: string[];
      /** Absolute path of the app module. */
      app: string;
      /**
       * The last TLS files of each listener that passed the supervisor's
       * checks (`server.tls`, `tcp.<name>.tls`): what the worker serves if
       * the files on disk are broken when it starts (tlscheck.ts LastGoodTls).
       */
      tlsFallback?: Record<string, TlsFiles>;
    }
  | { type: 'drain'; deadline: number; reason: string }
  | { type: 'metrics?'; id: number }
  | { type: 'bus'; message: BusMessage }
  /**
   * Another worker does not read what the supervisor relays to it fast
   * enough (its IPC channel is backed up): stop reading clients that
   * publish until `bus-release`, so the supervisor's queue for that worker
   * stays bounded (apps/server/ws/ipc-flow.ts; the relay side in
   * supervisor.ts `syncHolds`).
   */
  | { type: 'bus-hold' }
  | { type: 'bus-release' }
  | { type: 'tls-keys'; keys: TicketKeys }
  | { type: 'status?'; id: number }
  | ({ type: 'history' } & HistoryDelivery)
  | ({ type: 'history-recovered' } & HistoryRecoverReply)
  | ({ type: 'nonce-claimed' } & NonceClaimReply);

export type WorkerMessage =
  | { type: 'ready' }
  | { type: 'start-failed'; code: string; message: string }
  /** An uncaught exception in a ready worker: start my replacement, then drain me. */
  | { type: 'failing'; error: string }
  | ({ type: 'heartbeat' } & WorkerLoad)
  | { type: 'metrics'; id: number; metrics: unknown[] }
  | { type: 'bus'; message: BusMessage }
  | { type: 'drained'; remaining: number }
  | { type: 'log'; level: 'info' | 'warn' | 'error'; msg: string }
  | ({ type: 'history-publish' } & HistoryPublish)
  | ({ type: 'history-recover?' } & HistoryRecoverRequest)
  | ({ type: 'nonce-claim?' } & NonceClaim)
  /**
   * A certificate reload installed new files for the listener at `at`;
   * `files` are the bytes it installed, which the supervisor checks and keeps
   * as its last good pair (tlscheck.ts LastGoodTls). Without them (a worker
   * of an older version) it re-reads the files, which may have changed again.
   * `readAt`: when the worker read them, on the host's monotonic clock in ms
   * (tlscheck.ts `tlsReadClock`); a report read before the pair the
   * supervisor holds is ignored, whatever order the reports arrive in.
   */
  | { type: 'tls-reloaded'; at: string; files?: TlsFiles; readAt?: number };

/**
 * Worker messages the supervisor acts on as lifecycle facts (ready, alive,
 * failed, …). Only the worker runtime sends them: an app's own
 * `process.send()` of one is refused in the worker (HYP_E_IPC_RESERVED),
 * since a `ready` sent during setup would let a roll drain the old
 * generation before the new one serves. Bus and history messages are data
 * the app's hubs send through `process.send` and stay open, and so do types
 * the supervisor ignores (`drained`, `log`): an app may use those names.
 */
export const runtimeMessageTypes: ReadonlySet<string> = new Set<WorkerMessage['type']>([
  'ready',
  'start-failed',
  'failing',
  'heartbeat',
  'metrics',
  'tls-reloaded',
]);

export function isWorkerMessage(m: unknown): m is WorkerMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

export function isSupervisorMessage(m: unknown): m is SupervisorMessage {
  return typeof m === 'object' && m !== null && typeof (m as { type?: unknown }).type === 'string';
}

/** Environment variables the supervisor sets on every worker. */
export const workerEnv = {
  listenFds: 'LISTEN_FDS',
  listenFdNames: 'LISTEN_FDNAMES',
  role: 'HYP_ROLE',
  workerId: 'HYP_WORKER_ID',
  generation: 'HYP_GENERATION',
} as const;

/** First inherited listener fd (systemd convention). */
export const firstListenFd = 3;
