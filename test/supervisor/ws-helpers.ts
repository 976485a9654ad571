/**
 * WebSocket clients for the supervisor-level hub tests: the real client
 * library (HypWebSocket) over the `ws` package, with a gate that takes a
 * client offline (its reconnects go to a closed port) and a record of every
 * raw frame and close code.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { WebSocket } from 'ws';
import {
  type CodecName,
  type HypMessage,
  HypWebSocket,
  type SocketConstructor,
} from '../../apps/client/index.js';
import { freePort } from '../helpers/ports.js';
import { until } from '../helpers/supervisor.js';

export interface Frame {
  binary: boolean;
  bytes: Buffer;
}

/** A HypWebSocket with a gate and a log of what it received. */
export class TestClient {
  readonly ws: HypWebSocket;
  readonly messages: HypMessage[] = [];
  readonly frames: Frame[] = [];
  readonly closes: number[] = [];
  readonly errors: Array<{ code: string; message: string }> = [];
  private offline = false;
  private readonly byChannel = new Map<string, string[]>();
  private target: number;
  private socket: WebSocket | undefined;

  constructor(port: number, options: { codec?: CodecName; clientId?: string; deadPort?: number } = {}) {
    const self = this;
    this.target = port;
    const dead = options.deadPort ?? 1;
    class GatedSocket extends WebSocket {
      constructor(url: string, protocols?: string | string[]) {
        super(url.replace(`:${port}/`, `:${self.offline ? dead : self.target}/`), protocols);
        self.socket = this;
        this.on('message', (data: Buffer | ArrayBuffer | Buffer[], binary: boolean) =>
          self.frames.push({
            binary,
            bytes: Array.isArray(data) ? Buffer.concat(data) : Buffer.from(data as ArrayBuffer),
          }),
        );
      }
    }
    this.ws = new HypWebSocket(`ws://127.0.0.1:${port}/ws`, {
      codec: options.codec ?? 'json',
      clientId: options.clientId,
      WebSocket: GatedSocket as unknown as SocketConstructor,
      reconnect: { initialDelayMs: 50, maxDelayMs: 400 },
    });
    this.ws.on('message', (m) => {
      this.messages.push(m);
      if (!m.channel) return;
      let ids = this.byChannel.get(m.channel);
      if (!ids) {
        ids = [];
        this.byChannel.set(m.channel, ids);
      }
      ids.push(m.json<{ id: string }>().id);
    });
    this.ws.on('close', (code) => this.closes.push(code));
    this.ws.on('error', (e) => this.errors.push({ code: e.code, message: e.message }));
  }

  connect(): Promise<void> {
    return this.ws.connect();
  }

  /** Subscribes and waits for the hub's ack (the client then knows the channel's head). */
  async subscribe(channel: string): Promise<void> {
    this.ws.subscribe(channel);
    await until(() => (this.ws.offset(channel) ? true : undefined), `subscribe ack on ${channel}`);
  }

  /** Drops the connection; reconnects fail until `goOnline`. */
  goOffline(): void {
    this.offline = true;
    this.socket?.terminate();
  }

  /** Back online; reconnects go to `port` (another pod, say) when given. */
  goOnline(port?: number): void {
    if (port !== undefined) this.target = port;
    this.offline = false;
  }

  /** Payload ids (`{id}` JSON data) received on `channel`, in order (parsed once, on arrival). */
  ids(channel: string): readonly string[] {
    return this.byChannel.get(channel) ?? [];
  }

  close(): void {
    this.ws.close();
  }
}

export { freePort };

/** The pid a TestClient's worker greeted it with (fixtures that send `{ pid }` on connect). */
export function greetedPid(c: TestClient): number | undefined {
  const greeting = c.messages.find((m) => !m.channel);
  return greeting?.json<{ pid: number }>().pid;
}

export interface RedisServer {
  url: string;
  stop(): Promise<void>;
}

/** A throw-away redis-server on a random loopback port; undefined when the binary is absent. */
export async function startRedis(binary: string): Promise<RedisServer> {
  const port = await freePort();
  const proc: ChildProcess = spawn(
    binary,
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  let out = '';
  proc.stdout!.on('data', (c: Buffer) => {
    out += c.toString();
  });
  await until(
    () => (/Ready to accept connections/.test(out) ? true : undefined),
    'redis-server ready',
    15_000,
  );
  return {
    url: `redis://127.0.0.1:${port}`,
    async stop() {
      if (proc.exitCode !== null) return;
      const exited = new Promise((r) => proc.once('exit', r));
      proc.kill('SIGTERM');
      await exited;
    },
  };
}

/** Counts of each id; `expected` ids must all be there exactly once, nothing else. */
export function exactlyOnce(received: readonly string[], expected: readonly string[]) {
  const counts = new Map<string, number>();
  for (const id of received) counts.set(id, (counts.get(id) ?? 0) + 1);
  const missing = expected.filter((id) => !counts.has(id)).length;
  const duplicated = [...counts.values()].filter((n) => n > 1).length;
  const unexpected = [...counts.keys()].filter((id) => !expected.includes(id)).length;
  return { missing, duplicated, unexpected };
}
