/**
 * `app.mount()` as a team migrating an Express, Fastify or Hono service meets
 * it: URLs under the prefix, apps that misuse their response, drain.
 * Served by hyp's own HttpServer: HTTP/1.1 and h2c on one port.
 */
import { type IncomingMessage, request, type ServerResponse } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import { getRequestListener } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../apps/server/app.js';
import { HttpServer } from '../../../apps/server/http/server.js';
import { until } from '../../helpers/supervisor.js';
import { memoryTracer } from '../../helpers/tracing.js';
import {
  closeSession,
  configWith,
  connect2,
  get1,
  get2,
  type LogRecord,
  memoryLog,
  rawConnect,
} from './http/harness.js';
import { makePki } from './tls/certs.js';

interface Mounted {
  port: number;
  url: string;
  logs: LogRecord[];
  registry: Registry;
  http: HttpServer;
}

let open: Mounted | undefined;
afterEach(async () => {
  await open?.http.drain(Date.now() + 1000);
  open = undefined;
});

async function mounted(
  setup: (app: App) => void,
  tracer?: ReturnType<typeof memoryTracer>['tracer'],
  sets: string[] = [],
): Promise<Mounted> {
  const config = configWith(sets);
  const { log, logs } = memoryLog();
  const registry = new Registry();
  const app = new App({ config, log, registry, tracer });
  setup(app);
  app.get('/ok', (c) => c.text('ok'));
  const http = new HttpServer({
    config,
    handler: app.handle,
    streamHandler: app.handleStream,
    registry,
    log,
  });
  const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
  open = { port, url: `http://127.0.0.1:${port}`, logs, registry, http };
  return open;
}

/** Raw HTTP/1.1 requests written at once on one keep-alive connection; what came back within `ms`. */
async function pipelined(port: number, requests: string[], ms = 300): Promise<string> {
  const socket = await rawConnect(port);
  let out = '';
  socket.setEncoding('latin1');
  socket.on('data', (d: string) => {
    out += d;
  });
  socket.write(requests.join(''));
  await new Promise((r) => setTimeout(r, ms));
  socket.destroy();
  return out;
}

const get = (target: string, method = 'GET') => `${method} ${target} HTTP/1.1\r\nhost: h\r\n\r\n`;

describe('URLs a mounted Express app sees', () => {
  function echoUrls() {
    const ex = express();
    ex.use((req, res) => {
      res.json({ url: req.url, baseUrl: req.baseUrl, originalUrl: req.originalUrl, path: req.path });
    });
    return ex;
  }

  it('has baseUrl + url = the path of originalUrl, as under express().use(prefix, app), however the prefix is spelled', async () => {
    const { url } = await mounted((app) => app.mount('/legacy/', echoUrls()));
    const seen = async (path: string) => (await fetch(`${url}${path}`)).json();
    expect(await seen('/legacy/users/5?q=1')).toEqual({
      url: '/users/5?q=1',
      baseUrl: '/legacy',
      originalUrl: '/legacy/users/5?q=1',
      path: '/users/5',
    });
    expect(await seen('/legacy')).toEqual({
      url: '/',
      baseUrl: '/legacy',
      originalUrl: '/legacy',
      path: '/',
    });
    expect(await seen('/legacy?x=1')).toEqual({
      url: '/?x=1',
      baseUrl: '/legacy',
      originalUrl: '/legacy?x=1',
      path: '/',
    });
    // The router matched the decoded path; Express gets the prefix as the client spelled it.
    expect(await seen('/%6Cegacy/a%2Fb')).toEqual({
      url: '/a%2Fb',
      baseUrl: '/%6Cegacy',
      originalUrl: '/%6Cegacy/a%2Fb',
      path: '/a%2Fb',
    });
    // `/legacyX` is not under the mount.
    expect((await fetch(`${url}/legacyX`)).status).toBe(404);
  });

  it('has baseUrl = the prefix for an absolute-form request target', async () => {
    const { port } = await mounted((app) => app.mount('/legacy', echoUrls()));
    const out = await pipelined(port, [get('http://h/legacy/a?b=1')]);
    expect(JSON.parse(out.slice(out.indexOf('\r\n\r\n') + 4))).toEqual({
      url: '/a?b=1',
      baseUrl: '/legacy',
      originalUrl: 'http://h/legacy/a?b=1',
      path: '/a',
    });
  });

  it('hands OPTIONS * to a root mount as *, not as OPTIONS /', async () => {
    const seen: string[] = [];
    const { port } = await mounted((app) =>
      app.mount('/', (req: IncomingMessage & { baseUrl?: string }, res) => {
        seen.push(`${req.method} ${req.url} base=${req.baseUrl}`);
        res.end();
      }),
    );
    await pipelined(port, [get('*', 'OPTIONS'), get('/x', 'OPTIONS')]);
    expect(seen).toEqual(['OPTIONS * base=', 'OPTIONS /x base=']);
  });
});

describe('a mounted app that misuses its response', () => {
  const twice = (_req: IncomingMessage, res: ServerResponse) => {
    res.end('first');
    res.end('second');
  };
  const writeAfterEnd = (_req: IncomingMessage, res: ServerResponse) => {
    res.end('first');
    setTimeout(() => res.write('late'), 1);
  };

  it('answering twice or writing after end: the first answer stands, the connection serves on, and the misuse is logged', async () => {
    const { port, url, logs } = await mounted((app) => {
      app.mount('/twice', twice, { http2: true });
      app.mount('/late', writeAfterEnd, { http2: true });
    });
    const out = await pipelined(port, [get('/twice'), get('/late'), get('/ok')]);
    expect(out.match(/HTTP\/1\.1 200 OK/g)).toHaveLength(3);
    expect(out).toContain('\r\n\r\nfirstHTTP/1.1 200');
    expect(out).not.toContain('second');
    expect(out).not.toContain('late');
    expect(out.endsWith('\r\n\r\nok')).toBe(true);
    const misuses = logs.filter((l) => l.code === 'HYP_E_MOUNT_RESPONSE');
    // Node reports the second end() with a body; a write once the response is gone it drops silently.
    expect(misuses).toEqual([
      expect.objectContaining({
        msg: 'the app mounted at /twice misused its response (write after end); the response is left as it was',
        err_code: 'ERR_STREAM_WRITE_AFTER_END',
        route: '/twice',
        request_id: expect.any(String),
      }),
    ]);
    // HTTP/2 (compat objects): the same answers, the session serves on.
    const session = await connect2(url);
    try {
      expect(await get2(session, '/twice')).toEqual({ status: 200, body: 'first' });
      expect(await get2(session, '/late')).toEqual({ status: 200, body: 'first' });
      expect(await get2(session, '/ok')).toEqual({ status: 200, body: 'ok' });
    } finally {
      await closeSession(session);
    }
  });
});

describe('a mounted app whose body does not match its own Content-Length', () => {
  function apps(app: App) {
    const ex = express();
    ex.get('/short', (_req, res) => {
      res.setHeader('content-length', '10');
      res.end('abc');
    });
    ex.get('/long', async (_req, res) => {
      await new Promise((r) => setTimeout(r, 1));
      res.setHeader('content-length', '2');
      res.end('abcdef');
    });
    // What must keep working: HEAD, 304 and files announce a length they do not send, or send it in pieces.
    ex.get('/etag', (_req, res) => {
      res.send('tagged body');
    });
    ex.use('/files', express.static(new URL('.', import.meta.url).pathname));
    app.mount('/e', ex);
    const hono = new Hono().get('/short', (c) => c.body('abc', 200, { 'content-length': '10' }));
    app.mount('/h', getRequestListener(hono.fetch), { http2: true });
    app.mount(
      '/raw',
      (_req, res) => {
        res.writeHead(200, { 'content-length': '2' });
        res.write('abc');
        res.end();
      },
      { http2: true },
    );
    // From a timer, as callback-style code answers: Node's throw would be an uncaught exception.
    app.mount(
      '/timer',
      (_req, res) => {
        setTimeout(() => {
          res.setHeader('content-length', '2');
          res.end('abcdef');
        }, 1);
      },
      { http2: true },
    );
    app.get('/slow', async (c) => {
      await new Promise((r) => setTimeout(r, 200));
      c.text('slow answer');
    });
  }

  it('closes the HTTP/1.1 connection instead of letting the client misread the next answer on it, and serves on', async () => {
    const { port, logs } = await mounted(apps);
    for (const path of ['/e/short', '/e/long', '/h/short', '/raw', '/timer']) {
      const out = await pipelined(port, [get(path), get('/ok')]);
      // Before: `content-length: 10` then `abc` then the next response's head, read as body.
      expect({ path, out }).toEqual({ path, out: '' });
    }
    // Each is logged with its route; none reaches the app as a thrown error
    // (from the timer, that was an uncaught exception: the worker was replaced).
    const mismatches = logs.filter((l) => l.code === 'HYP_E_RESPONSE_LENGTH');
    expect(mismatches.map((l) => [l.route, l.err_code])).toEqual(
      ['/e/*', '/e/*', '/h/*', '/raw', '/timer'].map((route) => [route, 'ERR_HTTP_CONTENT_LENGTH_MISMATCH']),
    );
    expect(String(mismatches[4]?.msg)).toMatch(
      /^response body does not match its Content-Length \(.*6.*2.*\); response cut$/,
    );
    expect((await get1(port, '/ok')).body).toBe('ok');
  });

  it('still sends HEAD, 304 and files whole', async () => {
    const { url, port } = await mounted(apps);
    const head = await fetch(`${url}/e/etag`, { method: 'HEAD' });
    expect([head.status, head.headers.get('content-length'), await head.text()]).toEqual([200, '11', '']);
    const etag = (await fetch(`${url}/e/etag`)).headers.get('etag') ?? '';
    // (node:http: fetch asks for no-cache, which Express's freshness check honours)
    expect((await get1(port, '/e/etag', { 'if-none-match': etag })).status).toBe(304);
    const file = await fetch(`${url}/e/files/mount-audit.test.ts`);
    expect([file.status, (await file.text()).includes('still sends HEAD, 304 and files whole')]).toEqual([
      200,
      true,
    ]);
  });

  it('over HTTP/2 the client sees the request fail, never a body it could take as whole', async () => {
    const { url } = await mounted(apps);
    const session = await connect2(url);
    try {
      // A body shorter than announced: the client resets the stream (PROTOCOL_ERROR).
      await expect(get2(session, '/h/short')).rejects.toThrow(/NGHTTP2_PROTOCOL_ERROR/);
      expect(await get2(session, '/ok')).toEqual({ status: 200, body: 'ok' });
    } finally {
      await closeSession(session);
    }
  });

  it('over HTTP/2 a body longer than announced fails its own request only: the stream is reset, the session serves on', async () => {
    const { url, logs } = await mounted(apps);
    const session = await connect2(url);
    const sessionErrors: unknown[] = [];
    session.on('error', (err) => sessionErrors.push(err));
    try {
      for (const path of ['/raw', '/timer']) {
        // Another request in flight on the session meanwhile.
        const slow = get2(session, '/slow');
        // Before: the body went out past its length, and a Node 22+ client ended
        // the whole session (PROTOCOL_ERROR), failing the other request too.
        await expect(get2(session, path)).rejects.toThrow(/NGHTTP2_INTERNAL_ERROR/);
        expect(await slow).toEqual({ status: 200, body: 'slow answer' });
      }
      expect(await get2(session, '/ok')).toEqual({ status: 200, body: 'ok' });
      expect(sessionErrors).toEqual([]);
    } finally {
      await closeSession(session);
    }
    const overruns = logs.filter((l) => l.code === 'HYP_E_RESPONSE_LENGTH');
    expect(overruns.map((l) => [l.msg, typeof l.request_id])).toEqual([
      [
        'response body does not match its Content-Length (2 bytes announced, a write would make it 3); response cut',
        'string',
      ],
      [
        'response body does not match its Content-Length (2 bytes announced, a write would make it 6); response cut',
        'string',
      ],
    ]);
  });
});

describe('a mounted Fastify app at drain', () => {
  /** A GET whose answer is read to its end, or to the error that cut it. */
  function download(port: number, path: string): Promise<string> {
    return new Promise((resolve) => {
      const req = request({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve(`${res.statusCode} complete ${body}`));
        res.on('error', (err) =>
          resolve(`${res.statusCode} cut (${err.message}) after ${body.length} bytes`),
        );
      });
      req.on('error', (err) => resolve(`failed: ${err.message}`));
      req.end();
    });
  }

  it('finishes a long request, cuts an endless stream at the deadline (the client sees it cut), then closes Fastify', async () => {
    const fastify = Fastify();
    let release = () => {};
    const held = new Promise<void>((r) => {
      release = r;
    });
    let entered = 0;
    fastify.get('/long', async () => {
      entered++;
      await held;
      return { done: true };
    });
    fastify.get('/events', (req, reply) => {
      entered++;
      reply.raw.writeHead(200, { 'content-type': 'text/event-stream' });
      reply.raw.write('data: 1\n\n');
      const tick = setInterval(() => reply.raw.write('data: x\n\n'), 20);
      req.raw.on('close', () => clearInterval(tick));
      return reply;
    });
    const closed: string[] = [];
    fastify.addHook('onClose', async () => {
      closed.push('fastify onClose');
    });
    await fastify.ready();
    const { port, http, registry } = await mounted((app) =>
      app.mount('/f', (req, res) => fastify.routing(req, res), { http2: true }),
    );
    const long = download(port, '/f/long');
    const events = download(port, '/f/events');
    while (entered < 2) await new Promise((r) => setTimeout(r, 10));
    const drained = http.drain(Date.now() + 500).then(() => fastify.close());
    setTimeout(release, 50);
    await drained;
    expect(await long).toBe('200 complete {"done":true}');
    expect(await events).toMatch(/^200 cut \(aborted\) after \d+ bytes$/);
    expect(closed).toEqual(['fastify onClose']);
    // Both counted under the mount's pattern, never the raw path (the cut one once its 'close' has run).
    const counted = async () =>
      (await registry.metrics()).split('\n').filter((l) => l.startsWith('hyp_http_requests_total'));
    await until(
      async () => ((await counted())[0]?.endsWith(' 2') ? true : undefined),
      'both requests counted',
    );
    expect(await counted()).toEqual(['hyp_http_requests_total{method="GET",route="/f/*",status="200"} 2']);
    open = undefined;
  });
});

describe('telemetry of mounted apps', () => {
  it('labels every request under a mount with the mount pattern and gives each a span, whatever the outcome', async () => {
    const t = memoryTracer();
    const ex = express();
    ex.get('/users/:id', (req, res) => {
      res.json({ id: req.params.id });
    });
    ex.get('/boom', () => {
      throw new Error('express route failed');
    });
    const { url, registry } = await mounted((app) => {
      app.mount('/legacy', ex);
      app.mount('/raw', () => {
        throw new Error('raw handler failed');
      });
    }, t.tracer);
    for (let i = 0; i < 20; i++) await (await fetch(`${url}/legacy/users/${i}`)).text();
    const boom = await fetch(`${url}/legacy/boom`);
    const raw = await fetch(`${url}/raw/x?y=1`);
    expect([boom.status, raw.status]).toEqual([500, 500]);
    expect([boom.headers.get('x-request-id'), raw.headers.get('x-request-id')]).toEqual([
      expect.any(String),
      expect.any(String),
    ]);
    const counted = (await registry.metrics())
      .split('\n')
      .filter((l) => l.startsWith('hyp_http_requests_total'));
    expect(counted.sort()).toEqual([
      'hyp_http_requests_total{method="GET",route="/legacy/*",status="200"} 20',
      'hyp_http_requests_total{method="GET",route="/legacy/*",status="500"} 1',
      'hyp_http_requests_total{method="GET",route="/raw/*",status="500"} 1',
    ]);
    const spans = t.exporter.getFinishedSpans();
    expect(spans).toHaveLength(22);
    const last = spans[21]!;
    expect([last.name, last.attributes['http.route'], last.attributes['url.path']]).toEqual([
      'GET /raw/*',
      '/raw/*',
      '/raw/x',
    ]);
    expect(last.attributes['http.response.status_code']).toBe(500);
  });
});

describe('a body hyp middleware read, handed on to a mounted app over HTTP/2', () => {
  function post(session: ClientHttp2Session, path: string, audit: boolean): Promise<string> {
    return new Promise((resolve, reject) => {
      const headers = { ':method': 'POST', ':path': path, 'content-type': 'application/json' };
      const stream = session.request(audit ? { ...headers, 'x-audit': '1' } : headers);
      let out = '';
      stream.setEncoding('utf8');
      stream.on('response', (h) => {
        out = `${h[':status']} `;
      });
      stream.on('data', (d: string) => {
        out += d;
      });
      stream.on('end', () => resolve(out));
      stream.on('error', reject);
      stream.end('{"a":1}');
    });
  }

  function apps(app: App) {
    // An audit middleware that reads the body before the mounted app runs.
    app.use(async (c, next) => {
      if (c.header('x-audit')) await c.body('raw');
      await next();
    });
    const hono = new Hono().post('/echo', async (c) => c.json({ got: await c.req.json(), url: c.req.url }));
    app.mount('/h', getRequestListener(hono.fetch), { http2: true });
    const fastify = Fastify();
    fastify.post('/echo', async (req) => ({ got: req.body, host: req.host, protocol: req.protocol }));
    app.mount('/f', (req, res) => fastify.routing(req, res), { http2: true });
    return fastify;
  }

  it('the app sees the same request as without the middleware (h2c and TLS ALPN h2)', async () => {
    const pki = makePki();
    for (const tls of [false, true]) {
      let fastify: ReturnType<typeof Fastify> | undefined;
      const { port } = await mounted(
        (app) => {
          fastify = apps(app);
        },
        undefined,
        tls ? pki.tlsSets() : [],
      );
      await fastify?.ready();
      const origin = `${tls ? 'https' : 'http'}://127.0.0.1:${port}`;
      const session = await connect2(origin, tls ? { ca: pki.read(pki.caCert) } : {});
      try {
        for (const path of ['/h/echo', '/f/echo']) {
          const direct = await post(session, path, false);
          // Before: Hono's adapter took the replayed request for HTTP/1.1 without a Host header: 400.
          expect({ tls, path, audited: await post(session, path, true) }).toEqual({
            tls,
            path,
            audited: direct,
          });
          expect(direct).toMatch(/^200 \{"got":\{"a":1\}/);
        }
        expect(await post(session, '/h/echo', true)).toBe(`200 {"got":{"a":1},"url":"${origin}/echo"}`);
      } finally {
        await closeSession(session);
        await open?.http.drain(Date.now() + 1000);
        open = undefined;
      }
    }
  });
});
