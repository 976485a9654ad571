import { afterEach, describe, expect, it } from 'vitest';
import { problem, type Served, serve } from './serve.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function start(setup: Parameters<typeof serve>[0], options?: Parameters<typeof serve>[1]) {
  served = await serve(setup, options);
  return served.url;
}

describe('router', () => {
  it('routes each method to its handler and passes :params and the *wildcard', async () => {
    const url = await start((app) => {
      app.get('/users/:id', (c) => c.json({ id: c.param('id') }));
      app.post('/users', (c) => c.status(201).text('created'));
      app.put('/users/:id', (c) => c.text(`put ${c.param('id')}`));
      app.patch('/users/:id', (c) => c.text(`patch ${c.param('id')}`));
      app.delete('/users/:id', (c) => c.empty());
      app.get('/files/*', (c) => c.text(`file ${c.param('*')}`));
    });
    expect(await (await fetch(`${url}/users/42`)).json()).toEqual({ id: '42' });
    const created = await fetch(`${url}/users`, { method: 'POST' });
    expect(created.status).toBe(201);
    expect(await created.text()).toBe('created');
    expect(await (await fetch(`${url}/users/7`, { method: 'PUT' })).text()).toBe('put 7');
    expect(await (await fetch(`${url}/users/7`, { method: 'PATCH' })).text()).toBe('patch 7');
    expect((await fetch(`${url}/users/7`, { method: 'DELETE' })).status).toBe(204);
    expect(await (await fetch(`${url}/files/a/b%20c.txt`)).text()).toBe('file a/b c.txt');
  });

  it('answers 404 with a problem body for an unknown path', async () => {
    const url = await start((app) => app.get('/a', (c) => c.text('a')));
    const res = await fetch(`${url}/nope`);
    expect(res.status).toBe(404);
    expect(res.headers.get('content-type')).toMatch(/^application\/json/);
    expect(await res.json()).toEqual({
      error: { code: 'HYP_E_NOT_FOUND', message: 'no route for GET /nope' },
    });
  });

  it('answers 405 with Allow listing the methods the path has', async () => {
    const url = await start((app) => {
      app.get('/thing', (c) => c.text('get'));
      app.put('/thing', (c) => c.text('put'));
    });
    const res = await fetch(`${url}/thing`, { method: 'POST' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS, PUT');
    expect((await problem(res)).code).toBe('HYP_E_METHOD_NOT_ALLOWED');
  });

  it('keeps Allow on 405 when a custom methodNotAllowed handler answers', async () => {
    const url = await start((app) => {
      app.get('/thing', (c) => c.text('get'));
      app.methodNotAllowed((c) => c.status(405).text(`nope, try ${c.allow}`));
      app.notFound((c) => c.status(404).text(`nothing at ${c.path}`));
    });
    const res = await fetch(`${url}/thing`, { method: 'DELETE' });
    expect(res.status).toBe(405);
    expect(res.headers.get('allow')).toBe('GET, HEAD, OPTIONS');
    expect(await res.text()).toBe('nope, try GET, HEAD, OPTIONS');
    const missing = await fetch(`${url}/x?y=1`);
    expect(await missing.text()).toBe('nothing at /x');
  });

  it('answers OPTIONS with 204 and Allow when no OPTIONS route exists', async () => {
    const url = await start((app) => app.post('/form', (c) => c.text('ok')));
    const res = await fetch(`${url}/form`, { method: 'OPTIONS' });
    expect(res.status).toBe(204);
    expect(res.headers.get('allow')).toBe('OPTIONS, POST');
  });

  it('answers HEAD with the GET handler: same headers, no body', async () => {
    const url = await start((app) => app.get('/doc', (c) => c.header('x-doc', 'yes').text('hello world')));
    const res = await fetch(`${url}/doc`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('x-doc')).toBe('yes');
    expect(res.headers.get('content-length')).toBe('11');
    expect(await res.text()).toBe('');
  });

  it('prefers an explicit HEAD route over the GET one', async () => {
    const url = await start((app) => {
      app.get('/doc', (c) => c.text('get'));
      app.head('/doc', (c) => c.header('x-head', '1').empty(200));
    });
    const res = await fetch(`${url}/doc`, { method: 'HEAD' });
    expect(res.headers.get('x-head')).toBe('1');
  });

  it('ignores a trailing slash and matches case-sensitively by default', async () => {
    const url = await start((app) => app.get('/users', (c) => c.text('users')));
    expect(await (await fetch(`${url}/users/`)).text()).toBe('users');
    expect((await fetch(`${url}/Users`)).status).toBe(404);
  });

  it('honours server.router policies from config', async () => {
    const { Value } = await import('@sinclair/typebox/value');
    const { ConfigSchema } = await import('../../../supervisor/config/schema.js');
    const config = Value.Default(ConfigSchema, {
      server: { router: { ignore_trailing_slash: false, case_sensitive: false } },
    }) as import('../../../supervisor/config/schema.js').Config;
    const url = await start((app) => app.get('/users', (c) => c.text('users')), { config });
    expect((await fetch(`${url}/users/`)).status).toBe(404);
    expect(await (await fetch(`${url}/USERS`)).text()).toBe('users');
  });

  it('runs global middleware as an onion around every request, 404s included', async () => {
    const order: string[] = [];
    const url = await start((app) => {
      app.use(async (c, next) => {
        order.push(`outer in ${c.path}`);
        await next();
        order.push('outer out');
      });
      app.use(async (_c, next) => {
        order.push('inner in');
        await next();
        order.push('inner out');
      });
      app.get('/x', (c) => {
        order.push('handler');
        c.text('x');
      });
    });
    await (await fetch(`${url}/x`)).text();
    expect(order).toEqual(['outer in /x', 'inner in', 'handler', 'inner out', 'outer out']);
    order.length = 0;
    await (await fetch(`${url}/missing`)).text();
    expect(order).toEqual(['outer in /missing', 'inner in', 'inner out', 'outer out']);
  });

  it('lets middleware answer without calling next()', async () => {
    const url = await start((app) => {
      app.use((c, next) => (c.header('authorization') ? next() : c.status(401).text('who are you')));
      app.get('/secret', (c) => c.text('42'));
    });
    expect((await fetch(`${url}/secret`)).status).toBe(401);
    expect(await (await fetch(`${url}/secret`, { headers: { authorization: 'x' } })).text()).toBe('42');
  });

  it('applies group prefix and middleware only to the group, nested groups inherit', async () => {
    const seen: string[] = [];
    const url = await start((app) => {
      const api = app.group('/api', async (c, next) => {
        seen.push(`api ${c.route}`);
        c.header('x-api', '1');
        await next();
      });
      api.get('/ping', (c) => c.text('pong'));
      const v2 = api.group('/v2', async (_c, next) => {
        seen.push('v2');
        await next();
      });
      v2.get('/items/:id', (c) => c.text(`item ${c.param('id')}`));
      app.get('/public', (c) => c.text('public'));
    });
    const ping = await fetch(`${url}/api/ping`);
    expect(await ping.text()).toBe('pong');
    expect(ping.headers.get('x-api')).toBe('1');
    expect(await (await fetch(`${url}/api/v2/items/9`)).text()).toBe('item 9');
    const pub = await fetch(`${url}/public`);
    expect(pub.headers.get('x-api')).toBeNull();
    expect(seen).toEqual(['api /api/ping', 'api /api/v2/items/:id', 'v2']);
  });

  it('runs route-level middleware before the handler', async () => {
    const url = await start((app) => {
      app.get(
        '/guarded',
        (c, next) => (c.query('key') === 'k' ? next() : c.status(403).text('no')),
        (c) => c.text('in'),
      );
    });
    expect((await fetch(`${url}/guarded`)).status).toBe(403);
    expect(await (await fetch(`${url}/guarded?key=k`)).text()).toBe('in');
  });

  it('accepts routes and middleware added after the first request', async () => {
    const url = await start((app) => app.get('/a', (c) => c.text('a')));
    expect((await fetch(`${url}/b`)).status).toBe(404);
    served!.app.get('/b', (c) => c.text('b'));
    expect(await (await fetch(`${url}/b`)).text()).toBe('b');
  });

  it('refuses a duplicate route and a path without a leading slash at registration', async () => {
    const { App } = await import('../../../apps/server/app.js');
    const app = new App();
    app.get('/x', (c) => c.text('x'));
    expect(() => app.get('/x', (c) => c.text('again'))).toThrow(/cannot add route GET \/x/);
    expect(() => app.get('x', (c) => c.text('x'))).toThrow(/must start with \//);
  });
});
