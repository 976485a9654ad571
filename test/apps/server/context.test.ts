import { request as httpRequest } from 'node:http';
import { Readable } from 'node:stream';
import { Value } from '@sinclair/typebox/value';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { type Config, ConfigSchema } from '../../../supervisor/config/schema.js';
import { HypError } from '../../../supervisor/errors.js';
import { problem, rawExchange, type Served, serve } from './serve.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function start(setup: Parameters<typeof serve>[0], options?: Parameters<typeof serve>[1]) {
  served = await serve(setup, options);
  return served.url;
}

function configWith(server: Record<string, unknown>): Config {
  return Value.Default(ConfigSchema, { server }) as Config;
}

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { lines, log };
}

describe('context responses', () => {
  it('sends text, html and json with their content types and a chosen status', async () => {
    const url = await start((app) => {
      app.get('/text', (c) => c.text('plain'));
      app.get('/html', (c) => c.html('<b>x</b>', 202));
      app.get('/json', (c) => c.status(201).json({ a: [1, 2] }));
      app.get('/bytes', (c) => c.send(Buffer.from([1, 2, 3]), 'application/x-test'));
    });
    const text = await fetch(`${url}/text`);
    expect(text.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(await text.text()).toBe('plain');
    const html = await fetch(`${url}/html`);
    expect([html.status, html.headers.get('content-type'), await html.text()]).toEqual([
      202,
      'text/html; charset=utf-8',
      '<b>x</b>',
    ]);
    const json = await fetch(`${url}/json`);
    expect([json.status, await json.json()]).toEqual([201, { a: [1, 2] }]);
    const bytes = await fetch(`${url}/bytes`);
    expect(bytes.headers.get('content-type')).toBe('application/x-test');
    expect([...new Uint8Array(await bytes.arrayBuffer())]).toEqual([1, 2, 3]);
  });

  it('sets response headers, cookies and redirects', async () => {
    const url = await start((app) => {
      app.get('/h', (c) =>
        c.header('x-one', '1').setCookie('sid', 'a b').setCookie('theme', 'dark').text('ok'),
      );
      app.get('/go', (c) => c.redirect('/there', 301));
    });
    const res = await fetch(`${url}/h`);
    expect(res.headers.get('x-one')).toBe('1');
    expect(res.headers.getSetCookie()).toEqual([
      'sid=a%20b; Path=/; HttpOnly; SameSite=Lax',
      'theme=dark; Path=/; HttpOnly; SameSite=Lax',
    ]);
    const go = await fetch(`${url}/go`, { redirect: 'manual' });
    expect([go.status, go.headers.get('location')]).toEqual([301, '/there']);
  });

  it('answers 204, 205 and 304 without content, so a kept-alive connection stays in step', async () => {
    const url = await start((app) => {
      app.get('/no-content/:status', (c) => c.text('dropped', Number(c.param('status'))));
      app.get('/empty/:status', (c) => c.empty(Number(c.param('status'))));
      app.get('/after', (c) => c.text('next'));
      app.get('/informational', (c) => c.text('never', 103));
    });
    const paths = ['204', '205', '304'].flatMap((s) => [`/no-content/${s}`, `/empty/${s}`]);
    // Pipelined on one connection: a stray body byte would be read as the next response.
    const raw = await rawExchange(
      url,
      [...paths, '/after']
        .map(
          (path) =>
            `GET ${path} HTTP/1.1\r\nhost: x\r\n${path === '/after' ? 'connection: close\r\n' : ''}\r\n`,
        )
        .join(''),
    );
    const heads = raw.split(/(?=HTTP\/1\.1 )/);
    expect(heads.map((h) => Number(h.slice(9, 12)))).toEqual([204, 204, 205, 205, 304, 304, 200]);
    for (const [i, head] of heads.slice(0, 6).entries()) {
      expect(head, paths[i]).toMatch(/\r\nx-request-id: [\w-]+\r\n/);
      expect(head, paths[i]).not.toMatch(/content-type|dropped/i);
      // RFC 9110 §8.6: no Content-Length on a 204 (nor on a 304, where it would describe a body not sent).
      if (head.startsWith('HTTP/1.1 205')) expect(head, paths[i]).toMatch(/\r\ncontent-length: 0\r\n\r\n$/i);
      else expect(head, paths[i]).not.toMatch(/content-length/i);
    }
    expect(heads[6]).toMatch(/\r\n\r\nnext$/);
    const informational = await fetch(`${url}/informational`);
    expect(informational.status).toBe(500);
    expect((await problem(informational)).code).toBe('HYP_E_INTERNAL');
  });

  it('streams a readable and an async iterable', async () => {
    const url = await start((app) => {
      app.get('/node', (c) => c.stream(Readable.from(['a', 'b', 'c']), 'text/plain'));
      app.get('/iter', (c) =>
        c.stream(
          (async function* () {
            yield 'x';
            yield new TextEncoder().encode('y');
          })(),
        ),
      );
    });
    expect(await (await fetch(`${url}/node`)).text()).toBe('abc');
    const iter = await fetch(`${url}/iter`);
    expect(iter.headers.get('content-type')).toBe('application/octet-stream');
    expect(await iter.text()).toBe('xy');
  });

  it('writes server-sent events with event, id and multi-line data', async () => {
    const url = await start((app) =>
      app.get('/events', (c) => {
        const sse = c.sse();
        sse.send('hello', { event: 'greet', id: '1' });
        sse.send({ n: 2 });
        sse.send('two\nlines');
        sse.comment('keep-alive');
        sse.close();
      }),
    );
    const res = await fetch(`${url}/events`);
    expect(res.headers.get('content-type')).toBe('text/event-stream; charset=utf-8');
    expect(res.headers.get('cache-control')).toBe('no-cache');
    expect(await res.text()).toBe(
      'event: greet\nid: 1\ndata: hello\n\ndata: {"n":2}\n\ndata: two\ndata: lines\n\n: keep-alive\n\n',
    );
  });

  it('aborts c.signal when the client goes away mid-stream', async () => {
    let aborted: () => void = () => {};
    const gone = new Promise<void>((resolve) => {
      aborted = resolve;
    });
    const url = await start((app) =>
      app.get('/events', (c) => {
        const sse = c.sse();
        sse.send('first');
        c.signal.addEventListener('abort', () => aborted());
      }),
    );
    const controller = new AbortController();
    const res = await fetch(`${url}/events`, { signal: controller.signal });
    const reader = res.body!.getReader();
    await reader.read();
    controller.abort();
    await gone;
  });
});

describe('context request accessors', () => {
  it('reads query values (first and repeated), headers and cookies', async () => {
    const url = await start((app) =>
      app.get('/q', (c) =>
        c.json({
          ms: c.query('ms'),
          missing: c.query('nope') ?? null,
          tags: c.queries('tag'),
          agent: c.header('x-agent'),
          sid: c.cookie('sid'),
          path: c.path,
          route: c.route,
        }),
      ),
    );
    const res = await fetch(`${url}/q?ms=10&tag=a&tag=b%20c`, {
      headers: { 'x-agent': 't', cookie: 'sid=abc; x=1' },
    });
    expect(await res.json()).toEqual({
      ms: '10',
      missing: null,
      tags: ['a', 'b c'],
      agent: 't',
      sid: 'abc',
      path: '/q',
      route: '/q',
    });
  });

  it('echoes a well-formed x-request-id, replaces a malformed one, and puts it on c.log lines', async () => {
    const { lines, log } = capture();
    const url = await start(
      (app) =>
        app.get('/id', (c) => {
          c.log.info('handled');
          c.text(c.requestId);
        }),
      { log },
    );
    const given = await fetch(`${url}/id`, { headers: { 'x-request-id': 'abc-123' } });
    expect(given.headers.get('x-request-id')).toBe('abc-123');
    expect(await given.text()).toBe('abc-123');
    expect(lines.at(-1)).toMatchObject({
      msg: 'handled',
      request_id: 'abc-123',
      route: '/id',
      method: 'GET',
    });
    const bad = await fetch(`${url}/id`, { headers: { 'x-request-id': 'x'.repeat(300) } });
    expect(bad.headers.get('x-request-id')).toMatch(/^[\w-]{6}-[0-9a-z]+$/);
    const none = await fetch(`${url}/id`);
    expect(none.headers.get('x-request-id')).toMatch(/^[\w-]{6}-[0-9a-z]+$/);
    expect(none.headers.get('x-request-id')).not.toBe(bad.headers.get('x-request-id'));
  });

  it('puts the request id on every kind of response, exactly once', async () => {
    const url = await start((app) => {
      app.get('/json', (c) => c.status(201).json({ ok: true }));
      app.get('/with-header', (c) => c.header('x-one', '1').text('ok'));
      app.get('/own-id', (c) => c.header('x-request-id', 'mine').text('ok'));
      app.get('/empty', (c) => c.empty());
      app.get('/redirect', (c) => c.redirect('/json'));
      app.get('/stream', (c) => c.stream(Readable.from(['a', 'b']), 'text/plain'));
      app.get('/raw', (c) => {
        c.res.writeHead(202, { 'content-type': 'text/plain' });
        c.res.end('raw');
      });
      app.get('/sse', (c) => {
        const events = c.sse();
        events.send('hi');
        events.close();
      });
      app.get('/boom', () => {
        throw new Error('boom');
      });
    });
    const ids = new Set<string>();
    for (const [path, method, status] of [
      ['/json', 'GET', 201],
      ['/json', 'HEAD', 201],
      ['/with-header', 'GET', 200],
      ['/empty', 'GET', 204],
      ['/redirect', 'GET', 302],
      ['/stream', 'GET', 200],
      ['/raw', 'GET', 202],
      ['/sse', 'GET', 200],
      ['/boom', 'GET', 500],
      ['/nowhere', 'GET', 404],
      ['/json', 'DELETE', 405],
    ] as const) {
      const res = await fetch(`${url}${path}`, { method, redirect: 'manual' });
      await res.arrayBuffer();
      const id = res.headers.get('x-request-id');
      expect([path, method, res.status, id]).toEqual([
        path,
        method,
        status,
        expect.stringMatching(/^[\w-]{6}-[0-9a-z]+$/),
      ]);
      ids.add(id!);
    }
    expect(ids.size).toBe(11);
    const own = await fetch(`${url}/own-id`);
    expect(own.headers.get('x-request-id')).toBe('mine');
    // A head written by hand carries it once, not twice.
    const raw = await new Promise<string[]>((resolve, reject) => {
      const req = httpRequest(`${url}/raw`, (res) => {
        res.resume();
        resolve(res.rawHeaders.filter((_, i) => i % 2 === 0).map((h) => h.toLowerCase()));
      });
      req.on('error', reject);
      req.end();
    });
    expect(raw.filter((h) => h === 'x-request-id')).toHaveLength(1);
  });

  it('uses the socket peer as client IP and ignores X-Forwarded-For without trusted proxies', async () => {
    const url = await start((app) => app.get('/ip', (c) => c.text(c.clientIp)));
    const res = await fetch(`${url}/ip`, { headers: { 'x-forwarded-for': '203.0.113.9' } });
    expect(await res.text()).toBe('127.0.0.1');
  });

  it('believes X-Forwarded-For only through trusted proxies', async () => {
    const url = await start((app) => app.get('/ip', (c) => c.text(c.clientIp)), {
      config: configWith({ trusted_proxies: ['127.0.0.1/8', '10.0.0.0/8'] }),
    });
    // peer 127.0.0.1 (trusted) ← 10.1.1.1 (trusted) ← 198.51.100.7 (the client); the spoofed left entry is not reached
    const res = await fetch(`${url}/ip`, {
      headers: { 'x-forwarded-for': '6.6.6.6, 198.51.100.7, 10.1.1.1' },
    });
    expect(await res.text()).toBe('198.51.100.7');
  });

  it('refuses an invalid trusted_proxies entry with the key path', async () => {
    const { App } = await import('../../../apps/server/app.js');
    expect(() => new App({ config: configWith({ trusted_proxies: ['not-an-ip'] }) })).toThrow(
      /server\.trusted_proxies/,
    );
  });
});

describe('request bodies', () => {
  function echo() {
    return start(
      (app) => {
        app.post('/auto', async (c) => {
          const body = await c.body();
          if (body instanceof URLSearchParams) return c.json({ form: Object.fromEntries(body) });
          if (Buffer.isBuffer(body)) return c.json({ raw: body.length });
          c.json({ body });
        });
        app.post('/text', async (c) => c.text(await c.body('text')));
        app.post('/twice', async (c) => {
          const a = await c.body('text');
          const b = await c.body('raw');
          c.json({ a, b: b.length });
        });
        app.post('/small', async (c) => c.text(String((await c.body('raw', { limit: 4 })).length)));
      },
      { config: configWith({ limits: { body_limit: '64' } }) },
    );
  }

  it('parses JSON, text, forms and raw bytes by Content-Type', async () => {
    const url = await echo();
    const post = (body: string | Uint8Array, type: string) =>
      fetch(`${url}/auto`, { method: 'POST', body, headers: { 'content-type': type } }).then((r) => r.json());
    expect(await post('{"a":1}', 'application/json')).toEqual({ body: { a: 1 } });
    expect(await post('{"a":1}', 'application/vnd.x+json; charset=utf-8')).toEqual({ body: { a: 1 } });
    expect(await post('héllo', 'text/plain; charset=utf-8')).toEqual({ body: 'héllo' });
    expect(await post('a=1&b=x+y', 'application/x-www-form-urlencoded')).toEqual({
      form: { a: '1', b: 'x y' },
    });
    expect(await post(new Uint8Array([0, 1, 2]), 'application/octet-stream')).toEqual({ raw: 3 });
    expect(await (await fetch(`${url}/twice`, { method: 'POST', body: 'abc' })).json()).toEqual({
      a: 'abc',
      b: 3,
    });
  });

  it('answers 400 HYP_E_BODY_INVALID with the parser position for broken JSON', async () => {
    const url = await echo();
    const res = await fetch(`${url}/auto`, {
      method: 'POST',
      body: '{"a":',
      headers: { 'content-type': 'application/json' },
    });
    expect(res.status).toBe(400);
    const error = await problem(res);
    expect(error.code).toBe('HYP_E_BODY_INVALID');
    expect(error.message).toMatch(/^request body is not valid JSON: .*(position|end)/i);
  });

  it('answers 400 with the byte offset of invalid UTF-8 text', async () => {
    const url = await echo();
    const res = await fetch(`${url}/text`, {
      method: 'POST',
      body: new Uint8Array([0x61, 0x62, 0xff, 0x63]),
    });
    expect(res.status).toBe(400);
    expect((await problem(res)).message).toBe('request body is not valid UTF-8: invalid byte at offset 2');
  });

  it('answers 415 for multipart and for a charset it cannot decode', async () => {
    const url = await echo();
    const multipart = await fetch(`${url}/auto`, {
      method: 'POST',
      body: 'x',
      headers: { 'content-type': 'multipart/form-data; boundary=x' },
    });
    expect(multipart.status).toBe(415);
    expect((await problem(multipart)).code).toBe('HYP_E_UNSUPPORTED_MEDIA_TYPE');
    const latin = await fetch(`${url}/text`, {
      method: 'POST',
      body: 'x',
      headers: { 'content-type': 'text/plain; charset=iso-8859-1' },
    });
    expect(latin.status).toBe(415);
  });

  it('answers 413 HYP_E_BODY_TOO_LARGE when Content-Length exceeds server.limits.body_limit', async () => {
    const url = await echo();
    const res = await fetch(`${url}/auto`, { method: 'POST', body: 'x'.repeat(65) });
    expect(res.status).toBe(413);
    expect(await res.json()).toEqual({
      error: { code: 'HYP_E_BODY_TOO_LARGE', message: 'request body exceeds 64 bytes' },
    });
    expect((await fetch(`${url}/auto`, { method: 'POST', body: 'x'.repeat(64) })).status).toBe(200);
  });

  it('answers 413 for a chunked body that grows past the limit, and closes the connection', async () => {
    const url = await echo();
    const { status, connection, body } = await new Promise<{
      status: number;
      connection: string;
      body: string;
    }>((resolve, reject) => {
      const req = httpRequest(`${url}/auto`, { method: 'POST' }, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode!, connection: String(res.headers.connection), body }),
        );
      });
      req.on('error', reject);
      req.write('x'.repeat(40));
      setTimeout(() => req.write('y'.repeat(40)), 20);
    });
    expect(status).toBe(413);
    expect(connection).toBe('close');
    expect(JSON.parse(body).error.code).toBe('HYP_E_BODY_TOO_LARGE');
  });

  it('answers 415 for a compressed body rather than parsing compressed bytes', async () => {
    const url = await echo();
    const res = await fetch(`${url}/auto`, {
      method: 'POST',
      body: 'x',
      headers: { 'content-type': 'application/json', 'content-encoding': 'gzip' },
    });
    expect([res.status, (await problem(res)).message]).toEqual([
      415,
      'unsupported content type content-encoding gzip',
    ]);
  });

  it('applies a per-read limit', async () => {
    const url = await echo();
    expect((await fetch(`${url}/small`, { method: 'POST', body: '12345' })).status).toBe(413);
    expect(await (await fetch(`${url}/small`, { method: 'POST', body: '1234' })).text()).toBe('4');
  });
});

describe('error mapping', () => {
  it('maps a thrown HypError to its catalog status and problem body', async () => {
    const url = await start((app) =>
      app.get('/teapot', () => {
        throw new HypError('HYP_E_BAD_REQUEST', { detail: 'ms must be a number' });
      }),
    );
    const res = await fetch(`${url}/teapot`);
    expect(res.status).toBe(400);
    expect(await res.json()).toEqual({
      error: { code: 'HYP_E_BAD_REQUEST', message: 'ms must be a number' },
    });
  });

  it('answers an unknown error with 500, no stack or message leak, and logs it with the request id', async () => {
    const { lines, log } = capture();
    const url = await start(
      (app) =>
        app.get('/boom', async (c) => {
          c.header('x-partial', 'yes');
          await Promise.resolve();
          throw new Error('db password is hunter2');
        }),
      { log },
    );
    const res = await fetch(`${url}/boom`, { headers: { 'x-request-id': 'req-1' } });
    expect(res.status).toBe(500);
    expect(res.headers.get('x-partial')).toBeNull();
    expect(res.headers.get('x-request-id')).toBe('req-1');
    const text = await res.text();
    expect(JSON.parse(text)).toEqual({ error: { code: 'HYP_E_INTERNAL', message: 'internal server error' } });
    expect(text).not.toMatch(/hunter2|at .*\.ts/);
    const line = lines.find((l) => l.level === 50);
    expect(line).toMatchObject({ request_id: 'req-1', route: '/boom' });
    expect(JSON.stringify(line)).toMatch(/hunter2/);
  });

  it('cuts the response when a handler fails after the headers went out', async () => {
    const url = await start((app) =>
      app.get('/half', (c) => {
        const res = c.res as import('node:http').ServerResponse;
        res.writeHead(200, { 'content-type': 'text/plain' });
        res.write('partial');
        throw new Error('late failure');
      }),
    );
    await expect(fetch(`${url}/half`).then((res) => res.text())).rejects.toThrow();
  });

  it('lets onError answer, and falls back to the problem body when it throws', async () => {
    const url = await start((app) => {
      app.onError((err, c) => {
        if (err instanceof HypError && err.code === 'HYP_E_CONFLICT')
          return c.status(409).text('custom conflict');
        throw err;
      });
      app.get('/conflict', () => {
        throw new HypError('HYP_E_CONFLICT', { detail: 'x' });
      });
      app.get('/other', () => {
        throw new HypError('HYP_E_FORBIDDEN_PATH');
      });
    });
    expect(await (await fetch(`${url}/conflict`)).text()).toBe('custom conflict');
    const other = await fetch(`${url}/other`);
    expect([other.status, (await problem(other)).code]).toEqual([403, 'HYP_E_FORBIDDEN_PATH']);
  });

  it('maps an error thrown in middleware the same way', async () => {
    const url = await start((app) => {
      app.use(async () => {
        throw new HypError('HYP_E_NOT_READY', { reason: 'warming up' });
      });
      app.get('/x', (c) => c.text('x'));
    });
    const res = await fetch(`${url}/x`);
    expect([res.status, (await problem(res)).message]).toEqual([503, 'not ready: warming up']);
  });
});
