/**
 * Router policies under the requests that expose them: HEAD answered by the
 * route GET would use, 404 rather than a 405 that only a catch-all OPTIONS
 * (CORS preflight) route "allows", and long path parameters.
 */
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Value } from '@sinclair/typebox/value';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type Config, ConfigSchema } from '../../../supervisor/config/schema.js';
import { problem, rawExchange, type Served, serve } from './serve.js';

let served: Served | undefined;
let dir: string | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
  if (dir !== undefined) await rm(dir, { recursive: true, force: true });
  dir = undefined;
});

function policy(router: Record<string, boolean>): Config {
  return Value.Default(ConfigSchema, { server: { router } }) as Config;
}

/** Status, the `x-route` header and the Content-Length of `method path`. */
async function answer(method: string, path: string) {
  const res = await fetch(`${served!.url}${path}`, { method });
  await res.arrayBuffer();
  return [res.status, res.headers.get('x-route'), res.headers.get('content-length')];
}

describe('HEAD is answered by the route GET would use', () => {
  const policies = [{}, { case_sensitive: false }, { ignore_trailing_slash: false }];

  for (const router of policies) {
    it(`behind a catch-all of other methods (app.all('/*'), policy ${JSON.stringify(router)})`, async () => {
      served = await serve(
        (app) => {
          app.get('/users/:id', (c) => c.header('x-route', c.route).json({ id: c.param('id') }));
          app.get('/api/ping', (c) => c.header('x-route', c.route).text('pong'));
          app.all('/*', (c) => c.header('x-route', c.route).status(404).text('fallback'));
        },
        { config: policy(router) },
      );
      for (const path of ['/users/42', '/api/ping', '/nowhere']) {
        const get = await answer('GET', path);
        expect(await answer('HEAD', path), path).toEqual(get);
      }
      expect(await answer('GET', '/users/42')).toEqual([200, '/users/:id', '11']);
    });
  }

  it('next to static files served at the root (an SPA with an API)', async () => {
    dir = await mkdtemp(join(tmpdir(), 'hyp-router-audit-'));
    await writeFile(join(dir, 'index.html'), '<h1>app</h1>');
    served = await serve((app) => {
      app.get('/api/users/:id', (c) => c.header('x-route', c.route).json({ id: c.param('id') }));
      app.static('/', dir!);
    });
    expect(await answer('GET', '/api/users/7')).toEqual([200, '/api/users/:id', '10']);
    expect(await answer('HEAD', '/api/users/7')).toEqual([200, '/api/users/:id', '10']);
  });

  it('a mount at the root keeps HEAD for its own paths and leaves HEAD of hyp routes to them', async () => {
    served = await serve((app) => {
      app.get('/api/users/:id', (c) => c.header('x-route', c.route).json({ id: c.param('id') }));
      app.mount('/', (req, res) => {
        res.setHeader('x-route', `mounted ${req.method} ${req.url}`);
        res.end('legacy');
      });
    });
    expect(await answer('HEAD', '/api/users/7')).toEqual([200, '/api/users/:id', '10']);
    expect((await answer('HEAD', '/old/page'))[1]).toBe('mounted HEAD /old/page');
    expect((await answer('GET', '/old/page'))[1]).toBe('mounted GET /old/page');
  });

  it('an explicit HEAD route still wins over GET, whichever is registered first', async () => {
    served = await serve((app) => {
      app.get('/a/:id', (c) => c.header('x-route', 'get').text('get'));
      app.head('/a/:id', (c) => c.header('x-route', 'head').empty(200));
      app.head('/b/:id', (c) => c.header('x-route', 'head').empty(200));
      app.get('/b/:id', (c) => c.header('x-route', 'get').text('get'));
    });
    expect((await answer('HEAD', '/a/1'))[1]).toBe('head');
    expect((await answer('HEAD', '/b/1'))[1]).toBe('head');
    expect((await answer('GET', '/b/1'))[1]).toBe('get');
    // a second explicit HEAD on the same pattern is still refused
    expect(() => served!.app.head('/a/:other', (c) => c.text(''))).toThrow(
      /cannot add route HEAD \/a\/:other/,
    );
  });

  it('counts HEAD served by a GET route under the GET pattern, method HEAD', async () => {
    const registry = new Registry();
    served = await serve(
      (app) => {
        app.get('/users/:id', (c) => c.text('u'));
        app.all('/*', (c) => c.text('fallback'));
      },
      { registry },
    );
    await answer('HEAD', '/users/1');
    await new Promise((r) => setTimeout(r, 20));
    const text = await registry.getSingleMetricAsString('hyp_http_requests_total');
    expect(text).toContain('hyp_http_requests_total{method="HEAD",route="/users/:id",status="200"} 1');
  });

  it('routes added after the first request get HEAD too', async () => {
    served = await serve((app) => app.all('/*', (c) => c.header('x-route', c.route).text('fallback')));
    expect((await answer('HEAD', '/late/1'))[1]).toBe('/*');
    served.app.get('/late/:id', (c) => c.header('x-route', c.route).text('late'));
    expect(await answer('HEAD', '/late/1')).toEqual([200, '/late/:id', '4']);
    served.app.head('/late/:id', (c) => c.header('x-route', 'explicit head').empty(200));
    expect((await answer('HEAD', '/late/1'))[1]).toBe('explicit head');
    expect(await answer('GET', '/late/1')).toEqual([200, '/late/:id', '4']);
  });
});

describe('404 or 405', () => {
  it('a path only a catch-all OPTIONS route (CORS preflight) serves is 404, not 405 Allow: OPTIONS', async () => {
    served = await serve((app) => {
      app.options('/*', (c) => c.header('access-control-allow-origin', '*').empty(204));
      app.get('/a', (c) => c.text('a'));
    });
    const missing = await fetch(`${served.url}/nope`);
    expect(missing.status).toBe(404);
    expect(missing.headers.get('allow')).toBeNull();
    expect((await problem(missing)).code).toBe('HYP_E_NOT_FOUND');
    const wrongMethod = await fetch(`${served.url}/a`, { method: 'POST' });
    expect(wrongMethod.status).toBe(405);
    expect(wrongMethod.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    const preflight = await fetch(`${served.url}/nope`, { method: 'OPTIONS' });
    expect([preflight.status, preflight.headers.get('access-control-allow-origin')]).toEqual([204, '*']);
  });
});

describe('long path parameters', () => {
  it('match up to 1024 characters; a longer one is 414 HYP_E_URI_TOO_LONG, not a misleading 404', async () => {
    const registry = new Registry();
    served = await serve(
      (app) => {
        app.get('/reset/:token', (c) => c.json({ length: c.param('token')?.length }));
        app.get('/files/*', (c) => c.json({ length: c.param('*')?.length }));
      },
      { registry },
    );
    // a JWT-sized token (decoded length counts: 300 × %41 is 300 characters)
    for (const token of ['a'.repeat(101), 'b'.repeat(1024), '%41'.repeat(300)]) {
      const res = await fetch(`${served.url}/reset/${token}`);
      expect([res.status, await res.json()]).toEqual([200, { length: token.replaceAll('%41', 'A').length }]);
    }
    const long = await fetch(`${served.url}/reset/${'c'.repeat(1025)}`);
    expect(long.status).toBe(414);
    expect(await problem(long)).toEqual({
      code: 'HYP_E_URI_TOO_LONG',
      message: 'a path parameter is longer than 1024 characters',
    });
    // a path that cannot be decoded is still 400, for any method
    for (const method of ['GET', 'DELETE']) {
      const bad = await fetch(`${served.url}/reset/%zz${'c'.repeat(1025)}`, { method });
      expect([bad.status, (await problem(bad)).code]).toEqual([400, 'HYP_E_BAD_REQUEST']);
    }
    // a wildcard takes the rest of the path, however long
    const rest = await fetch(`${served.url}/files/${'d/'.repeat(2000)}x`);
    expect(await rest.json()).toEqual({ length: 4001 });
    await new Promise((r) => setTimeout(r, 20));
    const text = await registry.getSingleMetricAsString('hyp_http_requests_total');
    expect(text).toContain('hyp_http_requests_total{method="GET",route="(not found)",status="414"} 1');
  });

  it('a too-long parameter does not hide a catch-all, and other methods still get 404/405', async () => {
    served = await serve((app) => {
      app.get('/reset/:token', (c) => c.text('token'));
      app.post('/reset/:token', (c) => c.text('post'));
      app.get('/*', (c) => c.text('catch-all'));
    });
    const token = 'e'.repeat(2000);
    expect(await (await fetch(`${served.url}/reset/${token}`)).text()).toBe('catch-all');
    const put = await fetch(`${served.url}/reset/${token}`, { method: 'PUT' });
    expect([put.status, put.headers.get('allow')]).toEqual([405, 'GET, HEAD, OPTIONS']);
  });
});

describe('c.path', () => {
  it('is the path of an absolute-form request target (GET http://host/a), as routing sees it', async () => {
    served = await serve((app) => app.get('/a', (c) => c.json({ path: c.path, q: c.query('q') })));
    const send = async (target: string) => (await rawAnswer('GET', target)).body;
    expect(JSON.parse(await send('http://h/a?q=1'))).toEqual({ path: '/a', q: '1' });
    expect(JSON.parse(await send('HTTPS://h:8443/a'))).toEqual({ path: '/a' });
    expect(JSON.parse(await send('/a'))).toEqual({ path: '/a' });
    expect(JSON.parse(await send('http://h/nope?x')).error.message).toBe('no route for GET /nope');
  });
});

/** The head and body answered to a raw HTTP/1.1 request line `method target` (for targets fetch cannot send). */
async function rawAnswer(method: string, target: string): Promise<{ head: string; body: string }> {
  const out = await rawExchange(
    served!.url,
    `${method} ${target} HTTP/1.1\r\nHost: h\r\nConnection: close\r\n\r\n`,
  );
  const split = out.indexOf('\r\n\r\n');
  return { head: out.slice(0, split), body: out.slice(split + 4) };
}

describe('empty path segments', () => {
  const policies = [{}, { ignore_trailing_slash: false }];
  for (const router of policies) {
    it(`never fill a :param with '' (policy ${JSON.stringify(router)})`, async () => {
      served = await serve(
        (app) => {
          app.get('/users/:id', (c) => c.json({ id: c.param('id') }));
          app.delete('/users/:id', (c) => c.json({ deleted: c.param('id') }));
          app.get('/a/:x/b', (c) => c.json({ x: c.param('x') }));
          app.get('/range/:from-:to', (c) => c.json({ from: c.param('from'), to: c.param('to') }));
          app.get('/files/*', (c) => c.json({ rest: c.param('*') }));
        },
        { config: policy(router) },
      );
      for (const path of ['/users/', '/users//', '/a//b', '/range/-']) {
        for (const method of ['GET', 'DELETE']) {
          const res = await fetch(`${served.url}${path}`, { method });
          expect([path, method, res.status], JSON.stringify(await res.text())).toEqual([path, method, 404]);
        }
      }
      expect(await (await fetch(`${served.url}/users/7`)).json()).toEqual({ id: '7' });
      expect(await (await fetch(`${served.url}/a/1/b`)).json()).toEqual({ x: '1' });
      expect(await (await fetch(`${served.url}/range/1-2`)).json()).toEqual({ from: '1', to: '2' });
      // a path where only other methods have a non-empty match is 405 for them, 404 where none has
      const put = await fetch(`${served.url}/users/7`, { method: 'PUT' });
      expect([put.status, put.headers.get('allow')]).toEqual([405, 'DELETE, GET, HEAD, OPTIONS']);
      const emptyPut = await fetch(`${served.url}/users//`, { method: 'PUT' });
      expect([emptyPut.status, emptyPut.headers.get('allow')]).toEqual([404, null]);
    });
  }
});

describe('an empty wildcard', () => {
  for (const router of [{}, { ignore_trailing_slash: false }]) {
    it(`matches /files/ for /files/* (the folder itself; policy ${JSON.stringify(router)})`, async () => {
      served = await serve((app) => app.get('/files/*', (c) => c.json({ rest: c.param('*') })), {
        config: policy(router),
      });
      expect(await (await fetch(`${served.url}/files/`)).json()).toEqual({ rest: '' });
      expect(await (await fetch(`${served.url}/files/?q=1`)).json()).toEqual({ rest: '' });
      expect(await (await fetch(`${served.url}/files/a/b`)).json()).toEqual({ rest: 'a/b' });
      const post = await fetch(`${served.url}/files/`, { method: 'POST' });
      expect([post.status, post.headers.get('allow')]).toEqual([405, 'GET, HEAD, OPTIONS']);
    });
  }
});

describe('asterisk-form request target (OPTIONS *)', () => {
  it('OPTIONS * is 204 with Allow of every method the server serves; another method with * is 400', async () => {
    served = await serve((app) => {
      app.get('/a', (c) => c.text('a'));
      app.post('/b', (c) => c.text('b'));
    });
    const options = await rawAnswer('OPTIONS', '*');
    expect(options.head).toMatch(/^HTTP\/1\.1 204 /);
    expect(options.head).toMatch(/\r\nallow: GET, HEAD, OPTIONS, POST\r\n/i);
    expect(options.head).toMatch(/\r\nx-request-id: /i);
    const get = await rawAnswer('GET', '*');
    expect(get.head).toMatch(/^HTTP\/1\.1 400 /);
    expect(JSON.parse(get.body).error).toEqual({
      code: 'HYP_E_BAD_REQUEST',
      message: 'the asterisk-form request target (*) is only for OPTIONS',
    });
  });
});

describe('percent-escapes in route patterns', () => {
  it('a pattern holding one is refused when added (it could never match), naming the form that matches', async () => {
    served = await serve((app) => {
      // Before: added without complaint; `/a%20b` was then a 404 for every spelling of the path.
      expect(() => app.get('/a%20b', (c) => c.text('never'))).toThrow(
        'route /a%20b would never match: request paths are matched after percent-decoding; write the characters themselves: /a b',
      );
      expect(() => app.mount('/legacy%2Fv1', (_req, res) => res.end())).toThrow(
        'an encoded "/", "?" or "#" cannot be part of a route',
      );
      app.get('/a b', (c) => c.text('decoded'));
    });
    for (const path of ['/a%20b', '/a b']) {
      const res = await fetch(`${served.url}${path}`);
      expect([path, res.status, await res.text()]).toEqual([path, 200, 'decoded']);
    }
  });
});
