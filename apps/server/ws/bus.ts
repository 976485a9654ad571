import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import type { BusMessage } from '../../../supervisor/ipc.js';

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

export interface Bus {
  /** Unique per node (worker); used to drop echoes. */
  readonly nodeId: string;
  publish(topic: string, payload: Uint8Array): void;
  /** Returns a function that removes the handler. */
  onMessage(handler: BusHandler): () => void;
  /** Resolves once messages published by others from now on will arrive. */
  ready(): Promise<void>;
  close(): Promise<void>;
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
  send?(message: unknown): boolean;
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

  constructor(
    private readonly channel: IpcChannel = process as unknown as IpcChannel,
    workerId: number = Number(process.env.HYP_WORKER_ID ?? process.pid),
  ) {
    super();
    this.origin = workerId;
    this.nodeId = `worker-${workerId}`;
    channel.on('message', this.listener);
  }

  publish(topic: string, payload: Uint8Array): void {
    const message: BusMessage = { topic, payload, origin: this.origin };
    this.channel.send?.({ type: 'bus', message });
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.channel.off('message', this.listener);
    this.handlers.clear();
  }
}

export interface RedisBusOptions {
  url: string;
  /** Channel prefix; pods sharing a Redis and prefix share the bus. */
  prefix?: string;
  nodeId?: string;
}

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

  constructor(options: RedisBusOptions) {
    super();
    this.nodeId = options.nodeId ?? `node-${randomBytes(6).toString('hex')}`;
    this.idBytes = Buffer.from(this.nodeId);
    if (this.idBytes.length > 255) throw new RangeError('RedisBus nodeId is longer than 255 bytes');
    this.prefix = `${options.prefix ?? 'hyp'}:bus:`;
    this.pub = new Redis(options.url, { maxRetriesPerRequest: null });
    this.sub = new Redis(options.url, { maxRetriesPerRequest: null });
    this.pub.on('error', () => {});
    this.sub.on('error', () => {});
    this.sub.on('pmessageBuffer', (_pattern: string, channel: Buffer, message: Buffer) => {
      const idLength = message[0] ?? 0;
      if (message.length < 1 + idLength) return;
      if (idLength === this.idBytes.length && this.idBytes.equals(message.subarray(1, 1 + idLength))) return;
      this.dispatch(channel.toString().slice(this.prefix.length), message.subarray(1 + idLength));
    });
    this.subscribed = this.sub.psubscribe(`${this.prefix}*`);
  }

  publish(topic: string, payload: Uint8Array): void {
    const frame = Buffer.allocUnsafe(1 + this.idBytes.length + payload.length);
    frame[0] = this.idBytes.length;
    this.idBytes.copy(frame, 1);
    frame.set(payload, 1 + this.idBytes.length);
    this.pub.publish(this.prefix + topic, frame).catch(() => {});
  }

  async ready(): Promise<void> {
    await this.subscribed;
  }

  async close(): Promise<void> {
    this.handlers.clear();
    await Promise.allSettled([this.sub.quit(), this.pub.quit()]);
  }
}
