/**
 * Server spans as an OpenTelemetry user reads them, through hyp's own
 * HttpServer (HTTP/1.1, h2c prior knowledge, TLS with ALPN h2 and
 * http/1.1): names, kind, the HTTP semantic-convention attributes, status
 * ERROR on 5xx only, and W3C trace context in.
 */
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { ReadableSpan } from '@opentelemetry/sdk-trace-base';
import type { Registry } from 'prom-client';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { HypError } from '../../../../supervisor/errors.js';
import { until } from '../../../helpers/supervisor.js';
import { memoryTracer } from '../../../helpers/tracing.js';
import { type Answer, closeSession, connect2, get1, get2, listenApp } from '../http/harness.js';
import { makePki, type TestPki } from '../tls/certs.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

interface Traced {
  port: number;
  registry: Registry;
  spans(n: number): Promise<ReadableSpan[]>;
  close(): Promise<void>;
}

let running: Traced | undefined;
afterEach(async () => {
  await running?.close();
  running = undefined;
});

async function traced(sets: string[] = []): Promise<Traced> {
  const t = memoryTracer();
  const served = await listenApp(
    (app) => {
      app.get('/users/:id', (c) => c.json({ id: c.param('id') }));
      app.get('/ip', (c) => c.text(c.clientIp));
      app.get('/teapot', () => {
        throw new HypError('HYP_E_FORBIDDEN');
      });
      app.get('/boom', () => {
        throw new Error('boom');
      });
      app.mount('/legacy', (_req, res) => {
        res.end('legacy');
      });
    },
    sets,
    { tracer: t.tracer },
  );
  return {
    port: served.port,
    registry: served.registry,
    spans: (n) =>
      until(() => {
        const done = t.exporter.getFinishedSpans();
        return done.length >= n ? done : undefined;
      }, `${n} spans`),
    close: served.close,
  };
}

function getTls(port: number, path: string): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      {
        host: '127.0.0.1',
        port,
        path,
        ca: pki.read(pki.caCert),
        agent: false,
        ALPNProtocols: ['http/1.1'],
      },
      (res) => {
        res.resume();
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: '', httpVersion: res.httpVersion }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** One HTTP/1.1 request of any method on a fresh connection; resolves with the status. */
function send(port: number, method: string, path: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('server span attributes by protocol', () => {
  it('HTTP/1.1 cleartext', async () => {
    running = await traced();
    await get1(running.port, '/users/7?token=secret', { 'user-agent': 'spec/1' });
    const [span] = await running.spans(1);
    expect(span!.name).toBe('GET /users/:id');
    expect(span!.kind).toBe(1);
    expect(span!.attributes).toMatchObject({
      'http.request.method': 'GET',
      'url.path': '/users/7',
      'url.scheme': 'http',
      'http.route': '/users/:id',
      'http.response.status_code': 200,
      'server.address': '127.0.0.1',
      'server.port': running.port,
      'network.protocol.version': '1.1',
      'user_agent.original': 'spec/1',
    });
    expect(JSON.stringify(span!.attributes)).not.toContain('secret');
  });

  it('h2c prior knowledge', async () => {
    running = await traced();
    const session = await connect2(`http://127.0.0.1:${running.port}`);
    try {
      await get2(session, '/users/7', { 'user-agent': 'spec/2' });
    } finally {
      await closeSession(session);
    }
    const [span] = await running.spans(1);
    expect(span!.name).toBe('GET /users/:id');
    expect(span!.attributes).toMatchObject({
      'url.scheme': 'http',
      'server.address': '127.0.0.1',
      'server.port': running.port,
      'user_agent.original': 'spec/2',
    });
  });

  it('TLS: ALPN h2 and http/1.1', async () => {
    running = await traced(pki.tlsSets());
    const session = await connect2(`https://127.0.0.1:${running.port}`, { ca: pki.read(pki.caCert) });
    try {
      expect((await get2(session, '/users/1')).status).toBe(200);
    } finally {
      await closeSession(session);
    }
    expect((await getTls(running.port, '/users/2')).status).toBe(200);
    const spans = await running.spans(2);
    for (const span of spans) expect(span.attributes['url.scheme']).toBe('https');
  });
});

describe('server span names and status', () => {
  it('404, 405, OPTIONS, HEAD, a mounted app, 4xx and 5xx: span names, status, metric labels', async () => {
    running = await traced();
    const asked: Array<[string, string]> = [
      ['GET', '/nothing'],
      ['POST', '/users/1'],
      ['OPTIONS', '/users/1'],
      ['HEAD', '/users/1'],
      ['GET', '/legacy/a/b'],
      ['GET', '/teapot'],
      ['GET', '/boom'],
    ];
    const answers: number[] = [];
    for (const [method, path] of asked) answers.push(await send(running.port, method, path));
    expect(answers).toEqual([404, 405, 204, 200, 200, 403, 500]);
    const spans = await running.spans(asked.length);
    expect(spans.map((s) => s.name)).toEqual([
      'GET',
      'POST',
      'OPTIONS',
      'HEAD /users/:id',
      'GET /legacy/*',
      'GET /teapot',
      'GET /boom',
    ]);
    // ERROR on 5xx only; error.type with it.
    expect(spans.map((s) => s.status.code)).toEqual([0, 0, 0, 0, 0, 0, 2]);
    expect(spans.map((s) => s.attributes['error.type'])).toEqual([...new Array(6).fill(undefined), '500']);
    expect(spans.map((s) => s.attributes['http.route'])).toEqual([
      undefined,
      undefined,
      undefined,
      '/users/:id',
      '/legacy/*',
      '/teapot',
      '/boom',
    ]);
    const text = await until(async () => {
      const t = await running!.registry.metrics();
      return /route="\/boom"/.test(t) ? t : undefined;
    }, 'the last request counted');
    const counted = [...text.matchAll(/^hyp_http_requests_total\{(.*)\} 1$/gm)].map((m) => m[1]).sort();
    expect(counted).toEqual(
      [
        'method="GET",route="(not found)",status="404"',
        'method="POST",route="(not found)",status="405"',
        'method="OPTIONS",route="(not found)",status="204"',
        'method="HEAD",route="/users/:id",status="200"',
        'method="GET",route="/legacy/*",status="200"',
        'method="GET",route="/teapot",status="403"',
        'method="GET",route="/boom",status="500"',
      ].sort(),
    );
  });

  it('traceparent in: parent and tracestate; an invalid one starts a new trace', async () => {
    running = await traced();
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    await get1(running.port, '/users/1', {
      traceparent: `00-${traceId}-00f067aa0ba902b7-01`,
      tracestate: 'congo=t61rcWkgMzE,rojo=00f067aa0ba902b7',
    });
    await get1(running.port, '/users/2', { traceparent: `00-${'0'.repeat(32)}-00f067aa0ba902b7-01` });
    await get1(running.port, '/users/3', { traceparent: 'garbage', tracestate: 'a=b' });
    const [good, zero, garbage] = await running.spans(3);
    expect(good!.spanContext().traceId).toBe(traceId);
    expect(good!.parentSpanContext?.spanId).toBe('00f067aa0ba902b7');
    expect(good!.parentSpanContext?.isRemote).toBe(true);
    expect(good!.spanContext().traceState?.serialize()).toBe('congo=t61rcWkgMzE,rojo=00f067aa0ba902b7');
    for (const s of [zero!, garbage!]) {
      expect(s.parentSpanContext).toBeUndefined();
      expect(s.spanContext().traceId).not.toBe('0'.repeat(32));
    }
  });
});

describe('spans behind a trusted proxy', () => {
  it('client.address is the client X-Forwarded-For names, network.peer.address the proxy', async () => {
    running = await traced(['server.trusted_proxies=127.0.0.1']);
    expect((await get1(running.port, '/ip', { 'x-forwarded-for': '203.0.113.7' })).body).toBe('203.0.113.7');
    const [span] = await running.spans(1);
    expect(span!.attributes).toMatchObject({
      'client.address': '203.0.113.7',
      'network.peer.address': '127.0.0.1',
    });
  });
});
