/**
 * The HTTP framework API as a team moving from Express or Fastify uses it,
 * on real sockets (HTTP/1.1 and h2c on one port): what each helper keeps of
 * what the handler set, what a misbehaving middleware or error handler
 * leaves behind, and options refused where Express would silently ignore them.
 */
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { type ClientHttp2Session, connect as h2connect } from 'node:http2';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../apps/server/app.js';
import { until } from '../../helpers/supervisor.js';
import { type LogRecord, listenApp } from './http/harness.js';

interface Running {
  url: string;
  logs: LogRecord[];
}

let closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.reverse()) await close();
  closers = [];
});

async function start(setup: (app: App) => void): Promise<Running> {
  const served = await listenApp(setup);
  closers.push(served.close);
  return { url: served.url, logs: served.logs };
}

/** One h2c GET: its response headers and body. */
function h2get(url: string, path: string): Promise<{ headers: Record<string, unknown>; body: string }> {
  return h2req(url, 'GET', path);
}

/** One h2c request without a body: its response headers and body. */
async function h2req(
  url: string,
  method: string,
  path: string,
): Promise<{ headers: Record<string, unknown>; body: string }> {
  const session: ClientHttp2Session = h2connect(url);
  try {
    return await new Promise((resolve, reject) => {
      const req = session.request({ ':method': method, ':path': path });
      let headers: Record<string, unknown> = {};
      let body = '';
      req.setEncoding('utf8');
      req.on('response', (h) => {
        headers = h;
      });
      req.on('data', (d: string) => {
        body += d;
      });
      req.on('end', () => resolve({ headers, body }));
      req.on('error', reject);
    });
  } finally {
    session.close();
  }
}

describe('a Content-Type the handler set', () => {
  const routes = (app: App) => {
    app.get('/problem', (c) =>
      c.header('content-type', 'application/problem+json').json({ title: 'x' }, 422),
    );
    app.get('/csv', (c) => c.header('Content-Type', 'text/csv; charset=utf-8').text('a,b\n'));
    app.get('/png', (c) => c.header('content-type', 'image/png').send(Buffer.from([0x89, 0x50])));
    app.get('/vnd', (c) => c.header('x-a', '1').json({ a: 1 }));
  };

  it('is kept by c.json, c.text and c.send (as Express res.json/res.send and Fastify keep it), over HTTP/1.1', async () => {
    const { url } = await start(routes);
    const problem = await fetch(`${url}/problem`);
    expect([problem.status, problem.headers.get('content-type'), await problem.json()]).toEqual([
      422,
      'application/problem+json',
      { title: 'x' },
    ]);
    const csv = await fetch(`${url}/csv`);
    expect([csv.headers.get('content-type'), await csv.text()]).toEqual(['text/csv; charset=utf-8', 'a,b\n']);
    const png = await fetch(`${url}/png`);
    expect([png.headers.get('content-type'), png.headers.get('content-length')]).toEqual(['image/png', '2']);
    // Other headers set: the helper's own type still applies.
    const vnd = await fetch(`${url}/vnd`);
    expect([vnd.headers.get('content-type'), vnd.headers.get('x-a')]).toEqual([
      'application/json; charset=utf-8',
      '1',
    ]);
  });

  it('is kept over HTTP/2 too', async () => {
    const { url } = await start(routes);
    const problem = await h2get(url, '/problem');
    expect([problem.headers[':status'], problem.headers['content-type'], problem.body]).toEqual([
      422,
      'application/problem+json',
      '{"title":"x"}',
    ]);
    const png = await h2get(url, '/png');
    expect([png.headers['content-type'], png.headers['content-length']]).toEqual(['image/png', '2']);
    const vnd = await h2get(url, '/vnd');
    expect(vnd.headers['content-type']).toBe('application/json; charset=utf-8');
  });
});

describe('app.onError that does not answer', () => {
  it('falls back to the default answer (sync or async hook), instead of leaving the request hanging', async () => {
    const seen: string[] = [];
    const { url } = await start((app) => {
      app.get('/sync', () => {
        throw new Error('boom');
      });
      app.post('/async', async (c) => c.json(await c.body('json')));
      app.get('/answers', () => {
        throw new Error('boom');
      });
      // A hook for reporting only (Sentry-style): it neither answers nor throws.
      app.onError(async (err, c) => {
        seen.push(`${c.path} ${(err as { code?: string }).code ?? 'no code'}`);
        if (c.path === '/answers') return c.text('handled', 418);
        if (c.path === '/async') await new Promise((resolve) => setTimeout(resolve, 5));
        return undefined;
      });
    });
    const sync = await fetch(`${url}/sync`, { signal: AbortSignal.timeout(10_000) });
    expect([sync.status, ((await sync.json()) as { error: { code: string } }).error.code]).toEqual([
      500,
      'HYP_E_INTERNAL',
    ]);
    const bad = await fetch(`${url}/async`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":',
      signal: AbortSignal.timeout(10_000),
    });
    expect([bad.status, ((await bad.json()) as { error: { code: string } }).error.code]).toEqual([
      400,
      'HYP_E_BODY_INVALID',
    ]);
    const answered = await fetch(`${url}/answers`, { signal: AbortSignal.timeout(10_000) });
    expect([answered.status, await answered.text()]).toEqual([418, 'handled']);
    expect(seen).toEqual(['/sync no code', '/async HYP_E_BODY_INVALID', '/answers no code']);
  });

  it('still cuts a response that failed mid-stream, as without a hook', async () => {
    const { url } = await start((app) => {
      app.get('/midstream', (c) =>
        c.stream(
          (async function* () {
            yield 'first chunk\n';
            throw new Error('source failed');
          })(),
          'text/plain',
        ),
      );
      app.onError(() => undefined);
    });
    const res = await fetch(`${url}/midstream`, { signal: AbortSignal.timeout(10_000) });
    expect(res.status).toBe(200);
    // Cut: the body read fails (a terminated connection), not a timeout and not a clean end.
    const read = await res.text().then(
      () => 'complete',
      (err: Error) => (err.name === 'TimeoutError' || err.name === 'AbortError' ? 'hung' : 'cut'),
    );
    expect(read).toBe('cut');
  });
});

describe('middleware that does not wait for next() (the Express habit)', () => {
  interface Problem {
    error: { code: string };
  }
  it('gets a failing handler answered by the error mapping, never an unhandled rejection', async () => {
    const stray: unknown[] = [];
    const onStray = (err: unknown) => stray.push(err);
    process.on('unhandledRejection', onStray);
    try {
      const { url } = await start((app) => {
        // Express style: set a header, call next(), return. Nothing awaits the chain.
        app.use((c, next) => {
          c.header('x-powered-by', 'hyp');
          next();
        });
        app.post('/items', async (c) => c.json(await c.body('json'), 201));
        app.get('/sync-throw', () => {
          throw new Error('sync');
        });
      });
      const bad = await fetch(`${url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":',
        signal: AbortSignal.timeout(10_000),
      });
      expect([bad.status, ((await bad.json()) as Problem).error.code]).toEqual([400, 'HYP_E_BODY_INVALID']);
      const good = await fetch(`${url}/items`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: '{"a":1}',
        signal: AbortSignal.timeout(10_000),
      });
      expect([good.status, good.headers.get('x-powered-by'), await good.json()]).toEqual([
        201,
        'hyp',
        { a: 1 },
      ]);
      const sync = await fetch(`${url}/sync-throw`, { signal: AbortSignal.timeout(10_000) });
      expect([sync.status, ((await sync.json()) as Problem).error.code]).toEqual([500, 'HYP_E_INTERNAL']);
      // Let any late rejection surface before looking.
      await new Promise((resolve) => setImmediate(resolve));
      expect(stray).toEqual([]);
    } finally {
      process.off('unhandledRejection', onStray);
    }
  });

  it('gets an error a middleware caught and swallowed answered by default, and one it answered left alone', async () => {
    const { url } = await start((app) => {
      const swallow = async (c: Parameters<Parameters<App['use']>[0]>[0], next: () => Promise<void>) => {
        try {
          await next();
        } catch (err) {
          c.log.warn({ err }, 'seen'); // reports, answers nothing
        }
      };
      const answer = async (c: Parameters<Parameters<App['use']>[0]>[0], next: () => Promise<void>) => {
        try {
          await next();
        } catch {
          c.json({ custom: true }, 503);
        }
      };
      const catchLater = (c: Parameters<Parameters<App['use']>[0]>[0], next: () => Promise<void>) => {
        next().catch(() => c.text('caught by the middleware', 502));
      };
      const fail = () => {
        throw new Error('boom');
      };
      app.get('/swallowed', swallow, fail);
      app.get('/answered', answer, fail);
      app.get('/caught', catchLater, async () => {
        await new Promise((resolve) => setImmediate(resolve));
        throw new Error('late');
      });
    });
    const swallowed = await fetch(`${url}/swallowed`, { signal: AbortSignal.timeout(10_000) });
    expect([swallowed.status, ((await swallowed.json()) as Problem).error.code]).toEqual([
      500,
      'HYP_E_INTERNAL',
    ]);
    const answered = await fetch(`${url}/answered`, { signal: AbortSignal.timeout(10_000) });
    expect([answered.status, await answered.json()]).toEqual([503, { custom: true }]);
    const caught = await fetch(`${url}/caught`, { signal: AbortSignal.timeout(10_000) });
    expect([caught.status, await caught.text()]).toEqual([502, 'caught by the middleware']);
  });
  it('gets an error its handler threw after answering logged with the request id, as without middleware', async () => {
    const { url, logs } = await start((app) => {
      const answerThenThrow = (c: Parameters<Parameters<App['use']>[0]>[0]) => {
        c.text('answered');
        throw new Error(`after the answer of ${c.path}`);
      };
      // The normal path, and a middleware that awaits next() and rethrows.
      app.get('/plain', answerThenThrow);
      app.get('/awaited', async (_c, next) => next(), answerThenThrow);
      // Middleware that never sees the rejection: sync, async, and async after a wait of its own.
      app.get('/sync', (_c, next) => void next(), answerThenThrow);
      app.get(
        '/async',
        async (_c, next) => {
          next();
        },
        answerThenThrow,
      );
      app.get(
        '/late',
        (_c, next) => void next(),
        async (c) => {
          c.text('answered');
          await new Promise((resolve) => setImmediate(resolve));
          throw new Error('after the answer of /late');
        },
      );
    });
    const paths = ['/plain', '/awaited', '/sync', '/async', '/late'];
    const ids: Record<string, string | null> = {};
    for (const path of paths) {
      const res = await fetch(`${url}${path}`, { signal: AbortSignal.timeout(10_000) });
      expect([res.status, await res.text()]).toEqual([200, 'answered']);
      ids[path] = res.headers.get('x-request-id');
    }
    const session: ClientHttp2Session = h2connect(url);
    try {
      const answer = await new Promise<Record<string, unknown>>((resolve, reject) => {
        const req = session.request({ ':path': '/sync' });
        let headers: Record<string, unknown> = {};
        req.on('response', (h) => {
          headers = h;
        });
        req.resume();
        req.on('end', () => resolve(headers));
        req.on('error', reject);
      });
      ids['/sync h2'] = String(answer['x-request-id']);
    } finally {
      session.close();
    }
    const logged = (id: string | null) =>
      until(() => {
        const lines = logs.filter((l) => l.request_id === id && l.level === 50);
        return lines.length > 0 ? lines : undefined;
      }, `the error line of request ${id}`);
    for (const [path, id] of Object.entries(ids)) {
      const lines = await logged(id);
      expect(lines, path).toHaveLength(1);
      expect(lines[0]!.msg, path).toBe('unhandled error in request handler');
      expect((lines[0]!.err as { message: string }).message, path).toBe(
        `after the answer of ${path.split(' ')[0]}`,
      );
    }
  });
});

describe('app.static() options', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-static-opts-'));
  writeFileSync(join(dir, 'a.txt'), 'a');

  it('refuses a maxAge or dotfiles value send would ignore (max-age=0) or fail every request on (500), at registration', () => {
    const app = new App();
    for (const maxAge of [
      'one hour',
      '1 fortnight',
      '',
      '1.',
      '-1h',
      -1,
      Number.NaN,
      Number.POSITIVE_INFINITY,
    ])
      expect(() => app.static('/s', dir, { maxAge }), String(maxAge)).toThrow(/maxAge/);
    expect(() => app.static('/s', dir, { dotfiles: 'Deny' as 'deny' })).toThrow(/dotfiles/);
  });

  it('takes maxAge in ms or as an ms-style duration', async () => {
    const { url } = await start((app) => {
      app.static('/hour', dir, { maxAge: '1h' });
      app.static('/week', dir, { maxAge: '7 days' });
      app.static('/ms', dir, { maxAge: 90_000 });
    });
    const cache = async (path: string) => (await fetch(`${url}${path}/a.txt`)).headers.get('cache-control');
    expect([await cache('/hour'), await cache('/week'), await cache('/ms')]).toEqual([
      'public, max-age=3600',
      'public, max-age=604800',
      'public, max-age=90',
    ]);
  });
});

describe('Vary set by middleware (CORS) in front of static files', () => {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-static-vary-'));
  writeFileSync(join(dir, 'a.txt'), 'hello');

  it('is added to, not replaced by, the static handler’s Vary: Accept-Encoding', async () => {
    const { url } = await start((app) => {
      app.use(async (c, next) => {
        c.header('vary', 'Origin').header('access-control-allow-origin', c.header('origin') ?? '*');
        await next();
      });
      app.static('/s', dir);
      const twice = app.group('/twice', async (c, next) => {
        c.header('vary', 'Origin, accept-encoding');
        await next();
      });
      twice.static('/', dir);
    });
    const init = { headers: { origin: 'https://a.example' } };
    const ok = await fetch(`${url}/s/a.txt`, init);
    expect([ok.status, ok.headers.get('vary'), ok.headers.get('access-control-allow-origin')]).toEqual([
      200,
      'Origin, Accept-Encoding',
      'https://a.example',
    ]);
    // A range past the end: 416, the middleware's Vary still there.
    const range = await fetch(`${url}/s/a.txt`, { headers: { ...init.headers, range: 'bytes=99-' } });
    expect([range.status, range.headers.get('vary')]).toEqual([416, 'Origin, Accept-Encoding']);
    // Already listed (any case): not repeated.
    const listed = await fetch(`${url}/twice/a.txt`, init);
    expect([listed.status, listed.headers.get('vary')]).toEqual([200, 'Origin, accept-encoding']);
  });
});

describe('server-sent event framing', () => {
  it('splits data at every line break (CRLF, CR, LF) and refuses an event or id that would break the frame', async () => {
    const refused: string[] = [];
    const { url } = await start((app) =>
      app.get('/events', (c) => {
        const sse = c.sse();
        sse.send('a\r\nb\rc\nd\n', { id: '7' });
        for (const fields of [{ id: 'x\ny' }, { event: 'x\rdata: injected' }, { id: 'n\0ul' }]) {
          try {
            sse.send('never', fields);
          } catch (err) {
            refused.push((err as Error).message);
          }
        }
        sse.send('after', { event: 'ok' });
        sse.close();
      }),
    );
    const res = await fetch(`${url}/events`, { signal: AbortSignal.timeout(10_000) });
    // A trailing line break gives a last empty data line: the client's data ends with "\n", as sent.
    expect(await res.text()).toBe(
      'id: 7\ndata: a\ndata: b\ndata: c\ndata: d\ndata: \n\nevent: ok\ndata: after\n\n',
    );
    expect(refused).toEqual([
      'sse id must be a single line without NUL',
      'sse event must be a single line without NUL',
      'sse id must be a single line without NUL',
    ]);
  });
});

describe('route parameters', () => {
  it('are decoded once and may hold / and NUL, as under Express and Fastify (docs: validate them)', async () => {
    const { url } = await start((app) => app.get('/users/:id', (c) => c.json({ id: c.param('id') })));
    const ids = [];
    for (const raw of ['a%2Fb', '%00', '%2541'])
      ids.push(((await (await fetch(`${url}/users/${raw}`)).json()) as { id: string }).id);
    expect(ids).toEqual(['a/b', '\0', '%41']);
  });
});

describe('c.empty() after c.status()', () => {
  it('answers the status set before, as c.text and c.json do (204 only when none was set)', async () => {
    const { url } = await start((app) => {
      app.post('/accepted', (c) => c.status(202).empty());
      app.delete('/gone', (c) => c.status(410).empty());
      app.delete('/plain', (c) => c.empty());
      app.put('/explicit', (c) => c.status(202).empty(204));
    });
    const answers = [];
    for (const [method, path] of [
      ['POST', '/accepted'],
      ['DELETE', '/gone'],
      ['DELETE', '/plain'],
      ['PUT', '/explicit'],
    ] as const) {
      const res = await fetch(`${url}${path}`, { method });
      answers.push([res.status, res.headers.get('content-length'), await res.text()]);
    }
    expect(answers).toEqual([
      [202, '0', ''],
      [410, '0', ''],
      [204, null, ''],
      [204, null, ''],
    ]);
    // HTTP/2 as well (the bare-stream path).
    const h2 = await h2req(url, 'POST', '/accepted');
    expect(h2.headers[':status']).toBe(202);
  });
});

describe('Content-Encoding of a request body', () => {
  it('an empty value or identity list is no coding (as body-parser takes it); gzip is 415', async () => {
    const { url } = await start((app) => app.post('/echo', async (c) => c.json(await c.body('json'))));
    const post = (encoding: string) =>
      fetch(`${url}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'content-encoding': encoding },
        body: '{"a":1}',
      }).then(async (res) => [res.status, await res.json()]);
    expect(await post('')).toEqual([200, { a: 1 }]);
    expect(await post('Identity, identity')).toEqual([200, { a: 1 }]);
    expect((await post('gzip'))[0]).toBe(415);
    expect((await post('identity, gzip'))[0]).toBe(415);
  });
});

describe('c.redirect() after c.status()', () => {
  it('keeps a 3xx set before (Fastify: reply.code(301).redirect(url)); otherwise 302', async () => {
    const { url } = await start((app) => {
      app.get('/moved', (c) => c.status(301).redirect('/new'));
      app.get('/plain', (c) => c.redirect('/new'));
      app.get('/created', (c) => c.status(201).redirect('/new'));
      app.get('/explicit', (c) => c.status(301).redirect('/new', 307));
    });
    const statuses = [];
    for (const path of ['/moved', '/plain', '/created', '/explicit'])
      statuses.push((await fetch(`${url}${path}`, { redirect: 'manual' })).status);
    expect(statuses).toEqual([301, 302, 302, 307]);
  });
});

describe('CORS headers on an error answer', () => {
  it('are kept, so a cross-origin browser client can read the problem body (Express and Fastify keep them)', async () => {
    const { url } = await start((app) => {
      app.use(async (c, next) => {
        c.header('access-control-allow-origin', 'https://app.example')
          .header('access-control-allow-credentials', 'true')
          .header('access-control-expose-headers', 'x-request-id')
          .header('vary', 'Origin');
        await next();
      });
      app.post('/items', async (c) => {
        c.header('cache-control', 'max-age=60').header('etag', '"half-built"');
        return c.json(await c.body('json'), 201);
      });
      app.get('/boom', () => {
        throw new Error('boom');
      });
    });
    const bad = await fetch(`${url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', origin: 'https://app.example' },
      body: '{"a":',
    });
    const boom = await fetch(`${url}/boom`, { headers: { origin: 'https://app.example' } });
    for (const [res, status] of [
      [bad, 400],
      [boom, 500],
    ] as const) {
      expect(res.status).toBe(status);
      expect(res.headers.get('access-control-allow-origin')).toBe('https://app.example');
      expect(res.headers.get('access-control-allow-credentials')).toBe('true');
      expect(res.headers.get('access-control-expose-headers')).toBe('x-request-id');
      expect(res.headers.get('vary')).toBe('Origin');
    }
    // What described the half-built answer still goes.
    expect([bad.headers.get('cache-control'), bad.headers.get('etag')]).toEqual([null, null]);
  });
});

describe('Set-Cookie and security headers on an error answer', () => {
  const routes = (app: App) => {
    // A session middleware that refreshed its cookie, a helmet-style one, then a handler that throws.
    app.use(async (c, next) => {
      c.setCookie('sid', 'rotated', { maxAge: 3600 })
        .header('strict-transport-security', 'max-age=31536000')
        .header('x-content-type-options', 'nosniff')
        .header('content-security-policy', "default-src 'none'");
      await next();
    });
    app.get('/boom', (c) => {
      c.setCookie('flash', 'saved');
      c.header('cache-control', 'public, max-age=86400').header('etag', '"half-built"');
      c.header('content-language', 'de');
      throw new Error('boom');
    });
    app.post('/items', async (c) => c.json(await c.body('json'), 201));
  };
  const kept = ['strict-transport-security', 'x-content-type-options', 'content-security-policy'];
  const dropped = ['cache-control', 'etag', 'content-language'];

  it('are kept over HTTP/1.1 (as Express and Fastify keep them); what described the answer goes', async () => {
    const { url } = await start(routes);
    const boom = await fetch(`${url}/boom`);
    expect(boom.status).toBe(500);
    expect(boom.headers.getSetCookie()).toEqual([
      'sid=rotated; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax',
      'flash=saved; Path=/; HttpOnly; SameSite=Lax',
    ]);
    for (const name of kept) expect(boom.headers.get(name), name).not.toBeNull();
    for (const name of dropped) expect(boom.headers.get(name), name).toBeNull();
    const bad = await fetch(`${url}/items`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: '{"a":',
    });
    expect([bad.status, bad.headers.getSetCookie()]).toEqual([
      400,
      ['sid=rotated; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax'],
    ]);
  });

  it('are kept over HTTP/2', async () => {
    const { url } = await start(routes);
    const boom = await h2get(url, '/boom');
    expect(boom.headers[':status']).toBe(500);
    expect(boom.headers['set-cookie']).toEqual([
      'sid=rotated; Max-Age=3600; Path=/; HttpOnly; SameSite=Lax',
      'flash=saved; Path=/; HttpOnly; SameSite=Lax',
    ]);
    for (const name of kept) expect(boom.headers[name], name).toBeDefined();
    for (const name of dropped) expect(boom.headers[name], name).toBeUndefined();
  });
});

describe('docs/http.md: what a handler returns', () => {
  it('is not sent (Fastify would send it): the request stays unanswered, a returned c.json() answers', async () => {
    const { url } = await start((app) => {
      app.get('/returned', async () => ({ a: 1 }));
      app.get('/hono-style', (c) => c.json({ a: 1 }));
    });
    const ok = await fetch(`${url}/hono-style`);
    expect([ok.status, await ok.json()]).toEqual([200, { a: 1 }]);
    // Bounded: the client gives up after 1 s (a bound, not a timing assertion).
    const outcome = await fetch(`${url}/returned`, { signal: AbortSignal.timeout(1000) }).then(
      (res) => `answered ${res.status}`,
      (err: Error) => err.name,
    );
    expect(outcome).toBe('TimeoutError');
  });
});

describe("docs/http.md: an error's own status", () => {
  it('is not read (500), and the documented onError mapping answers it', async () => {
    const httpError = () => Object.assign(new Error('no such item'), { status: 404 });
    const plain = await start((app) =>
      app.get('/item', () => {
        throw httpError();
      }),
    );
    expect((await fetch(`${plain.url}/item`)).status).toBe(500);
    const mapped = await start((app) => {
      app.get('/item', () => {
        throw httpError();
      });
      app.get('/crash', () => {
        throw Object.assign(new Error('db password is hunter2'), { statusCode: 503 });
      });
      app.onError((err, c) => {
        const { status, statusCode, message } = err as {
          status?: unknown;
          statusCode?: unknown;
          message?: unknown;
        };
        const code = typeof status === 'number' ? status : statusCode;
        if (typeof code === 'number' && code >= 400 && code <= 499)
          c.json({ error: { code: `HTTP_${code}`, message: String(message) } }, code);
      });
    });
    const item = await fetch(`${mapped.url}/item`);
    expect([item.status, await item.json()]).toEqual([
      404,
      { error: { code: 'HTTP_404', message: 'no such item' } },
    ]);
    const crash = await fetch(`${mapped.url}/crash`);
    expect([crash.status, (await crash.text()).includes('hunter2')]).toEqual([500, false]);
  });
});

describe("docs/http.md's first example: the static directory next to the app", () => {
  it('is found through fileURLToPath even when the path has a space; URL.pathname keeps %20 and fails the start', () => {
    const appDir = mkdtempSync(join(tmpdir(), 'hyp app '));
    mkdirSync(join(appDir, 'public'));
    const appUrl = pathToFileURL(join(appDir, 'app.js')).href;
    expect(() => new App().static('/static', new URL('./public', appUrl).pathname)).toThrow(/cannot be read/);
    expect(() => new App().static('/static', fileURLToPath(new URL('./public', appUrl)))).not.toThrow();
  });
});

describe("c.header('host')", () => {
  it('is the authority over HTTP/2 too (:authority; HTTP/2 clients send no Host), as over HTTP/1.1', async () => {
    const { url } = await start((app) => app.get('/host', (c) => c.text(c.header('host') ?? '(none)')));
    const authority = new URL(url).host;
    const h1 = await fetch(`${url}/host`);
    expect(await h1.text()).toBe(authority);
    const h2 = await h2get(url, '/host');
    expect(h2.body).toBe(authority);
  });
});

describe('a body over body_limit without Content-Length over HTTP/2', () => {
  it('is cut at the limit with 413, the rest of the upload stopped (RST_STREAM NO_ERROR), the session serving on', async () => {
    const { url } = await start((app) => {
      app.post('/upload', async (c) => c.text(`got ${(await c.body('raw')).length}`));
      app.get('/after', (c) => c.text('still serving'));
    });
    const session = h2connect(url);
    try {
      const answer = await new Promise<{ status: unknown; body: string; rstCode: number | undefined }>(
        (resolve, reject) => {
          const req = session.request({
            ':method': 'POST',
            ':path': '/upload',
            'content-type': 'application/octet-stream',
          });
          let status: unknown;
          let body = '';
          let sent = 0;
          const chunk = Buffer.alloc(64 * 1024, 0x61);
          // 4 MiB offered, 64 KiB at a time, with backpressure: well over the 1 MiB default limit.
          const pump = () => {
            while (sent < 4 * 1024 * 1024 && !req.destroyed) {
              sent += chunk.length;
              if (!req.write(chunk)) return void req.once('drain', pump);
            }
            if (!req.destroyed) req.end();
          };
          req.on('response', (h) => {
            status = h[':status'];
          });
          req.setEncoding('utf8');
          req.on('data', (d: string) => {
            body += d;
          });
          // Before: the answer came, but the stream never closed (the client blocked on flow control).
          req.on('close', () => resolve({ status, body, rstCode: req.rstCode }));
          req.on('error', () => {});
          pump();
          setTimeout(() => reject(new Error(`stream not closed in 10 s (status ${status})`)), 10_000).unref();
        },
      );
      expect(answer.status).toBe(413);
      expect(JSON.parse(answer.body).error.code).toBe('HYP_E_BODY_TOO_LARGE');
      expect(answer.rstCode).toBe(0);
      const after = await new Promise<string>((resolve, reject) => {
        const req = session.request({ ':path': '/after' });
        let body = '';
        req.setEncoding('utf8');
        req.on('data', (d: string) => {
          body += d;
        });
        req.on('end', () => resolve(body));
        req.on('error', reject);
      });
      expect(after).toBe('still serving');
    } finally {
      session.close();
    }
  });
});
