import { request as httpRequest } from 'node:http';
import { connect, constants, createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { getRequestListener } from '@hono/node-server';
import express from 'express';
import Fastify from 'fastify';
import { Hono } from 'hono';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../apps/server/app.js';
import type { Context } from '../../../apps/server/context.js';
import { until } from '../../helpers/supervisor.js';
import { type Served, serve } from './serve.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function expressApp() {
  const ex = express();
  ex.use(express.json());
  ex.get('/', (_req, res) => {
    res.send('express root');
  });
  ex.get('/users/:id', (req, res) => {
    res.json({ id: req.params.id, url: req.url, originalUrl: req.originalUrl, q: req.query.q });
  });
  ex.post('/echo', (req, res) => {
    res.status(201).json(req.body);
  });
  ex.get('/slow', (_req, res) => {
    setTimeout(() => res.send('slow done'), 20);
  });
  return ex;
}

describe('mounted Express app', () => {
  it('serves under the prefix with the prefix stripped and originalUrl kept', async () => {
    served = await serve((app) => {
      app.get('/native', (c) => c.text('native'));
      app.mount('/legacy', expressApp());
    });
    const url = served.url;
    expect(await (await fetch(`${url}/legacy`)).text()).toBe('express root');
    expect(await (await fetch(`${url}/legacy/`)).text()).toBe('express root');
    expect(await (await fetch(`${url}/legacy/users/5?q=x`)).json()).toEqual({
      id: '5',
      url: '/users/5?q=x',
      originalUrl: '/legacy/users/5?q=x',
      q: 'x',
    });
    const echo = await fetch(`${url}/legacy/echo`, {
      method: 'POST',
      body: JSON.stringify({ a: 1 }),
      headers: { 'content-type': 'application/json' },
    });
    expect([echo.status, await echo.json()]).toEqual([201, { a: 1 }]);
    expect(await (await fetch(`${url}/legacy/slow`)).text()).toBe('slow done');
    expect(await (await fetch(`${url}/native`)).text()).toBe('native');
    // Express answers its own 404 inside the mount.
    const missing = await fetch(`${url}/legacy/nothing`);
    expect(missing.status).toBe(404);
    expect(await missing.text()).toMatch(/Cannot GET \/legacy\/nothing/);
  });

  it('strips the prefix from an absolute-form request target (GET http://host/legacy/users/5)', async () => {
    served = await serve((app) => app.mount('/legacy', (req, res) => res.end(req.url)));
    const { port } = new URL(served.url);
    const body = await new Promise<string>((resolve, reject) => {
      const req = httpRequest(
        { host: '127.0.0.1', port, path: 'http://example.test/legacy/users/5?q=1' },
        (res) => {
          let text = '';
          res.setEncoding('utf8');
          res.on('data', (d: string) => {
            text += d;
          });
          res.on('end', () => resolve(text));
        },
      );
      req.on('error', reject);
      req.end();
    });
    expect(body).toBe('/users/5?q=1');
  });

  it('is wrapped by hyp middleware, which sees the full path again after the mounted app answered', async () => {
    const seen: string[] = [];
    served = await serve((app) => {
      app.use(async (c, next) => {
        await next();
        seen.push(`${c.route} ${c.req.url} ${c.res.statusCode}`);
      });
      app.mount('/legacy', expressApp());
    });
    const res = await fetch(`${served.url}/legacy/slow`);
    expect(res.headers.get('x-request-id')).toBeTruthy();
    expect(await res.text()).toBe('slow done');
    await new Promise((r) => setTimeout(r, 10));
    expect(seen).toEqual(['/legacy/* /legacy/slow 200']);
  });
});

describe('mounted Fastify app', () => {
  async function fastifyApp() {
    const fastify = Fastify();
    fastify.get('/', async () => ({ hello: 'fastify' }));
    fastify.get('/items/:id', async (req) => ({ id: (req.params as { id: string }).id, url: req.url }));
    fastify.post('/echo', async (req, reply) => reply.code(201).send(req.body));
    await fastify.ready();
    return fastify;
  }

  it('serves through fastify.routing under the prefix', async () => {
    const fastify = await fastifyApp();
    served = await serve((app) => app.mount('/f', (req, res) => fastify.routing(req, res)));
    const url = served.url;
    expect(await (await fetch(`${url}/f`)).json()).toEqual({ hello: 'fastify' });
    expect(await (await fetch(`${url}/f/items/3?z=1`)).json()).toEqual({ id: '3', url: '/items/3?z=1' });
    const echo = await fetch(`${url}/f/echo`, {
      method: 'POST',
      body: JSON.stringify({ b: 2 }),
      headers: { 'content-type': 'application/json' },
    });
    expect([echo.status, await echo.json()]).toEqual([201, { b: 2 }]);
    expect((await fetch(`${url}/f/none`)).status).toBe(404);
    await fastify.close();
  });

  it('serves through server.emit("request") as well', async () => {
    const fastify = await fastifyApp();
    served = await serve((app) => app.mount('/f', (req, res) => fastify.server.emit('request', req, res)));
    expect(await (await fetch(`${served.url}/f/items/9`)).json()).toEqual({ id: '9', url: '/items/9' });
    await fastify.close();
  });
});

describe('mounted apps over HTTP/2', () => {
  async function h2Server(setup: (app: App) => void) {
    const app = new App();
    setup(app);
    // As the worker serves HTTP/2: bare streams, compat objects built when the mount asks.
    const server = createHttp2Server();
    server.on('stream', (stream, headers, _flags, rawHeaders) => {
      stream.on('error', () => {}); // as the worker's HTTP/2 server does
      app.handleStream(stream, headers, rawHeaders);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const origin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    return { origin, close: () => new Promise<void>((resolve) => server.close(() => resolve())) };
  }

  function h2Get(
    origin: string,
    path: string,
  ): Promise<{ status?: number; body?: string; rstCode?: number }> {
    return new Promise((resolve) => {
      const session = connect(origin);
      const stream = session.request({ ':path': path });
      let status: number | undefined;
      let body = '';
      stream.setEncoding('utf8');
      stream.on('response', (h) => {
        status = Number(h[':status']);
      });
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('close', () => {
        session.close();
        resolve(status === undefined ? { rstCode: stream.rstCode } : { status, body });
      });
      stream.on('error', () => {});
    });
  }

  it('tells an HTTP/2 client to retry over HTTP/1.1 instead of handing Express compat objects', async () => {
    const { origin, close } = await h2Server((app) => {
      app.mount('/legacy', expressApp());
      app.get('/native', (c) => c.text('native over h2'));
    });
    try {
      expect(await h2Get(origin, '/legacy/users/1')).toEqual({
        rstCode: constants.NGHTTP2_HTTP_1_1_REQUIRED,
      });
      // The worker is still fine and native routes answer over HTTP/2.
      expect(await h2Get(origin, '/native')).toEqual({ status: 200, body: 'native over h2' });
    } finally {
      await close();
    }
  });

  it('does not run a mounted app for a request whose client reset it while middleware awaited', async () => {
    let entered: (c: Context) => void = () => {};
    const inMiddleware = new Promise<Context>((r) => {
      entered = r;
    });
    let release = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    let after = () => {};
    const middlewareDone = new Promise<void>((r) => {
      after = r;
    });
    let calls = 0;
    const { origin, close } = await h2Server((app) => {
      app.use(async (c, next) => {
        entered(c);
        await gate;
        await next();
        after();
      });
      app.mount(
        '/f',
        (_req, res) => {
          calls++;
          res.end('ran');
        },
        { http2: true },
      );
    });
    const session = connect(origin);
    try {
      const stream = session.request({ ':path': '/f/upload', ':method': 'POST' });
      stream.on('error', () => {});
      stream.write('part of a body');
      const c = await inMiddleware;
      stream.close(constants.NGHTTP2_CANCEL);
      await until(() => c.signal.aborted || undefined, 'the server saw the reset');
      release();
      await middlewareDone;
      expect(calls).toBe(0);
    } finally {
      session.close();
      await close();
    }
  });

  it('serves HTTP/2 through a Fastify mount that declares { http2: true }', async () => {
    const fastify = Fastify();
    fastify.get('/items/:id', async (req) => ({ id: (req.params as { id: string }).id }));
    await fastify.ready();
    const { origin, close } = await h2Server((app) =>
      app.mount('/f', (req, res) => fastify.routing(req, res), { http2: true }),
    );
    try {
      const res = await h2Get(origin, '/f/items/4');
      expect(res.status).toBe(200);
      expect(JSON.parse(res.body!)).toEqual({ id: '4' });
    } finally {
      await close();
      await fastify.close();
    }
  });

  it('serves HTTP/2 through a Hono mount (@hono/node-server) that declares { http2: true }', async () => {
    const { origin, close } = await h2Server((app) =>
      app.mount('/h', getRequestListener(honoApp().fetch), { http2: true }),
    );
    try {
      const res = await h2Get(origin, '/h/hello?name=h2');
      expect(res).toEqual({ status: 200, body: 'hi h2 at /hello' });
    } finally {
      await close();
    }
  });
});

function honoApp() {
  return new Hono()
    .get('/hello', (c) => c.text(`hi ${c.req.query('name') ?? ''} at ${c.req.path}`))
    .post('/echo', async (c) => c.json({ got: await c.req.json(), path: c.req.path }, 201));
}

describe('mounted Hono app (the documented recipe: @hono/node-server getRequestListener)', () => {
  it('serves under the prefix, reads a JSON body, and carries x-request-id', async () => {
    served = await serve((app) => app.mount('/h', getRequestListener(honoApp().fetch)));
    const hello = await fetch(`${served.url}/h/hello?name=you`);
    expect([hello.status, await hello.text()]).toEqual([200, 'hi you at /hello']);
    expect(hello.headers.get('x-request-id')).toMatch(/\S/);
    const echo = await fetch(`${served.url}/h/echo`, {
      method: 'POST',
      body: JSON.stringify({ a: 1 }),
      headers: { 'content-type': 'application/json' },
    });
    expect([echo.status, await echo.json()]).toEqual([201, { got: { a: 1 }, path: '/echo' }]);
    expect((await fetch(`${served.url}/h/none`)).status).toBe(404);
  });

  it('gets the body hyp middleware already read', async () => {
    let seen: unknown;
    served = await serve((app) => {
      app.use(async (c, next) => {
        if (c.method === 'POST') seen = await c.body('json');
        await next();
      });
      app.mount('/h', getRequestListener(honoApp().fetch));
    });
    const echo = await fetch(`${served.url}/h/echo`, {
      method: 'POST',
      body: JSON.stringify({ b: 2 }),
      headers: { 'content-type': 'application/json' },
    });
    expect([echo.status, await echo.json()]).toEqual([201, { got: { b: 2 }, path: '/echo' }]);
    expect(seen).toEqual({ b: 2 });
  });
});
