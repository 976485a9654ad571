/**
 * A raw `ws` server on a loopback port that speaks the hub's wire format but
 * does whatever a test tells it — what a hub never should — for testing the
 * client against misbehaving servers and proxies.
 */
import type { AddressInfo } from 'node:net';
import { type WebSocket, WebSocketServer } from 'ws';
import { jsonCodec } from '../../../apps/server/ws/codecs/index.js';
import { envelope } from '../../../apps/server/ws/envelope.js';

export interface RawServer {
  url: string;
  connections: WebSocket[];
  /** Frames received, per connection, decoded as JSON envelopes (`?` when they do not decode). */
  received: Array<Array<{ type: string; data: string }>>;
  close(): Promise<void>;
}

export interface RawServerOptions {
  handleProtocols?: (protocols: Set<string>) => string | false;
  /** Largest frame accepted (default `ws`'s 100 MiB). */
  maxPayload?: number;
}

export async function rawServer(
  onConnection: (ws: WebSocket, index: number) => void,
  options: RawServerOptions = {},
): Promise<RawServer> {
  const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, ...options });
  await new Promise<void>((resolve) => wss.once('listening', () => resolve()));
  const connections: WebSocket[] = [];
  const received: RawServer['received'] = [];
  wss.on('connection', (ws) => {
    const index = connections.length;
    connections.push(ws);
    const frames: RawServer['received'][number] = [];
    received.push(frames);
    ws.on('message', (data: Buffer) => {
      try {
        const m = jsonCodec.unmarshal(new Uint8Array(data));
        frames.push({ type: m.type, data: Buffer.from(m.data).toString() });
      } catch {
        frames.push({ type: '?', data: data.toString() });
      }
    });
    ws.on('error', () => {});
    onConnection(ws, index);
  });
  const { port } = wss.address() as AddressInfo;
  return {
    url: `ws://127.0.0.1:${port}/ws`,
    connections,
    received,
    close: async () => {
      for (const ws of wss.clients) ws.terminate();
      await new Promise<void>((resolve) => wss.close(() => resolve()));
    },
  };
}

/** One JSON-codec frame as text. */
export function frame(fields: Parameters<typeof envelope>[0]): string {
  return Buffer.from(jsonCodec.marshal(envelope(fields))).toString();
}
