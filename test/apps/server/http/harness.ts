/**
 * In-process HttpServer on an ephemeral loopback port, serving a real App,
 * plus small HTTP/1.1, HTTP/2 and TLS client helpers.
 */

import { mkdtempSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { type ClientHttp2Session, connect as h2connect, type SecureClientSessionOptions } from 'node:http2';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { Writable } from 'node:stream';
import type { Tracer } from '@opentelemetry/api';
import { type Logger, pino } from 'pino';
import { Registry } from 'prom-client';
import { App } from '../../../../apps/server/app.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { loadConfig } from '../../../../supervisor/config/load.js';
import type { Config } from '../../../../supervisor/config/schema.js';
import type { TicketKeys } from '../../../../supervisor/ipc.js';

export type LogRecord = Record<string, unknown> & { msg?: string; code?: string; level?: number };

export function configWith(sets: string[]): Config {
  return loadConfig({
    env: {},
    sets: ['server.addr=127.0.0.1:0', ...sets],
    cwd: mkdtempSync(`${tmpdir()}/hyp-cfg-`),
  }).config;
}

/** A debug-level pino logger whose records land in `logs`, parsed. */
export function memoryLog(): { log: Logger; logs: LogRecord[] } {
  const logs: LogRecord[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      for (const line of chunk.toString('utf8').split('\n'))
        if (line) logs.push(JSON.parse(line) as LogRecord);
      done();
    },
  });
  return { log: pino({ level: 'debug' }, sink), logs };
}

/** An App set up by `setup` behind its own HttpServer on a loopback port (HTTP/1.1 and h2c: `server.protocol=auto`). */
export interface ListenedApp {
  port: number;
  url: string;
  registry: Registry;
  logs: LogRecord[];
  close(): Promise<void>;
}

export async function listenApp(
  setup: (app: App) => void,
  sets: string[] = [],
  options: { tracer?: Tracer } = {},
): Promise<ListenedApp> {
  const config = configWith(['server.protocol=auto', ...sets]);
  const { log, logs } = memoryLog();
  const registry = new Registry();
  const app = new App({ config, log, registry, tracer: options.tracer });
  setup(app);
  const http = new HttpServer({
    config,
    handler: app.handle,
    streamHandler: app.handleStream,
    registry: new Registry(),
    log,
  });
  const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
  return {
    port,
    url: `http://127.0.0.1:${port}`,
    registry,
    logs,
    close: () => http.drain(Date.now() + 2000),
  };
}

export interface Served {
  http: HttpServer;
  port: number;
  registry: Registry;
  logs: LogRecord[];
  /** Resolves the pending `/hold` requests. */
  release(): void;
  close(): Promise<void>;
}

/**
 * Routes: `/` answers `protocol <httpVersion>`, `POST /echo` echoes the body,
 * `POST /upload` reads up to 64 KiB, `POST /deny` answers 401 without
 * reading, `/big` and `/big-stream` answer `?bytes=N` (one chunk, or
 * 64 KiB chunks), `/whoami` names the verified TLS client certificate (CN, or
 * `none`), `/hold` waits for `release()`.
 */
export async function serve(sets: string[], ticketKeys?: TicketKeys): Promise<Served> {
  const config = configWith(sets);
  const registry = new Registry();
  const { log, logs } = memoryLog();
  const app = new App({ config, log, registry: new Registry() });
  let waiting: Array<() => void> = [];
  app.get('/', (c) => c.text(`protocol ${c.req.httpVersion}`));
  app.post('/echo', async (c) => c.text(String(await c.body('text'))));
  // A route that allows more than server.limits.body_limit, and one that answers without reading.
  app.post('/upload', async (c) => c.text(`got ${(await c.body('raw', { limit: 64 * 1024 })).length}`));
  app.post('/deny', (c) => c.text('denied', 401));
  // A large answer: in one chunk, or streamed in 64 KiB chunks (?bytes=N).
  app.get('/big', (c) => c.text('x'.repeat(Number(c.query('bytes') ?? 1 << 20))));
  app.get('/big-stream', (c) => {
    let left = Number(c.query('bytes') ?? 1 << 20);
    const chunk = Buffer.alloc(64 * 1024, 0x78);
    return c.stream(
      (function* () {
        for (; left > 0; left -= chunk.length) yield left >= chunk.length ? chunk : chunk.subarray(0, left);
      })() as unknown as AsyncIterable<Uint8Array>,
    );
  });
  // mTLS: who the verified client certificate names, or 'none'.
  app.get('/whoami', (c) => c.text(String(c.clientCert?.subject.CN ?? 'none')));
  app.get('/hold', async (c) => {
    await new Promise<void>((r) => waiting.push(r));
    return c.text('released');
  });
  const http = new HttpServer({
    config,
    handler: app.handle,
    streamHandler: app.handleStream,
    registry,
    log,
    ticketKeys,
  });
  const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
  return {
    http,
    port,
    registry,
    logs,
    release() {
      for (const r of waiting) r();
      waiting = [];
    },
    async close() {
      for (const r of waiting) r();
      waiting = [];
      await http.drain(Date.now() + 2000);
    },
  };
}

export interface Answer {
  status: number;
  body: string;
  httpVersion?: string;
}

/** One HTTP/1.1 request on a fresh connection. */
export function get1(port: number, path = '/', headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body, httpVersion: res.httpVersion }));
    });
    req.on('error', reject);
    req.end();
  });
}

/** One request on an HTTP/2 session. */
export function get2(
  session: ClientHttp2Session,
  path = '/',
  headers: Record<string, string> = {},
): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path, ...headers });
    let status = 0;
    let body = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => {
      status = Number(h[':status']);
    });
    stream.on('data', (d: string) => {
      body += d;
    });
    stream.on('end', () => resolve({ status, body }));
    stream.on('error', reject);
    stream.end();
  });
}

/** An HTTP/2 session, resolved once the server's SETTINGS have arrived (and been acknowledged). */
export function connect2(url: string, opts: SecureClientSessionOptions = {}): Promise<ClientHttp2Session> {
  return new Promise((resolve, reject) => {
    const session = h2connect(url, opts);
    session.once('remoteSettings', () => {
      session.off('error', reject);
      resolve(session);
    });
    session.once('error', reject);
  });
}

export function closeSession(session: ClientHttp2Session): Promise<void> {
  return new Promise((resolve) => {
    if (session.closed || session.destroyed) return resolve();
    session.close(() => resolve());
  });
}

/** A plain TCP connection to the listener (errors after connecting are ignored: the tests watch close). */
export function rawConnect(port: number): Promise<Socket> {
  return new Promise((resolve, reject) => {
    const s = new Socket();
    s.once('error', reject);
    s.connect(port, '127.0.0.1', () => {
      s.off('error', reject);
      s.on('error', () => {});
      resolve(s);
    });
  });
}

/** Resolves once the server has closed the socket, with what it sent. */
export function closedBy(socket: Socket): Promise<Buffer> {
  return new Promise((resolve) => {
    const got: Buffer[] = [];
    socket.on('data', (d: Buffer) => got.push(d));
    if (socket.destroyed) return resolve(Buffer.concat(got));
    socket.once('close', () => resolve(Buffer.concat(got)));
  });
}

/** HTTP/2 frame types (RFC 9113 §6). */
export const H2Type = {
  Data: 0,
  Headers: 1,
  Priority: 2,
  RstStream: 3,
  Settings: 4,
  Ping: 6,
  GoAway: 7,
  WindowUpdate: 8,
  Continuation: 9,
} as const;
/** HTTP/2 frame flags: END_STREAM (DATA, HEADERS), ACK (SETTINGS, PING), END_HEADERS. */
export const H2Flag = { EndStream: 0x1, Ack: 0x1, EndHeaders: 0x4 } as const;

/** HPACK: `:method` (GET 0x82, POST 0x83), `:scheme http` (static table), a literal `:path`, `:authority x`. */
export function requestBlock(path = '/', method = 0x82): Buffer {
  const p = Buffer.from(path, 'latin1');
  return Buffer.concat([Buffer.from([method, 0x86, 0x04, p.length]), p, Buffer.from([0x01, 0x01, 0x78])]);
}

/** A 32-bit big-endian field. */
export function u32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}

/** One HTTP/2 frame as a raw peer writes it: 9-byte head (length, type, flags, stream id), then `payload`. */
export function h2Frame(
  type: number,
  flags: number,
  stream: number,
  payload: Buffer = Buffer.alloc(0),
): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}
