import {
  type HistoryRecoverReply,
  recoveryTimeoutMs,
  type SupervisorMessage,
} from '../../../supervisor/ipc.js';
import type { IpcChannel } from './bus.js';
import { decodeBusEvent, encodeBusEvent } from './bus-event.js';
import type { Envelope } from './envelope.js';
import type { Recovery } from './history.js';
import { flowOf, type IpcFlow } from './ipc-flow.js';
import type { SharedHistory } from './redis-history.js';

/**
 * Channel history for every worker of a pod, kept by the supervisor
 * (supervisor/history.ts), which outlives every worker.
 *
 * `publish` sends the message to the supervisor; the supervisor assigns its
 * offset (`<epoch>-<seq>`, epoch per supervisor) and sends the delivery to
 * every live worker, this one included, so every worker delivers a channel
 * in the same order with the same offsets, and a client resumes on any
 * worker — also after a rolling restart, when every worker is new.
 * `recover` is a request/response over IPC with a timeout; no answer is an
 * explicit failure, never a silent gap.
 */

export interface IpcHistoryOptions {
  /** Names the hub (its path) so several hubs in one app keep separate channels. */
  topic: string;
  channel?: IpcChannel;
  /** How long `recover` waits for the supervisor. Default 5 s. */
  timeoutMs?: number;
}

interface Pending {
  resolve: (r: HistoryRecoverReply) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

/** Pages of one recovery (the supervisor cuts a reply at ~1 MiB); a bound against a reply that never ends. */
const maxPages = 10_000;

type Incoming = Extract<SupervisorMessage, { type: 'history' | 'history-recovered' }>;

/** One id space per process: several hubs may share the IPC channel. */
let nextId = 1;

export class IpcHistory implements SharedHistory {
  private readonly topic: string;
  private readonly ipc: IpcChannel;
  readonly flow: IpcFlow;
  private readonly timeoutMs: number;
  private readonly handlers = new Set<(channel: string, message: Envelope) => void>();
  private readonly pending = new Map<number, Pending>();
  private closed = false;
  private readonly listener = (raw: unknown): void => {
    const m = raw as Incoming;
    if (m === null || typeof m !== 'object' || m.topic !== this.topic) return;
    if (m.type === 'history') this.delivered(m.channel, m.offset, m.payload);
    else if (m.type === 'history-recovered') this.recovered(m);
  };

  constructor(options: IpcHistoryOptions) {
    this.topic = options.topic;
    this.ipc = options.channel ?? (process as unknown as IpcChannel);
    this.flow = flowOf(this.ipc);
    this.timeoutMs = options.timeoutMs ?? recoveryTimeoutMs;
    this.ipc.on('message', this.listener);
  }

  publish(channel: string, message: Envelope): void {
    if (this.closed || this.ipc.connected === false) return;
    // the origin field is unused here (the supervisor delivers to everyone)
    const payload = encodeBusEvent('publish', channel, '', message);
    this.flow.send({ type: 'history-publish', topic: this.topic, channel, payload });
  }

  onDelivery(handler: (channel: string, message: Envelope) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  private delivered(channel: unknown, offset: unknown, payload: unknown): void {
    if (typeof channel !== 'string' || typeof offset !== 'string' || !(payload instanceof Uint8Array)) return;
    const event = decodeBusEvent(payload);
    if (event?.kind !== 'publish') return;
    event.message.offset = offset;
    for (const h of this.handlers) h(channel, event.message);
  }

  async recover(
    channel: string,
    offset: string,
    wanted?: () => boolean,
  ): Promise<{ head: string; recovery: Recovery }> {
    const messages: Envelope[] = [];
    let from = offset;
    for (let page = 0; page < maxPages; page++) {
      // the rest of a long replay nobody waits for any more would cost the supervisor and this worker for nothing
      if (page > 0 && wanted && !wanted())
        return { head: '', recovery: { ok: false, reason: 'the replay is no longer wanted' } };
      const reply = await this.request(channel, from);
      if (!reply.ok)
        return { head: reply.head, recovery: { ok: false, reason: reply.reason ?? 'recovery failed' } };
      for (const entry of reply.entries) {
        const event = entry.payload instanceof Uint8Array ? decodeBusEvent(entry.payload) : undefined;
        if (event?.kind !== 'publish' || event.target !== channel) continue;
        event.message.offset = entry.offset;
        messages.push(event.message);
      }
      const last = reply.entries.at(-1)?.offset;
      if (!reply.more || !last) return { head: reply.head, recovery: { ok: true, messages } };
      from = last;
    }
    return { head: '', recovery: { ok: false, reason: `the replay did not end within ${maxPages} pages` } };
  }

  private request(channel: string, offset: string): Promise<HistoryRecoverReply> {
    if (this.closed || typeof this.ipc.send !== 'function' || this.ipc.connected === false)
      return Promise.reject(new Error('no supervisor IPC channel'));
    const id = nextId++;
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id);
        reject(new Error(`the supervisor did not answer within ${this.timeoutMs} ms`));
      }, this.timeoutMs);
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      this.flow.send({ type: 'history-recover?', id, topic: this.topic, channel, offset });
    });
  }

  private recovered(m: HistoryRecoverReply): void {
    const p = this.pending.get(m.id);
    if (!p) return;
    this.pending.delete(m.id);
    clearTimeout(p.timer);
    p.resolve(m);
  }

  async ready(): Promise<void> {}

  async close(): Promise<void> {
    this.closed = true;
    this.ipc.off('message', this.listener);
    this.handlers.clear();
    for (const p of this.pending.values()) {
      clearTimeout(p.timer);
      p.reject(new Error('history closed'));
    }
    this.pending.clear();
  }
}
