/**
 * Hostile request content: request lines, methods, bodies and names that a
 * client controls must get a clear 4xx/5xx answer, never crash the worker,
 * never grow metrics without bound and never inject headers.
 */
import { createServer as createHttp2Server, connect as h2connect } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { pino } from 'pino';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../apps/server/app.js';
import { memoryTracer } from '../../helpers/tracing.js';
import { problem, rawExchange as raw, type Served, serve } from './serve.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { lines, log };
}

async function settle(): Promise<void> {
  await new Promise((r) => setTimeout(r, 20));
}

describe('request lines the HTTP/1.1 engine parses but cannot answer as HTTP/1.x', () => {
  it('answers 505 HYP_E_HTTP_VERSION to `HTTP/2.0` and HTTP/0.9 request lines, without running the route', async () => {
    const { lines, log } = capture();
    let ran = 0;
    served = await serve(
      (app) => {
        app.get('/', (c) => {
          ran++;
          return c.text('root');
        });
        app.post('/body', async (c) => {
          ran++;
          return c.text(String(await c.body('text')));
        });
        // Before the fix: headers out, then the failure path took the request
        // for HTTP/2 and threw outside any handler (an unhandled rejection).
        app.get('/stream', (c) => {
          ran++;
          return c.stream(
            (async function* () {
              yield 'a';
              throw new Error('source failed');
            })(),
          );
        });
      },
      { log },
    );
    for (const request of [
      'GET / HTTP/2.0\r\nHost: x\r\n\r\n',
      'POST /body HTTP/2.0\r\nHost: x\r\nContent-Length: 2\r\n\r\nab',
      'GET /stream HTTP/2.0\r\nHost: x\r\n\r\n',
      'GET /\r\n\r\n',
    ]) {
      const answer = await raw(served.url, request);
      expect(answer, request).toMatch(/^HTTP\/1\.1 505 /);
      expect(answer).toMatch(/\r\nconnection: close\r\n/i);
      expect(answer).toContain('"code":"HYP_E_HTTP_VERSION"');
    }
    expect(ran).toBe(0);
    expect(lines.filter((l) => (l.level as number) >= 50)).toEqual([]);
    // HTTP/1.0 and 1.1 are served as before.
    expect(await raw(served.url, 'GET / HTTP/1.0\r\n\r\n')).toMatch(/^HTTP\/1\.1 200 [\s\S]*root$/);
    expect(ran).toBe(1);
  });
});

describe('metrics and spans of client-chosen methods', () => {
  it('labels methods outside the known set `_OTHER` (HTTP/2 accepts any token as :method)', async () => {
    const registry = new Registry();
    const { exporter, tracer } = memoryTracer();
    const app = new App({ registry, tracer });
    app.get('/known', (c) => c.text('k'));
    const server = createHttp2Server();
    server.on('stream', (stream, headers, _flags, rawHeaders) =>
      app.handleStream(stream, headers, rawHeaders),
    );
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = h2connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const statuses: number[] = [];
      for (let i = 0; i < 20; i++) {
        for (const path of ['/nowhere', '/known']) {
          statuses.push(
            await new Promise<number>((resolve, reject) => {
              const stream = session.request({ ':method': `X-RANDOM-${i}`, ':path': path });
              stream.on('response', (h) => resolve(Number(h[':status'])));
              stream.on('error', reject);
              stream.resume();
              stream.end();
            }),
          );
        }
      }
      expect(new Set(statuses)).toEqual(new Set([404, 405]));
      await settle();
      const text = await registry.getSingleMetricAsString('hyp_http_requests_total');
      const series = text.split('\n').filter((l) => l.startsWith('hyp_http_requests_total{'));
      expect(series.sort()).toEqual([
        'hyp_http_requests_total{method="_OTHER",route="(not found)",status="404"} 20',
        'hyp_http_requests_total{method="_OTHER",route="(not found)",status="405"} 20',
      ]);
      const spans = exporter.getFinishedSpans();
      expect(spans).toHaveLength(40);
      // the semantic conventions name the span of an unknown method HTTP
      expect(new Set(spans.map((s) => s.name))).toEqual(new Set(['HTTP']));
      expect(spans[0]!.attributes['http.request.method']).toBe('_OTHER');
      expect(spans[0]!.attributes['http.request.method_original']).toBe('X-RANDOM-0');
    } finally {
      session.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });

  it('answers a malformed path 400 whatever the method (not 405, not an OPTIONS 204)', async () => {
    served = await serve((app) => {
      app.get('/a', (c) => c.text('a'));
      app.post('/b', (c) => c.text('b'));
    });
    for (const method of ['GET', 'OPTIONS', 'PROPFIND', 'DELETE']) {
      const answer = await raw(served.url, `${method} /%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`);
      expect(answer, method).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('"code":"HYP_E_BAD_REQUEST"');
      expect(answer).not.toMatch(/\r\nallow:/i);
    }
  });
});

describe('JSON bodies', () => {
  const post = (url: string, body: string) =>
    fetch(`${url}/echo`, { method: 'POST', headers: { 'content-type': 'application/json' }, body });

  it('refuses nesting deeper than 512 levels with 400 and the byte offset, before any handler recursion', async () => {
    served = await serve((app) => app.post('/echo', async (c) => c.json(await c.body())));
    const deep = await post(served.url, `${'['.repeat(100_000)}${']'.repeat(100_000)}`);
    expect(deep.status).toBe(400);
    expect(await problem(deep)).toEqual({
      code: 'HYP_E_BODY_INVALID',
      message: 'request body is not valid JSON: nesting deeper than 512 levels at byte offset 512',
    });
    const objects = await post(served.url, ` ${'{"a":'.repeat(600)}1${'}'.repeat(600)}`);
    expect(objects.status).toBe(400);
    expect((await problem(objects)).message).toContain('at byte offset 2561');
    // 512 levels are fine, and brackets inside strings do not count.
    const ok = await post(served.url, `${'['.repeat(512)}"[[[[\\"[[[[{{{{"${']'.repeat(512)}`);
    expect(ok.status).toBe(200);
    const long = `["${'['.repeat(5000)}"]`;
    const okString = await post(served.url, long);
    expect([okString.status, await okString.json()]).toEqual([200, ['['.repeat(5000)]]);
  });
});

describe('redirect locations', () => {
  it('percent-encodes control characters, spaces and non-ASCII (no header injection, no latin1 mojibake)', async () => {
    served = await serve((app) => app.get('/r', (c) => c.redirect(c.query('to') ?? '/')));
    const location = async (to: string) => {
      const answer = await raw(
        served!.url,
        `GET /r?to=${encodeURIComponent(to)} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 302 /);
      expect(answer).not.toMatch(/\r\nx-evil/i);
      return /\r\nlocation: ([^\r]*)\r\n/i.exec(answer)?.[1];
    };
    expect(await location('/a\r\nX-Evil: 1')).toBe('/a%0D%0AX-Evil:%201');
    expect(await location('/café?q=é')).toBe('/caf%C3%A9?q=%C3%A9');
    expect(await location('/日本')).toBe('/%E6%97%A5%E6%9C%AC');
    // Already encoded, or plain ASCII: untouched.
    expect(await location('/a%20b?x=1&y=%2F#frag')).toBe('/a%20b?x=1&y=%2F#frag');
  });

  it('a location with a lone surrogate is a clear 500 from the handler', async () => {
    served = await serve((app) => app.get('/r', (c) => c.redirect('/x\ud800')));
    const res = await fetch(`${served.url}/r`, { redirect: 'manual' });
    expect(res.status).toBe(500);
    expect(res.headers.get('location')).toBeNull();
  });
});

describe('names that are Object.prototype members', () => {
  it('c.cookie, c.header and c.param never return inherited members', async () => {
    served = await serve((app) => {
      const probe = (c: import('../../../apps/server/context.js').Context) =>
        c.json(
          ['__proto__', 'constructor', 'toString', 'hasOwnProperty'].map((n) => [
            typeof c.cookie(n),
            typeof c.header(n),
            typeof c.param(n),
          ]),
        );
      app.get('/plain', probe);
      app.get('/p/:id', probe);
    });
    const expected = Array(4).fill(['undefined', 'undefined', 'undefined']);
    for (const path of ['/plain', '/p/1']) {
      expect(await (await fetch(`${served.url}${path}`)).json()).toEqual(expected);
      const withCookie = await fetch(`${served.url}${path}`, { headers: { cookie: 'a=1' } });
      expect(await withCookie.json()).toEqual(expected);
    }
    const own = await fetch(`${served.url}/plain`, { headers: { cookie: '__proto__=x; constructor=y' } });
    expect(((await own.json()) as string[][]).map((r) => r[0])).toEqual([
      'string',
      'string',
      'undefined',
      'undefined',
    ]);
  });
});
