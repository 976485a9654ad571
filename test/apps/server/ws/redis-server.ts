/**
 * A real redis-server for tests, on a free loopback port, and the ways the
 * tests break it: stopped and started again without its data
 * (`RedisProcess`), or cut off from one pod while the others keep it
 * (`CuttableLink`, a TCP proxy in front of it).
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createServer, type Server, Socket } from 'node:net';
import { Redis } from 'ioredis';
import { afterAll, beforeAll } from 'vitest';
import { freePort } from '../../../helpers/ports.js';

export function redisBinary(): string | undefined {
  try {
    return execFileSync('which', ['redis-server']).toString().trim() || undefined;
  } catch {
    return undefined;
  }
}

export { freePort };

export async function until<T>(
  check: () => T | undefined | Promise<T | undefined>,
  what: string,
  ms = 15_000,
) {
  const end = Date.now() + ms;
  for (let i = 0; i < 100_000; i++) {
    const v = await check();
    if (v !== undefined && v !== false) return v;
    if (Date.now() > end) break;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error(`timed out waiting for ${what}`);
}

/** A redis-server that can be stopped and started again on the same port (it keeps no data). */
export class RedisProcess {
  proc: ChildProcess | undefined;
  constructor(
    readonly binary: string,
    readonly port: number,
  ) {}
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  async start(): Promise<void> {
    const proc = spawn(
      this.binary,
      ['--port', String(this.port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.proc = proc;
    let out = '';
    proc.stdout!.on('data', (c: Buffer) => {
      out += c.toString();
    });
    await until(() => /Ready to accept connections/.test(out) || undefined, 'redis-server ready');
  }
  async stop(): Promise<void> {
    const proc = this.proc;
    if (!proc || proc.exitCode !== null || proc.signalCode !== null) return;
    const exited = new Promise((r) => proc.once('exit', r));
    proc.kill('SIGKILL');
    await exited;
  }
}

/**
 * A TCP proxy in front of Redis: `cut()` drops every connection through it
 * and refuses new ones until `restore()` — one pod losing Redis while the
 * others keep it. `onClientData` sees each chunk a client sends before it
 * is forwarded and may delay it. While `deaf`, Redis's replies are dropped
 * (a connection lost after Redis executed a command, before its reply came).
 */
export class CuttableLink {
  readonly server: Server;
  private readonly pairs = new Set<[Socket, Socket]>();
  blocked = false;
  deaf = false;
  onClientData: ((chunk: Buffer) => Promise<void> | undefined) | undefined;
  port = 0;
  constructor(readonly target: number) {
    this.server = createServer((client) => {
      if (this.blocked) {
        client.destroy();
        return;
      }
      const upstream = new Socket();
      const pair: [Socket, Socket] = [client, upstream];
      this.pairs.add(pair);
      const drop = () => {
        this.pairs.delete(pair);
        client.destroy();
        upstream.destroy();
      };
      client.on('error', drop).on('close', drop);
      upstream.on('error', drop).on('close', drop);
      upstream.connect(this.target, '127.0.0.1');
      upstream.on('data', (chunk: Buffer) => {
        if (!this.deaf) client.write(chunk);
      });
      let chain = Promise.resolve();
      client.on('data', (chunk: Buffer) => {
        chain = chain.then(async () => {
          await this.onClientData?.(chunk);
          if (!upstream.destroyed) upstream.write(chunk);
        });
      });
    });
  }
  async listen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(0, '127.0.0.1', resolve));
    this.port = (this.server.address() as { port: number }).port;
  }
  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }
  cut(): void {
    this.blocked = true;
    for (const [a, b] of this.pairs) {
      a.destroy();
      b.destroy();
    }
    this.pairs.clear();
  }
  restore(): void {
    this.blocked = false;
  }
  async close(): Promise<void> {
    this.cut();
    await new Promise((r) => this.server.close(r));
  }
}

/** A listening `CuttableLink` to the Redis on `port` (the caller closes it). */
export async function cuttableLink(port: number): Promise<CuttableLink> {
  const link = new CuttableLink(port);
  await link.listen();
  return link;
}

/**
 * A redis-server for the calling describe block, started before its tests
 * and stopped after them, and a raw client on it (for asserting on keys);
 * `use` receives both once started.
 */
export function redisForSuite(binary: string, use: (redis: RedisProcess, raw: Redis) => void): void {
  let redis: RedisProcess | undefined;
  let raw: Redis | undefined;
  beforeAll(async () => {
    redis = new RedisProcess(binary, await freePort());
    await redis.start();
    raw = new Redis(redis.url, { maxRetriesPerRequest: null });
    raw.on('error', () => {});
    use(redis, raw);
  }, 30_000);
  afterAll(async () => {
    raw?.disconnect();
    await redis?.stop();
  });
}
