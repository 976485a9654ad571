/**
 * Response and request helpers under hostile use, on real sockets: HEAD on
 * server-sent events, SSE clients that stop reading, mounts reached through
 * a percent-encoded prefix, c.stream() sources that fail, lie about their
 * length or outlive their client, and a handler answering twice.
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import express from 'express';
import Fastify from 'fastify';
import { afterEach, describe, expect, it } from 'vitest';
import type { App } from '../../../apps/server/app.js';
import { type LogRecord, listenApp } from './http/harness.js';

interface Running {
  port: number;
  logs: LogRecord[];
}

let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

async function start(setup: (app: App) => void, sets: string[] = []): Promise<Running> {
  const served = await listenApp(setup, sets);
  closers.push(served.close);
  return { port: served.port, logs: served.logs };
}

/** A raw HTTP/1.1 connection that collects everything it reads. */
function rawConnection(port: number): {
  socket: Socket;
  text(): string;
  closed: Promise<void>;
  isClosed(): boolean;
} {
  const socket = connect(port, '127.0.0.1');
  let received = '';
  let isClosed = false;
  socket.once('close', () => {
    isClosed = true;
  });
  socket.on('data', (d: Buffer) => {
    received += d.toString('latin1');
  });
  socket.on('error', () => {});
  const closed = new Promise<void>((resolve) => socket.once('close', () => resolve()));
  closers.push(async () => {
    socket.destroy();
    await closed;
  });
  return { socket, text: () => received, closed, isClosed: () => isClosed };
}

/** Poll `check` every 10 ms, at most `tries` times. */
async function until(check: () => boolean, tries = 500): Promise<boolean> {
  for (let i = 0; i < tries; i++) {
    if (check()) return true;
    await new Promise((r) => setTimeout(r, 10));
  }
  return check();
}

/** The HTTP/1.1 responses in `raw`, in order: status and body (Content-Length or chunked). */
function responses(raw: string): { status: number; headers: string; body: string }[] {
  const out: { status: number; headers: string; body: string }[] = [];
  let rest = raw;
  for (let n = 0; n < 20 && rest.startsWith('HTTP/1.1 '); n++) {
    const end = rest.indexOf('\r\n\r\n');
    if (end < 0) break;
    const headers = rest.slice(0, end);
    const status = Number(headers.slice(9, 12));
    rest = rest.slice(end + 4);
    const length = /\r\ncontent-length: (\d+)/i.exec(headers);
    let body = '';
    if (length) {
      body = rest.slice(0, Number(length[1]));
      rest = rest.slice(Number(length[1]));
    } else if (/\r\ntransfer-encoding: chunked/i.test(headers)) {
      for (let m = 0; m < 10_000; m++) {
        const line = rest.indexOf('\r\n');
        const size = Number.parseInt(rest.slice(0, line), 16);
        rest = rest.slice(line + 2);
        if (size === 0) {
          rest = rest.slice(2);
          break;
        }
        body += rest.slice(0, size);
        rest = rest.slice(size + 2);
      }
    }
    out.push({ status, headers, body });
  }
  return out;
}

function h2session(port: number): ClientHttp2Session {
  const session = h2connect(`http://127.0.0.1:${port}`);
  session.on('error', () => {});
  closers.push(
    () =>
      new Promise<void>((resolve) => {
        if (session.destroyed) return resolve();
        session.once('close', () => resolve());
        session.destroy();
      }),
  );
  return session;
}

interface H2Answer {
  status: number;
  headers: Record<string, unknown>;
  body: string;
  rstCode: number | undefined;
}

function h2request(session: ClientHttp2Session, path: string, method = 'GET'): Promise<H2Answer> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': path, ':method': method });
    let headers: Record<string, unknown> = {};
    let body = '';
    stream.setEncoding('utf8');
    stream.on('response', (h) => {
      headers = h;
    });
    stream.on('data', (d: string) => {
      body += d;
    });
    stream.on('error', () => {});
    stream.on('close', () =>
      resolve({ status: Number(headers[':status'] ?? 0), headers, body, rstCode: stream.rstCode }),
    );
    stream.end();
  });
}

describe('server-sent events', () => {
  it('answers HEAD with the head alone and frees the connection for the next request (HTTP/1.1)', async () => {
    const ended: boolean[] = [];
    const { port } = await start((app) => {
      app.get('/events', (c) => {
        const sse = c.sse();
        ended.push(sse.signal.aborted);
        // A typical producer: stops on sse.signal.
        const timer = setInterval(() => sse.send({ tick: true }), 5);
        sse.signal.addEventListener('abort', () => clearInterval(timer));
        c.closed().then(() => clearInterval(timer));
      });
      app.get('/ping', (c) => c.text('pong'));
    });
    const conn = rawConnection(port);
    conn.socket.write('HEAD /events HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n');
    // Before the fix the SSE response never ended: /ping stayed queued behind it.
    expect(await until(() => conn.text().includes('pong'), 300)).toBe(true);
    const [head, ping] = responses(conn.text());
    expect(head?.status).toBe(200);
    expect(head?.headers).toMatch(/\r\ncontent-type: text\/event-stream; charset=utf-8/);
    expect(head?.body).toBe('');
    expect([ping?.status, ping?.body]).toEqual([200, 'pong']);
    expect(ended).toEqual([true]);
  });

  it('answers HEAD over HTTP/2 with the head alone, the stream ended cleanly', async () => {
    const { port } = await start((app) => {
      app.get('/events', (c) => {
        const sse = c.sse();
        const timer = setInterval(() => sse.send('x'), 5);
        sse.signal.addEventListener('abort', () => clearInterval(timer));
      });
    });
    const answer = await h2request(h2session(port), '/events', 'HEAD');
    expect([answer.status, answer.headers['content-type'], answer.body, answer.rstCode]).toEqual([
      200,
      'text/event-stream; charset=utf-8',
      '',
      0,
    ]);
  });

  /** A handler that sends `events` events of `size` bytes as fast as the loop allows, ignoring send()'s false. */
  function flood(
    app: App,
    events: number,
    size: number,
    seen: { max: number; sent: number; aborted: boolean },
  ) {
    app.get('/flood', (c) => {
      const sse = c.sse({ bufferLimit: 256 * 1024 });
      const payload = 'y'.repeat(size);
      const res = c.res;
      const burst = () => {
        for (let i = 0; i < 64 && seen.sent < events; i++) {
          if (sse.closed) break;
          sse.send(payload);
          seen.sent++;
          seen.max = Math.max(seen.max, res.writableLength);
        }
        if (seen.sent < events && !sse.closed) setImmediate(burst);
        else seen.aborted = sse.signal.aborted;
      };
      burst();
    });
  }

  it('cuts an HTTP/1.1 client that stops reading once bufferLimit is exceeded, instead of buffering without end', async () => {
    const seen = { max: 0, sent: 0, aborted: false };
    const { port, logs } = await start((app) => flood(app, 4000, 16 * 1024, seen));
    const conn = rawConnection(port);
    conn.socket.write('GET /flood HTTP/1.1\r\nHost: x\r\n\r\n');
    conn.socket.pause();
    // Up to 64 MiB could be sent if nothing cut the stream.
    await until(() => seen.aborted || seen.sent >= 4000, 2000);
    expect(seen.sent, JSON.stringify(seen)).toBeLessThan(4000);
    expect(seen.aborted, JSON.stringify(seen)).toBe(true);
    // The limit, plus the event that crossed it.
    expect(seen.max).toBeLessThanOrEqual(256 * 1024 + 17 * 1024);
    expect(await until(() => logs.some((l) => l.code === 'HYP_E_SSE_SLOW_CONSUMER'))).toBe(true);
    conn.socket.resume();
    await conn.closed;
  });

  it('resets an HTTP/2 stream whose client stops reading once bufferLimit is exceeded', async () => {
    const seen = { max: 0, sent: 0, aborted: false };
    const { port, logs } = await start((app) => flood(app, 4000, 16 * 1024, seen));
    const session = h2session(port);
    const stream = session.request({ ':path': '/flood' });
    stream.on('error', () => {});
    stream.pause();
    const closed = new Promise<number | undefined>((r) => stream.once('close', () => r(stream.rstCode)));
    await until(() => seen.aborted || seen.sent >= 4000, 2000);
    expect(seen.sent, JSON.stringify(seen)).toBeLessThan(4000);
    expect(seen.aborted, JSON.stringify(seen)).toBe(true);
    expect(seen.max).toBeLessThanOrEqual(256 * 1024 + 17 * 1024);
    stream.resume();
    expect(await closed).toBe(8); // NGHTTP2_CANCEL
    expect(logs.some((l) => l.code === 'HYP_E_SSE_SLOW_CONSUMER')).toBe(true);
  });
});

describe('groups: mounts and static files', () => {
  it('serves a mount and static files registered on a group under the group prefix once, not twice', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-group-static-'));
    writeFileSync(join(dir, 'a.txt'), 'file a');
    const { port } = await start((app) => {
      const api = app.group('/api');
      api.mount('/v1', (req, res) => res.end(`mounted ${req.url}`));
      api.static('/assets', dir);
    });
    const base = `http://127.0.0.1:${port}`;
    const mounted = await fetch(`${base}/api/v1/users/7?x=1`);
    expect([mounted.status, await mounted.text()]).toEqual([200, 'mounted /users/7?x=1']);
    const file = await fetch(`${base}/api/assets/a.txt`);
    expect([file.status, await file.text()]).toEqual([200, 'file a']);
    // Before the fix both lived under /api/api/...
    expect((await fetch(`${base}/api/api/v1/users/7`)).status).toBe(404);
    expect((await fetch(`${base}/api/api/assets/a.txt`)).status).toBe(404);
  });
});

describe('a mount behind hyp middleware that read the body', () => {
  it('hands the body on to Express and Fastify (HTTP/1.1 and HTTP/2) instead of an ended stream', async () => {
    const fastify = Fastify();
    fastify.post('/echo', async (req) => ({ fastify: req.body }));
    await fastify.ready();
    closers.push(() => fastify.close());
    const seenByMiddleware: unknown[] = [];
    const { port } = await start((app) => {
      // e.g. an audit log or a webhook signature check
      app.use(async (c, next) => {
        if (c.method === 'POST') seenByMiddleware.push(await c.body('json'));
        await next();
      });
      const ex = express();
      ex.use(express.json());
      ex.post('/echo', (req, res) => {
        res.json({ express: req.body });
      });
      app.mount('/ex', ex);
      app.mount('/f', (req, res) => fastify.routing(req, res), { http2: true });
    });
    const post = (path: string) =>
      fetch(`http://127.0.0.1:${port}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
        signal: AbortSignal.timeout(5000),
      }).then(async (r) => [r.status, await r.json()]);
    // Before the fix: Express saw no body, Fastify waited for one until the timeout.
    expect(await post('/ex/echo')).toEqual([200, { express: { a: 1 } }]);
    expect(await post('/f/echo')).toEqual([200, { fastify: { a: 1 } }]);
    const answer = await new Promise<string>((resolve) => {
      const stream = h2session(port).request({
        ':path': '/f/echo',
        ':method': 'POST',
        'content-type': 'application/json',
      });
      let body = '';
      stream.setEncoding('utf8');
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('error', () => {});
      stream.on('close', () => resolve(body));
      stream.setTimeout(5000, () => stream.close());
      stream.end('{"b":2}');
    });
    expect(answer).toBe('{"fastify":{"b":2}}');
    expect(seenByMiddleware).toEqual([{ a: 1 }, { a: 1 }, { b: 2 }]);
  });
});

describe('mounted apps behind a percent-encoded prefix', () => {
  function inner() {
    const ex = express();
    ex.get('/users/:id', (req, res) => {
      res.json({ url: req.url, id: req.params.id });
    });
    return ex;
  }

  it('strips the prefix by path segments, however the client spelled it', async () => {
    const { port } = await start((app) => {
      app.mount('/legacy', inner());
      app.group('/api').mount('/v1', inner());
    });
    const base = `http://127.0.0.1:${port}`;
    for (const path of ['/legacy/users/5?q=1', '/%6Cegacy/users/5?q=1', '/%6c%65%67%61%63%79/users/5?q=1']) {
      const res = await fetch(`${base}${path}`);
      expect([path, res.status, await res.json()]).toEqual([path, 200, { url: '/users/5?q=1', id: '5' }]);
    }
    const nested = await fetch(`${base}/ap%69/v%31/users/7`);
    expect([nested.status, await nested.json()]).toEqual([200, { url: '/users/7', id: '7' }]);
  });
});

describe('c.stream()', () => {
  it('cuts an HTTP/1.1 response whose source gives fewer bytes than its Content-Length, so the next response cannot run into it', async () => {
    const { port, logs } = await start((app) => {
      app.get('/short', (c) => {
        c.header('content-length', '10');
        return c.stream(Readable.from(['abc']), 'text/plain');
      });
      app.get('/long', (c) => {
        c.header('content-length', '3');
        return c.stream(Readable.from(['abc', 'EXTRA']), 'text/plain');
      });
      app.get('/ping', (c) => c.text('pong'));
    });
    for (const path of ['/short', '/long']) {
      const conn = rawConnection(port);
      conn.socket.write(`GET ${path} HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n`);
      // Before the fix the server kept the connection open, waiting for nothing.
      expect(await until(conn.isClosed, 300)).toBe(true);
      const text = conn.text();
      // Before the fix /short sent `abc` and then /ping's whole response,
      // which a client reads as the 7 missing body bytes.
      expect([path, text.includes('pong'), text.includes('EXTRA')]).toEqual([path, false, false]);
      // The connection closed with (a prefix of) the announced body, nothing more.
      const body = text.slice(text.indexOf('\r\n\r\n') + 4);
      expect([path, 'abc'.startsWith(body)]).toEqual([path, true]);
    }
    expect(logs.filter((l) => l.err && JSON.stringify(l.err).includes('HYP_E_STREAM_LENGTH'))).toHaveLength(
      2,
    );
  });

  it('answers 500 on a connection that stays usable when the source fails before its first chunk', async () => {
    const { port } = await start((app) => {
      app.get('/broken', (c) =>
        c.stream(
          new Readable({
            read() {
              this.destroy(new Error('disk on fire'));
            },
          }),
        ),
      );
      app.get('/ping', (c) => c.text('pong'));
    });
    const conn = rawConnection(port);
    conn.socket.write('GET /broken HTTP/1.1\r\nHost: x\r\n\r\nGET /ping HTTP/1.1\r\nHost: x\r\n\r\n');
    // Before the fix: the connection was destroyed, no answer at all.
    expect(await until(() => conn.text().includes('pong'), 300)).toBe(true);
    const [broken, ping] = responses(conn.text());
    expect(broken?.status).toBe(500);
    expect(JSON.parse(broken?.body ?? '')).toEqual({
      error: { code: 'HYP_E_INTERNAL', message: 'internal server error' },
    });
    expect([ping?.status, ping?.body]).toEqual([200, 'pong']);

    const answer = await h2request(h2session(port), '/broken');
    expect([answer.status, JSON.parse(answer.body).error.code]).toEqual([500, 'HYP_E_INTERNAL']);
  });

  it('destroys the source of a client that left mid-stream, without an error-level log', async () => {
    let source: Readable | undefined;
    let outcome = '';
    const { port, logs } = await start((app) => {
      app.get('/endless', async (c) => {
        source = new Readable({
          read() {
            this.push('z'.repeat(16 * 1024));
          },
        });
        try {
          await c.stream(source);
          outcome = 'resolved';
        } catch (err) {
          outcome = `rejected ${(err as Error).message}`;
          throw err;
        }
      });
    });
    const conn = rawConnection(port);
    conn.socket.write('GET /endless HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(await until(() => conn.text().length > 64 * 1024)).toBe(true);
    conn.socket.destroy();
    expect(await until(() => outcome !== '')).toBe(true);
    expect(outcome).toBe('rejected client went away before the response was complete');
    expect(source?.destroyed).toBe(true);
    await until(() => logs.some((l) => l.route === '/endless'), 100);
    expect(logs.filter((l) => (l.level ?? 0) >= 50)).toEqual([]);
  });

  it('destroys its source when the request was already answered (no file descriptor left open)', async () => {
    const sources: Readable[] = [];
    const errors: string[] = [];
    const { port } = await start((app) => {
      app.get('/twice', async (c) => {
        c.text('first');
        const source = new Readable({ read() {} });
        sources.push(source);
        try {
          await c.stream(source);
        } catch (err) {
          errors.push((err as Error).message);
        }
      });
    });
    const res = await fetch(`http://127.0.0.1:${port}/twice`);
    expect(await res.text()).toBe('first');
    await h2request(h2session(port), '/twice');
    expect(await until(() => errors.length === 2)).toBe(true);
    expect(sources.map((s) => s.destroyed)).toEqual([true, true]);
  });
});
