import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, createServer, type Http2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../../apps/server/app.js';

let server: Http2Server;
let streamServer: Http2Server;
const origins: Record<'compat' | 'stream', string> = { compat: '', stream: '' };
let dir: string;

function listen(s: Http2Server): Promise<string> {
  return new Promise((resolve) =>
    s.listen(0, '127.0.0.1', () => resolve(`http://127.0.0.1:${(s.address() as AddressInfo).port}`)),
  );
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hyp-h2-'));
  writeFileSync(join(dir, 'hello.txt'), 'hello over h2');
  const app = new App();
  app.get('/api/ping', (c) => c.text('pong'));
  app.post('/api/echo', async (c) => c.json({ got: await c.body() }));
  app.get('/api/events', (c) => {
    const sse = c.sse();
    sse.send('one');
    sse.close();
  });
  app.static('/static', dir);
  server = createServer(app.handle);
  origins.compat = await listen(server);
  // As the worker serves HTTP/2: bare streams, compat objects only on demand.
  streamServer = createServer();
  streamServer.on('stream', (stream, headers, _flags, rawHeaders) =>
    app.handleStream(stream, headers, rawHeaders),
  );
  origins.stream = await listen(streamServer);
});

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()));
  await new Promise<void>((resolve) => streamServer.close(() => resolve()));
  rmSync(dir, { recursive: true, force: true });
});

function h2(
  origin: string,
  path: string,
  method = 'GET',
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; headers: Record<string, unknown>; body: string }> {
  return new Promise((resolve, reject) => {
    const session = connect(origin);
    session.on('error', reject);
    const stream = session.request({ ':path': path, ':method': method, ...headers });
    let status = 0;
    let responseHeaders: Record<string, unknown> = {};
    let data = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => {
      status = Number(h[':status']);
      responseHeaders = h;
    });
    stream.on('data', (d: string) => {
      data += d;
    });
    stream.on('end', () => {
      session.close();
      resolve({ status, headers: responseHeaders, body: data });
    });
    stream.on('error', reject);
    stream.end(body);
  });
}

describe.each([
  ['App.handle over HTTP/2 (compat API)', 'compat'],
  ['App.handleStream over HTTP/2 (bare streams)', 'stream'],
] as const)('%s', (_name, kind) => {
  const at = (path: string, method?: string, body?: string, headers?: Record<string, string>) =>
    h2(origins[kind], path, method, body, headers);

  it('routes, answers text with content-length and the request id', async () => {
    const res = await at('/api/ping');
    expect([res.status, res.body, res.headers['content-length']]).toEqual([200, 'pong', '4']);
    expect(res.headers['x-request-id']).toBeTruthy();
  });

  it('answers HEAD without a body', async () => {
    const res = await at('/api/ping', 'HEAD');
    expect([res.status, res.body, res.headers['content-length']]).toEqual([200, '', '4']);
  });

  it('reads a JSON body', async () => {
    const res = await at('/api/echo', 'POST', '{"x":1}', { 'content-type': 'application/json' });
    expect(JSON.parse(res.body)).toEqual({ got: { x: 1 } });
  });

  it('answers 404 and 405 with problem bodies', async () => {
    expect((await at('/nope')).status).toBe(404);
    const res = await at('/api/ping', 'DELETE');
    expect([res.status, res.headers.allow]).toEqual([405, 'GET, HEAD, OPTIONS']);
  });

  it('streams server-sent events', async () => {
    const res = await at('/api/events');
    expect(res.headers['content-type']).toBe('text/event-stream; charset=utf-8');
    expect(res.body).toBe('data: one\n\n');
  });

  it('serves static files', async () => {
    const res = await at('/static/hello.txt');
    expect([res.status, res.body]).toEqual([200, 'hello over h2']);
    expect(res.headers.etag).toBeTruthy();
  });
});

describe('app.shutdown()', () => {
  it('runs every onShutdown hook even when one throws, then rethrows the failure', async () => {
    const app = new App();
    const ran: string[] = [];
    app.onShutdown(() => {
      ran.push('first');
      throw new Error('first hook failed');
    });
    app.onShutdown(async () => {
      ran.push('second');
    });
    await expect(app.shutdown()).rejects.toThrow('first hook failed');
    expect(ran).toEqual(['first', 'second']);
    // Two failures: both reported.
    const two = new App();
    two.onShutdown(() => Promise.reject(new Error('a')));
    two.onShutdown(() => {
      throw new Error('b');
    });
    const failed = await two.shutdown().catch((err: unknown) => err);
    expect(failed).toBeInstanceOf(AggregateError);
    expect((failed as AggregateError).errors.map((e: Error) => e.message)).toEqual(['a', 'b']);
  });
});
