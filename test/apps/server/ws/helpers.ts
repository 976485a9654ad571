import { EventEmitter } from 'node:events';
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import type { Logger } from 'pino';
import { afterEach, vi } from 'vitest';
import { WebSocket } from 'ws';
import type { IpcChannel } from '../../../../apps/server/ws/bus.js';
import { type Codec, codecByName } from '../../../../apps/server/ws/codecs/index.js';
import type { Envelope } from '../../../../apps/server/ws/envelope.js';
import { createHub, type Hub, type HubOptions } from '../../../../apps/server/ws/hub.js';
import type { Security } from '../../../../apps/server/ws/security.js';
import { HypError } from '../../../../supervisor/errors.js';
import { PodHistory } from '../../../../supervisor/history.js';
import type { HistoryPublish, HistoryRecoverRequest } from '../../../../supervisor/ipc.js';

export interface Served {
  hub: Hub;
  server: Server;
  url: string;
  close(): Promise<void>;
}

/** A hub behind a real HTTP server on 127.0.0.1, upgrades routed as the HTTP layer will. */
export async function serveHub(options: HubOptions = {}): Promise<Served> {
  const hub = createHub({ pingIntervalMs: 0, ...options });
  const server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (req, socket, head) => hub.handleUpgrade(req, socket, head));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    hub,
    server,
    url: `ws://127.0.0.1:${port}/ws`,
    async close() {
      await hub.close();
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/**
 * One hub per test and the clients connected to it: `serve` and `connect`
 * record what they open, and everything is closed after each test (the bed
 * registers its own `afterEach`; create it at module level).
 */
export class HubTestBed {
  served: Served | undefined;
  readonly clients: TestClient[] = [];

  constructor() {
    afterEach(async () => {
      await Promise.all(this.clients.splice(0).map((c) => c.close().catch(() => {})));
      await this.served?.close();
      this.served = undefined;
      vi.restoreAllMocks();
    });
  }

  async serve(options: HubOptions = {}): Promise<Served> {
    this.served = await serveHub(options);
    return this.served;
  }

  /** A client of this test's hub, closed after the test. */
  readonly connect = async (
    codec = 'json',
    options: Parameters<typeof TestClient.connect>[2] = {},
  ): Promise<TestClient> => {
    const c = await TestClient.connect(this.served!.url, codec, options);
    this.clients.push(c);
    return c;
  };
}

/** A logger whose calls the test can inspect. */
export function fakeLog(): Logger & { error: ReturnType<typeof vi.fn> } {
  const log = { error: vi.fn(), warn: vi.fn(), debug: vi.fn(), info: vi.fn() };
  return log as unknown as Logger & { error: ReturnType<typeof vi.fn> };
}

/** A test client speaking one codec, optionally sealing with a Security. */
export class TestClient {
  readonly received: Envelope[] = [];
  readonly frames: Array<{ binary: boolean; bytes: Buffer }> = [];
  closed: { code: number; reason: string } | undefined;
  /** Frames this client could not open or decode. */
  unreadable = 0;
  private waiters: Array<() => void> = [];

  constructor(
    readonly ws: WebSocket,
    readonly codec: Codec,
    readonly security?: Security,
  ) {
    ws.on('message', (data: Buffer, binary: boolean) => {
      this.frames.push({ binary, bytes: data });
      try {
        const bytes = security ? security.open(data).payload : data;
        this.received.push(codec.unmarshal(bytes));
      } catch {
        this.unreadable++;
      }
      this.wake();
    });
    ws.on('close', (code, reason) => {
      this.closed = { code, reason: reason.toString() };
      this.wake();
    });
    ws.on('error', () => {});
  }

  static async connect(
    url: string,
    codecName = 'json',
    options: {
      security?: Security;
      headers?: Record<string, string>;
      autoPong?: boolean;
      protocols?: string[];
    } = {},
  ): Promise<TestClient> {
    const protocols = options.protocols ?? (codecName === 'json' ? [] : [codecName]);
    const ws = new WebSocket(url, protocols, {
      headers: options.headers,
      autoPong: options.autoPong ?? true,
    });
    const client = new TestClient(ws, codecByName(codecName)!, options.security);
    await new Promise<void>((resolve, reject) => {
      ws.once('open', () => resolve());
      ws.once('unexpected-response', (_req, res) => reject(new Error(`HTTP ${res.statusCode}`)));
      ws.once('error', reject);
    });
    return client;
  }

  private wake(): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w();
  }

  send(fields: Partial<Envelope>): void {
    const m: Envelope = {
      type: '',
      channel: '',
      data: new Uint8Array(),
      timestamp: 0n,
      clientId: '',
      offset: '',
      ...fields,
    };
    const bytes = this.codec.marshal(m);
    const sealed = this.security ? this.security.seal(bytes) : bytes;
    this.ws.send(sealed, { binary: this.security !== undefined || this.codec.frame === 'binary' });
  }

  subscribe(channel: string, offset = ''): void {
    this.send({ type: 'subscribe', data: this.codec.encodeChannelRequest({ channel, offset }) });
  }

  join(room: string): void {
    this.send({ type: 'join_room', data: this.codec.encodeRoomRequest({ roomId: room }) });
  }

  /** Waits until `predicate` holds over what arrived (bounded by `timeoutMs`). */
  async until(predicate: (c: TestClient) => boolean, timeoutMs = 10_000): Promise<void> {
    const end = Date.now() + timeoutMs;
    while (!predicate(this)) {
      const left = end - Date.now();
      if (left <= 0) throw new Error(`timed out; received ${JSON.stringify(this.summary())}`);
      await new Promise<void>((resolve) => {
        const t = setTimeout(resolve, left);
        this.waiters.push(() => {
          clearTimeout(t);
          resolve();
        });
      });
    }
  }

  of(type: string): Envelope[] {
    return this.received.filter((m) => m.type === type);
  }

  async nextOf(type: string, count = 1): Promise<Envelope[]> {
    await this.until((c) => c.of(type).length >= count);
    return this.of(type);
  }

  /** The presence join/leave events received, as `join:id` / `leave:id`. */
  presenceEvents(): string[] {
    return this.of('presence')
      .map((m) => JSON.parse(Buffer.from(m.data).toString()) as { event?: string; client_id?: string })
      .filter((e) => e.event !== undefined)
      .map((e) => `${e.event}:${e.client_id}`);
  }

  summary(): unknown[] {
    return this.received.map((m) => ({
      type: m.type,
      channel: m.channel,
      data: Buffer.from(m.data).toString(),
    }));
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.ws.close();
    await this.until((c) => c.closed !== undefined, 1_000).catch(() => this.ws.terminate());
  }
}

export function text(m: Envelope): string {
  return Buffer.from(m.data).toString();
}

export function json(m: Envelope): unknown {
  return JSON.parse(text(m));
}

export async function eventually(check: () => boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > end) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 10));
  }
}

/** The `Sec-WebSocket-Key` of RFC 6455's example handshake. */
export const handshakeKey = 'dGhlIHNhbXBsZSBub25jZQ==';

/** A raw WebSocket upgrade request: `line`, the handshake headers, then `extra` header lines. */
export function upgradeRequest(line = 'GET /ws HTTP/1.1', extra = ''): string {
  return (
    `${line}\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
    `Sec-WebSocket-Key: ${handshakeKey}\r\nSec-WebSocket-Version: 13\r\n${extra}\r\n`
  );
}

/** `server`'s open sockets once they have had a moment to close (bounded: 200 polls of 10 ms). */
export async function openSockets(server: Server): Promise<number> {
  const count = () =>
    new Promise<number>((resolve, reject) =>
      server.getConnections((err, n) => (err ? reject(err) : resolve(n))),
    );
  let n = await count();
  for (let i = 0; i < 200 && n > 0; i++) {
    await new Promise((r) => setTimeout(r, 10));
    n = await count();
  }
  return n;
}

/** A raw connection to a hub's server, and what the server answered. */
export interface RawExchange {
  socket: Socket;
  /** Resolves with everything the server sent once it ends its side; this side never closes first. */
  answer: Promise<string>;
}

/** Write `request` on a fresh half-open-capable connection (the caller destroys `socket` when done). */
export function rawExchange(port: number, request: string): RawExchange {
  const socket = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  let out = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    out += d;
  });
  const answer = new Promise<string>((resolve, reject) => {
    socket.on('end', () => resolve(out));
    socket.on('close', () => resolve(out));
    socket.on('error', reject);
  });
  socket.write(request);
  return { socket, answer };
}

/**
 * IPC channels of `workers` workers connected to one in-process stand-in for
 * the supervisor's pod-wide history (supervisor/history.ts); `answer: false`
 * makes it ignore recovery requests.
 */
export function podHistoryChannels(
  workers: number,
  options: { answer?: boolean; history?: PodHistory; maxBytes?: number } = {},
) {
  const history = options.history ?? new PodHistory({ size: 100 });
  const ends = Array.from({ length: workers }, () => new EventEmitter());
  const channels: IpcChannel[] = ends.map((end) => ({
    send(raw: unknown) {
      const m = raw as { type: string } & HistoryPublish & HistoryRecoverRequest;
      queueMicrotask(() => {
        if (m.type === 'history-publish') {
          const offset = history.append(`${m.topic}\u0000${m.channel}`, m.payload);
          for (const e of ends) e.emit('message', { ...m, type: 'history', offset });
        } else if (m.type === 'history-recover?' && options.answer !== false) {
          end.emit('message', history.recoveryReply(m, options.maxBytes ?? Number.POSITIVE_INFINITY));
        }
      });
      return true;
    },
    on: (event, listener) => end.on(event, listener),
    off: (event, listener) => end.off(event, listener),
  }));
  return { history, channels };
}

/** A stand-in supervisor whose recovery answers wait until the test releases them. */
export function holdingPod(pageBytes = Number.POSITIVE_INFINITY) {
  const history = new PodHistory({ size: 100 });
  const end = new EventEmitter();
  const held: HistoryRecoverRequest[] = [];
  const channel: IpcChannel = {
    send(raw: unknown) {
      const m = raw as { type: string } & HistoryPublish & HistoryRecoverRequest;
      queueMicrotask(() => {
        if (m.type === 'history-publish') {
          const offset = history.append(`${m.topic}\u0000${m.channel}`, m.payload);
          end.emit('message', { ...m, type: 'history', offset });
        } else if (m.type === 'history-recover?') held.push(m);
      });
      return true;
    },
    on: (event, listener) => end.on(event, listener),
    off: (event, listener) => end.off(event, listener),
  };
  const release = () => {
    for (const m of held.splice(0)) end.emit('message', history.recoveryReply(m, pageBytes));
  };
  return { history, channel, held, release };
}

/** The HypError `f` throws (anything else it throws is rethrown; not throwing fails). */
export function thrownHypError(f: () => unknown): HypError {
  try {
    f();
  } catch (err) {
    if (err instanceof HypError) return err;
    throw err;
  }
  throw new Error('no error thrown');
}
