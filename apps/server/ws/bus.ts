import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { Logger } from 'pino';
import type { BusMessage } from '../../../supervisor/ipc.js';
import { type Flow, PendingFlow, type PendingLimits } from './flow.js';
import { flowOf, type IpcFlow } from './ipc-flow.js';
import { quit, RefusalWarning, resendWindowSeconds } from './redis-history.js';

/**
 * Cross-worker and cross-pod fan-out. The hub publishes an opaque byte
 * payload on a topic and receives everything the *other* nodes publish:
 * a bus never echoes a message back to its sender, because the sender has
 * already delivered it to its own clients. That split is what makes
 * delivery exactly once per subscriber.
 *
 * - LocalBus: in-process (one worker, or several hubs in one test process).
 * - IpcBus: through the supervisor's IPC relay (`{type:'bus'}` messages);
 *   the embedded default, no extra service.
 * - RedisBus: Redis pub/sub across pods.
 */

export type BusHandler = (topic: string, payload: Uint8Array) => void;

/** What becomes of one bus publish (Bus.publish), for a hub that acknowledges it. */
export interface BusOutcome {
  /** Redis took it: every other node subscribed then has it. */
  sent(): void;
  refused(err: Error): void;
}

export interface Bus {
  /** Unique per node (worker); used to drop echoes. */
  readonly nodeId: string;
  /**
   * `outcome`, for a transport that can refuse a publish (RedisBus: Redis's error, its bound on
   * what waits for Redis): `refused` when it did not take it, `sent` when it did; one of them,
   * once, at once or later (until the bus is closed). Other transports ignore it.
   */
  publish(topic: string, payload: Uint8Array, outcome?: BusOutcome): void;
  /** True for a bus that answers every `outcome` (RedisBus): the hub acknowledges on `sent`, not at once. */
  readonly confirms?: boolean;
  /** Returns a function that removes the handler. */
  onMessage(handler: BusHandler): () => void;
  /** Resolves once messages published by others from now on will arrive. */
  ready(): Promise<void>;
  close(): Promise<void>;
  /** Backpressure of the transport, where it has one the hub can wait on (flow.ts). */
  readonly flow?: Flow;
}

abstract class HandlerSet {
  protected readonly handlers = new Set<BusHandler>();

  onMessage(handler: BusHandler): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  protected dispatch(topic: string, payload: Uint8Array): void {
    for (const handler of this.handlers) handler(topic, payload);
  }
}

/** Members of one in-process bus. */
export class LocalBusGroup {
  readonly members = new Set<LocalBus>();
}

export class LocalBus extends HandlerSet implements Bus {
  private static counter = 0;
  readonly nodeId: string;

  constructor(readonly group: LocalBusGroup = new LocalBusGroup()) {
    super();
    this.nodeId = `local-${++LocalBus.counter}`;
    group.members.add(this);
  }

  publish(topic: string, payload: Uint8Array): void {
    for (const member of this.group.members) {
      // asynchronous like every real transport, so tests see real ordering
      if (member !== this) queueMicrotask(() => member.dispatch(topic, payload));
    }
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.group.members.delete(this);
    this.handlers.clear();
  }
}

/** The part of `process` the IPC bus uses (a seam for tests). */
export interface IpcChannel {
  /** Node's `process.send`: `callback` once the message is written; false: stop sending for now. */
  send?(message: unknown, callback?: (err: Error | null) => void): boolean;
  /** `false` once the channel closed: Node's send() then emits an 'error' that nothing handles. */
  readonly connected?: boolean;
  on(event: 'message', listener: (message: unknown) => void): unknown;
  off(event: 'message', listener: (message: unknown) => void): unknown;
}

function asBytes(payload: BusMessage['payload']): Uint8Array | undefined {
  if (payload instanceof Uint8Array) return payload;
  // a JSON-serialized IPC channel turns a Buffer into { type: 'Buffer', data: [...] }
  const json = payload as { type?: unknown; data?: unknown };
  if (json && json.type === 'Buffer' && Array.isArray(json.data))
    return Uint8Array.from(json.data as number[]);
  return undefined;
}

export class IpcBus extends HandlerSet implements Bus {
  readonly nodeId: string;
  private readonly origin: number;
  private readonly listener = (message: unknown): void => {
    const m = message as { type?: unknown; message?: BusMessage };
    if (m?.type !== 'bus' || !m.message || typeof m.message.topic !== 'string') return;
    if (m.message.origin === this.origin) return;
    const payload = asBytes(m.message.payload);
    if (payload) this.dispatch(m.message.topic, payload);
  };

  readonly flow: IpcFlow;

  constructor(
    private readonly channel: IpcChannel = process as unknown as IpcChannel,
    workerId: number = Number(process.env.HYP_WORKER_ID ?? process.pid),
  ) {
    super();
    this.flow = flowOf(channel);
    this.origin = workerId;
    this.nodeId = `worker-${workerId}`;
    channel.on('message', this.listener);
  }

  publish(topic: string, payload: Uint8Array): void {
    // the supervisor is gone (the worker is on its way out): there is no one to relay to
    if (this.channel.connected === false) return;
    const message: BusMessage = { topic, payload, origin: this.origin };
    this.flow.send({ type: 'bus', message });
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.channel.off('message', this.listener);
    this.handlers.clear();
  }
}

export interface RedisBusOptions extends PendingLimits {
  url: string;
  /** Channel prefix; pods sharing a Redis and prefix share the bus. */
  prefix?: string;
  nodeId?: string;
  /** A publish that was not sent (Redis refused it, or too many wait for Redis). Default: a process warning. */
  onError?: (err: Error, topic: string) => void;
  /** Where the default `onError` reports: a warn line here, else a process warning. */
  log?: Logger;
}

/**
 * Publishes once per call: a PUBLISH whose reply was lost with the connection is sent again on
 * the next one, and would reach every other node twice. Each publish is numbered (ARGV[2]); the
 * script skips one not above the last this publisher made (KEYS[1], kept a day). Commands reach
 * Redis in order on one connection, so a resend repeats nothing above the last one made.
 * EVAL, never EVALSHA: a NOSCRIPT answer would send one publish again behind the next.
 */
const publishOnce = `
if tonumber(ARGV[2]) <= tonumber(redis.call('GET', KEYS[1]) or '0') then return -1 end
redis.call('SET', KEYS[1], ARGV[2], 'EX', ARGV[3])
return redis.call('PUBLISH', KEYS[2], ARGV[1])`;

/**
 * Redis pub/sub. Each payload is framed `[id length | node id | payload]`
 * so a node drops its own messages (Redis delivers to the publisher's own
 * subscription too).
 */
export class RedisBus extends HandlerSet implements Bus {
  readonly nodeId: string;
  readonly pub: Redis;
  private readonly sub: Redis;
  private readonly prefix: string;
  private readonly idBytes: Buffer;
  private readonly subscribed: Promise<unknown>;
  /** Publishes waiting for Redis: the hub holds publishing clients while it is congested. */
  readonly flow: PendingFlow;
  /** Every publish's outcome is answered (Redis's reply or error): see Bus.confirms. */
  readonly confirms = true;
  private readonly onError: (err: Error, topic: string) => void;
  private readonly refusals: RefusalWarning;
  private closed = false;
  /** Where Redis keeps the number of this bus's last publish (see publishOnce): its own, as node ids may repeat. */
  private readonly publishedKey: string;
  private publishes = 0;

  constructor(options: RedisBusOptions) {
    super();
    this.flow = new PendingFlow(options);
    this.refusals = new RefusalWarning(options.log);
    this.onError = options.onError ?? this.refusals.report;
    this.nodeId = options.nodeId ?? `node-${randomBytes(6).toString('hex')}`;
    this.idBytes = Buffer.from(this.nodeId);
    if (this.idBytes.length > 255) throw new RangeError('RedisBus nodeId is longer than 255 bytes');
    this.prefix = `${options.prefix ?? 'hyp'}:bus:`;
    this.publishedKey = `${options.prefix ?? 'hyp'}:bus-published:${randomBytes(6).toString('hex')}`;
    this.pub = new Redis(options.url, { maxRetriesPerRequest: null });
    this.sub = new Redis(options.url, { maxRetriesPerRequest: null });
    this.pub.on('error', () => {});
    this.sub.on('error', () => {});
    this.sub.on('pmessageBuffer', (_pattern: string, channel: Buffer, message: Buffer) => {
      const idLength = message[0] ?? 0;
      if (message.length < 1 + idLength) return;
      if (idLength === this.idBytes.length && this.idBytes.equals(message.subarray(1, 1 + idLength))) return;
      const topic = channel.toString().slice(this.prefix.length);
      try {
        this.dispatch(topic, message.subarray(1 + idLength));
      } catch (err) {
        // a throw here would unwind through the Redis client's socket handler and end the process
        process.emitWarning(`websocket bus delivery failed: ${(err as Error).message}`);
      }
    });
    this.subscribed = this.sub.psubscribe(`${this.prefix}*`);
  }

  /**
   * A publish waits (in order) for Redis while it is slow or unreachable.
   * Past the high-water mark the flow is congested and the hub stops reading
   * from publishing clients (flow.ts); past `maxPending` / `maxPendingBytes`
   * waiting publishes one is refused and reported (`onError`) instead of
   * growing memory for the whole outage.
   */
  publish(topic: string, payload: Uint8Array, outcome?: BusOutcome): void {
    const size = 1 + this.idBytes.length + payload.length;
    if (this.flow.full(size)) {
      const err = new Error(
        `bus publish on ${topic} refused: ${this.flow.pending} publishes (${this.flow.pendingBytes} bytes) are waiting for Redis`,
      );
      this.onError(err, topic);
      outcome?.refused(err);
      return;
    }
    const frame = Buffer.allocUnsafe(size);
    frame[0] = this.idBytes.length;
    this.idBytes.copy(frame, 1);
    frame.set(payload, 1 + this.idBytes.length);
    this.flow.add(size);
    const args = [this.publishedKey, this.prefix + topic, frame, ++this.publishes, resendWindowSeconds];
    this.pub.eval(publishOnce, 2, ...args).then(
      () => {
        this.flow.settle(size);
        this.refusals.ok();
        outcome?.sent();
      },
      (err: unknown) => {
        this.flow.settle(size);
        if (this.closed) return;
        const failure = new Error(`bus publish on ${topic} failed: ${(err as Error).message}`);
        this.onError(failure, topic);
        outcome?.refused(failure);
      },
    );
  }

  async ready(): Promise<void> {
    await this.subscribed;
  }

  async close(): Promise<void> {
    this.closed = true;
    this.handlers.clear();
    // nothing will be published any more: no client may stay held for it
    this.flow.release();
    await Promise.allSettled([quit(this.sub, 5_000), quit(this.pub, 5_000)]);
  }
}
