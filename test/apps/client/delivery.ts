/**
 * What the client delivery specs share: real hubs in-process behind a TCP
 * front (./front.ts), and clients that record what reaches the application.
 * Everything made here is closed by `closeAll()` (each spec file's afterEach).
 */
import { WebSocket } from 'ws';
import { type HypErrorFrame, HypWebSocket, type SocketConstructor } from '../../../apps/client/index.js';
import { type CodecName, codecByName } from '../../../apps/server/ws/codecs/index.js';
import type { Envelope } from '../../../apps/server/ws/envelope.js';
import { type Served, serveHub } from '../server/ws/helpers.js';
import { type Front, front, portOf } from './front.js';

export const cleanup: Array<() => Promise<void> | void> = [];

export async function closeAll(): Promise<void> {
  for (const fn of cleanup.splice(0).reverse()) await fn();
}

export async function hub(options: Parameters<typeof serveHub>[0] = {}): Promise<Served> {
  const served = await serveHub(options);
  cleanup.push(() => served.close());
  return served;
}

export async function frontOf(served: Served): Promise<Front> {
  const f = await front(portOf(served.url));
  cleanup.push(() => f.close());
  return f;
}

/** A client recording what reaches the application, per channel, and its events. */
export function client(url: string, options: ConstructorParameters<typeof HypWebSocket>[1] = {}) {
  const ws = new HypWebSocket(url, { reconnect: { initialDelayMs: 10, maxDelayMs: 100 }, ...options });
  cleanup.push(() => ws.close());
  const got = new Map<string, unknown[]>();
  const errors: HypErrorFrame[] = [];
  let opens = 0;
  let closes = 0;
  ws.on('error', (e) => errors.push(e));
  ws.on('open', () => opens++);
  ws.on('close', () => closes++);
  return {
    ws,
    errors,
    get opens() {
      return opens;
    },
    get closes() {
      return closes;
    },
    /** Subscribes (after `offset`, when given) with a handler recording the JSON data. */
    subscribe(channel: string, offset?: string) {
      const list: unknown[] = [];
      got.set(channel, list);
      return ws.subscribe(channel, (m) => list.push(m.json()), offset === undefined ? {} : { offset });
    },
    got: (channel: string) => got.get(channel) ?? [],
  };
}

export const range = (from: number, to: number) => Array.from({ length: to - from }, (_, i) => from + i);

/** A `ws` WebSocket that keeps every frame the client sends, decoded with `codec`. */
export function recordingSocket(codec: CodecName, sent: Envelope[]): SocketConstructor {
  const c = codecByName(codec)!;
  return class extends WebSocket {
    override send(data: string | Uint8Array<ArrayBuffer>): void {
      sent.push(c.unmarshal(typeof data === 'string' ? new TextEncoder().encode(data) : data));
      super.send(data);
    }
  } as unknown as SocketConstructor;
}
