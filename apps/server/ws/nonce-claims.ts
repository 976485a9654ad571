/**
 * The replay guard beyond one worker (`websocket.security.replay_window`).
 * A hub checks each sealed frame against its own nonce cache first
 * (security.ts ReplayGuard); that cache sees only the frames of its own
 * worker, so a frame captured once and replayed on a connection to another
 * worker or pod would pass there. With claims, the hub then claims the
 * frame's nonce where every node sees it, and handles the frame only once the
 * claim is granted:
 *
 * - IpcNonceClaims: the supervisor's window for the pod (supervisor/replay.ts),
 *   claims batched per event-loop turn, one IPC message each way.
 * - RedisNonceClaims: `SET key NX PX 2×window` on the bus's Redis, for every
 *   pod that shares it.
 *
 * A claim that cannot be decided (no supervisor, no answer within 5 s, a
 * Redis error, too many claims waiting) is refused: the guard fails closed.
 * Claims waiting for their verdict are a `flow`: past 1,000 (or 8 MiB of
 * frames) the hub stops reading the clients that send, as for a congested
 * bus.
 */
import { Redis } from 'ioredis';
import { nonceClaimTimeoutMs, type SupervisorMessage } from '../../../supervisor/ipc.js';
import type { IpcChannel } from './bus.js';
import { type Flow, PendingFlow } from './flow.js';
import { flowOf, type IpcFlow } from './ipc-flow.js';

/** '' when the frame may be handled, else why it is refused. */
export type ClaimVerdict = (verdict: string, bytes: number) => void;

export interface NonceClaims {
  /** Frames waiting for their verdict. */
  readonly flow: Flow;
  /**
   * Claims `nonce` (a sealed frame of `bytes` bytes, stamped `timestampNs`):
   * `done('')` once no node had seen it in the window, else `done(why)`.
   * Verdicts come in the order of the claims. Never throws.
   */
  claim(nonce: Uint8Array, timestampNs: bigint, bytes: number, done: ClaimVerdict): void;
  /** Resolves once no claim waits for its verdict (a hub's shutdown waits for it). */
  settled?(): Promise<void>;
  close(): Promise<void>;
}

interface Waiting {
  done: (verdict: string) => void;
}

/** Shared by both kinds: the bounded flow and the refusal when too many wait. */
abstract class Claims implements NonceClaims {
  readonly flow = new PendingFlow();
  protected closed = false;
  private readonly settledWaiters: Array<() => void> = [];

  claim(nonce: Uint8Array, timestampNs: bigint, bytes: number, done: ClaimVerdict): void {
    if (this.closed) {
      done('the hub is closed', bytes);
      return;
    }
    if (this.flow.full(bytes)) {
      done(`${this.flow.pending} frames already wait for the replay check`, bytes);
      return;
    }
    this.flow.add(bytes);
    this.send(nonce, timestampNs, {
      done: (verdict) => {
        this.flow.settle(bytes);
        done(verdict, bytes);
        if (this.flow.pending === 0) for (const fn of this.settledWaiters.splice(0)) fn();
      },
    });
  }

  settled(): Promise<void> {
    if (this.flow.pending === 0) return Promise.resolve();
    return new Promise((resolve) => this.settledWaiters.push(resolve));
  }

  protected abstract send(nonce: Uint8Array, timestampNs: bigint, waiting: Waiting): void;

  async close(): Promise<void> {
    this.closed = true;
    this.flow.release();
  }
}

export interface IpcNonceClaimsOptions {
  /** The hub (its path). */
  topic: string;
  windowMs: number;
  /** The hub's nonce cache size (`replayCacheSize`). */
  maxEntries: number;
  channel?: IpcChannel;
  /** Default 5 s. */
  timeoutMs?: number;
}

/** Nonces per IPC message at most (the supervisor refuses larger claims). */
const maxBatch = 4096;

/** One id space per process: several hubs may share the IPC channel. */
let nextId = 1;

type Reply = Extract<SupervisorMessage, { type: 'nonce-claimed' }>;

export class IpcNonceClaims extends Claims {
  private readonly ipc: IpcChannel;
  private readonly ipcFlow: IpcFlow;
  private readonly timeoutMs: number;
  private batch: { nonces: Uint8Array[]; stamps: bigint[]; waiting: Waiting[] } | undefined;
  private readonly sent = new Map<number, { waiting: Waiting[]; timer: NodeJS.Timeout }>();
  private readonly listener = (raw: unknown): void => {
    const m = raw as Reply;
    if (m === null || typeof m !== 'object' || m.type !== 'nonce-claimed' || m.topic !== this.options.topic)
      return;
    const batch = this.sent.get(m.id);
    if (batch === undefined) return;
    this.sent.delete(m.id);
    clearTimeout(batch.timer);
    const verdicts = Array.isArray(m.verdicts) ? m.verdicts : [];
    batch.waiting.forEach((w, i) => {
      const verdict = verdicts[i];
      w.done(typeof verdict === 'string' ? verdict : 'the supervisor gave no verdict');
    });
  };

  constructor(private readonly options: IpcNonceClaimsOptions) {
    super();
    this.ipc = options.channel ?? (process as unknown as IpcChannel);
    this.ipcFlow = flowOf(this.ipc);
    this.timeoutMs = options.timeoutMs ?? nonceClaimTimeoutMs;
  }

  /** Listening from the first claim: a hub whose options replaced these claims leaves nothing behind. */
  private listening = false;

  protected send(nonce: Uint8Array, timestampNs: bigint, waiting: Waiting): void {
    if (this.batch === undefined) {
      this.batch = { nonces: [], stamps: [], waiting: [] };
      setImmediate(() => this.flush());
    }
    // a copy: the frame's buffer would go whole through the structured clone
    this.batch.nonces.push(Uint8Array.from(nonce));
    this.batch.stamps.push(timestampNs);
    this.batch.waiting.push(waiting);
    if (this.batch.nonces.length >= maxBatch) this.flush();
  }

  private flush(): void {
    const batch = this.batch;
    this.batch = undefined;
    if (batch === undefined) return;
    const id = nextId++;
    const { topic, windowMs, maxEntries } = this.options;
    if (this.closed) {
      refuseAll(batch.waiting, 'the hub is closed');
      return;
    }
    const timer = setTimeout(() => {
      this.sent.delete(id);
      refuseAll(batch.waiting, `the supervisor did not answer the replay check within ${this.timeoutMs} ms`);
    }, this.timeoutMs);
    timer.unref();
    this.sent.set(id, { waiting: batch.waiting, timer });
    if (!this.listening) {
      this.listening = true;
      this.ipc.on('message', this.listener);
    }
    const sent = this.ipcFlow.send({
      type: 'nonce-claim?',
      id,
      topic,
      windowMs,
      maxEntries,
      nonces: batch.nonces,
      stamps: batch.stamps,
    });
    if (!sent) {
      this.sent.delete(id);
      clearTimeout(timer);
      refuseAll(batch.waiting, 'no supervisor to check the pod-wide replay window');
    }
  }

  override async close(): Promise<void> {
    await super.close();
    this.ipc.off('message', this.listener);
    this.flush();
    for (const batch of this.sent.values()) {
      clearTimeout(batch.timer);
      refuseAll(batch.waiting, 'the hub is closed');
    }
    this.sent.clear();
  }
}

function refuseAll(waiting: readonly Waiting[], why: string): void {
  for (const w of waiting) w.done(why);
}

export interface RedisNonceClaimsOptions {
  url: string;
  /** Key prefix: claims are `<prefix>:nonce:<nonce in base64url>`. */
  prefix: string;
  windowMs: number;
}

export class RedisNonceClaims extends Claims {
  private readonly redis: Redis;
  private readonly ttlMs: number;

  constructor(private readonly options: RedisNonceClaimsOptions) {
    super();
    // waits through an outage (the flow holds clients meanwhile) instead of failing each claim;
    // connects at the first claim, so claims a hub's options replaced open no connection
    this.redis = new Redis(options.url, { maxRetriesPerRequest: null, lazyConnect: true });
    this.redis.on('error', () => {});
    // a nonce is remembered for two windows after it arrived, as the hub's own cache does
    this.ttlMs = 2 * options.windowMs;
  }

  protected send(nonce: Uint8Array, _timestampNs: bigint, waiting: Waiting): void {
    const key = `${this.options.prefix}:nonce:${Buffer.from(nonce).toString('base64url')}`;
    this.redis.set(key, '1', 'PX', this.ttlMs, 'NX').then(
      (ok) => waiting.done(ok === 'OK' ? '' : 'nonce already seen on another node (a replay)'),
      (err: unknown) =>
        waiting.done(`the replay check in Redis failed: ${err instanceof Error ? err.message : String(err)}`),
    );
  }

  override async close(): Promise<void> {
    await super.close();
    this.redis.disconnect();
  }
}
