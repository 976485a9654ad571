/**
 * `c.protocol` behind a TLS-terminating proxy: the socket's own scheme, or
 * a trusted proxy's `X-Forwarded-Proto` (first value, `http` or `https`
 * only), as Express's `req.protocol` with `trust proxy`; on HTTP/1.1, h2c
 * (bare streams) and TLS, and as the span's `url.scheme`.
 */
import { request as httpsRequest } from 'node:https';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../helpers/supervisor.js';
import { memoryTracer } from '../../helpers/tracing.js';
import {
  type Answer,
  closeSession,
  connect2,
  get1,
  get2,
  type ListenedApp,
  listenApp,
} from './http/harness.js';
import { makePki, type TestPki } from './tls/certs.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

let running: ListenedApp | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

const routes = (app: Parameters<Parameters<typeof listenApp>[0]>[0]) => {
  app.get('/proto', (c) => c.text(c.protocol));
};

/** `c.protocol` as one HTTP/1.1 request with `X-Forwarded-Proto: xfp` (none when undefined) sees it. */
async function over1(xfp: string | undefined): Promise<string> {
  return (await get1(running!.port, '/proto', xfp === undefined ? {} : { 'x-forwarded-proto': xfp })).body;
}

/** The same over h2c prior knowledge. */
async function over2(xfp: string | undefined): Promise<string> {
  const session = await connect2(`http://127.0.0.1:${running!.port}`);
  try {
    return (await get2(session, '/proto', xfp === undefined ? {} : { 'x-forwarded-proto': xfp })).body;
  } finally {
    await closeSession(session);
  }
}

function getTls(port: number, path: string, headers: Record<string, string>): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path, headers, ca: pki.read(pki.caCert), agent: false },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

describe('c.protocol', () => {
  it('is the socket scheme, X-Forwarded-Proto ignored, without trusted proxies (HTTP/1.1 and h2c)', async () => {
    running = await listenApp(routes);
    for (const over of [over1, over2]) {
      expect(await over(undefined)).toBe('http');
      expect(await over('https')).toBe('http');
    }
  });

  it('ignores X-Forwarded-Proto from a peer that is not a trusted proxy', async () => {
    running = await listenApp(routes, ['server.trusted_proxies=10.0.0.0/8']);
    expect(await over1('https')).toBe('http');
    expect(await over2('https')).toBe('http');
  });

  it("takes a trusted proxy's first X-Forwarded-Proto value, http or https only (HTTP/1.1 and h2c)", async () => {
    running = await listenApp(routes, ['server.trusted_proxies=loopback']);
    for (const over of [over1, over2]) {
      expect(await over(undefined)).toBe('http');
      expect(await over('https')).toBe('https');
      expect(await over('https ,http')).toBe('https');
      expect(await over('HTTPS')).toBe('https');
      // Several proxies: the first value is the client-most one (as Express takes it).
      expect(await over('https, http')).toBe('https');
      expect(await over('http, https')).toBe('http');
      expect(await over('https,http')).toBe('https');
      // Anything but http or https: ignored, the socket's scheme stands.
      for (const junk of ['ftp', 'wss', 'https:', 'javascript', '', ',https', 'x'.repeat(4096)])
        expect(await over(junk), junk.slice(0, 20)).toBe('http');
    }
  });

  it('over TLS: https, and what a trusted proxy says', async () => {
    running = await listenApp(routes, [...pki.tlsSets()]);
    expect((await getTls(running.port, '/proto', { 'x-forwarded-proto': 'http' })).body).toBe('https');
    await running.close();
    running = await listenApp(routes, ['server.trusted_proxies=loopback', ...pki.tlsSets()]);
    expect((await getTls(running.port, '/proto', {})).body).toBe('https');
    expect((await getTls(running.port, '/proto', { 'x-forwarded-proto': 'http' })).body).toBe('http');
    expect((await getTls(running.port, '/proto', { 'x-forwarded-proto': 'gopher' })).body).toBe('https');
  });
});

describe("the span's url.scheme", () => {
  async function tracedSchemes(sets: string[], xfp: string): Promise<unknown[]> {
    const t = memoryTracer();
    running = await listenApp(routes, sets, { tracer: t.tracer });
    await over1(xfp);
    await over2(xfp);
    const spans = await until((): ReadableSpan[] | undefined => {
      const done = t.exporter.getFinishedSpans();
      return done.length >= 2 ? done : undefined;
    }, '2 spans');
    return spans.map((s) => s.attributes['url.scheme']);
  }

  it("is the trusted proxy's X-Forwarded-Proto (HTTP/1.1 and h2c)", async () => {
    expect(await tracedSchemes(['server.trusted_proxies=loopback'], 'https')).toEqual(['https', 'https']);
  });

  it('is the socket scheme when the peer is not trusted', async () => {
    expect(await tracedSchemes([], 'https')).toEqual(['http', 'http']);
  });
});
