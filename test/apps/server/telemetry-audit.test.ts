/**
 * HTTP metrics and server spans against hostile clients: what a client
 * sends (headers, methods, trace context) must not grow span attributes or
 * label sets without bound, and a request the client gives up on still ends
 * its span and leaves the in-flight gauge.
 */

import { request as httpRequest } from 'node:http';
import { connect as connectHttp2, createServer as createHttp2Server } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../apps/server/app.js';
import { maxAttributeLength } from '../../../apps/server/telemetry/tracing.js';
import { until } from '../../helpers/supervisor.js';
import { memoryTracer } from '../../helpers/tracing.js';
import { rawExchange, type Served, serve } from './serve.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('server spans: what the client sends', () => {
  it('bounds the attributes taken from headers and the request target (an 8 KB user-agent)', async () => {
    const t = memoryTracer();
    served = await serve((app) => app.get('/files/*', (c) => c.text('ok')), { tracer: t.tracer });
    const longPath = `/files/${'p'.repeat(4000)}`;
    const { port } = new URL(served.url);
    const answer = await rawExchange(
      served.url,
      `GET ${longPath} HTTP/1.1\r\nhost: ${'h'.repeat(3000)}.example:${port}\r\n` +
        `user-agent: ${'u'.repeat(8192)}\r\nconnection: close\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 200/);
    const span = await until(() => t.exporter.getFinishedSpans()[0], 'the span');
    for (const key of ['user_agent.original', 'url.path', 'server.address'] as const) {
      const value = span.attributes[key];
      expect(typeof value, key).toBe('string');
      expect((value as string).length, key).toBeLessThanOrEqual(maxAttributeLength);
      expect((value as string).length, key).toBeGreaterThan(100);
    }
  });

  it('reports server.port only for a Host port that is a port', async () => {
    const t = memoryTracer();
    served = await serve((app) => app.get('/x', (c) => c.text('x')), { tracer: t.tracer });
    for (const host of [`example:${'9'.repeat(400)}`, 'example:70000', 'example:8443']) {
      const answer = await rawExchange(
        served.url,
        `GET /x HTTP/1.1\r\nhost: ${host}\r\nconnection: close\r\n\r\n`,
      );
      expect(answer).toMatch(/^HTTP\/1\.1 200/);
    }
    const spans = await until(
      () => (t.exporter.getFinishedSpans().length === 3 ? t.exporter.getFinishedSpans() : undefined),
      'three spans',
    );
    expect(spans.map((s) => s.attributes['server.port'])).toEqual([undefined, undefined, 8443]);
    expect(spans.map((s) => s.attributes['server.address'])).toEqual(['example', 'example', 'example']);
  });

  it('starts a new trace for a hostile traceparent and answers normally', async () => {
    const t = memoryTracer();
    served = await serve((app) => app.get('/x', (c) => c.text('x')), { tracer: t.tracer });
    const id = '4bf92f3577b34da6a3ce929d0e0e4736';
    const hostile = [
      `00-${id}-00f067aa0ba902b7-01-extra`, // version 00 has exactly four fields
      `ff-${id}-00f067aa0ba902b7-01`, // version ff is invalid
      `00-${'0'.repeat(32)}-00f067aa0ba902b7-01`, // all-zero trace id
      `00-${id}-${'0'.repeat(16)}-01`, // all-zero parent id
      `00-${id.toUpperCase()}-00F067AA0BA902B7-01`,
      `00-${id}-00f067aa0ba902b7-01, 00-${id}-00f067aa0ba902b7-01`,
      `${'-'.repeat(6000)}`,
    ];
    for (const traceparent of hostile) {
      const res = await fetch(`${served.url}/x`, {
        headers: { traceparent, tracestate: 'a=b,'.repeat(1000) },
      });
      expect(res.status).toBe(200);
      await res.text();
    }
    const spans = await until(
      () =>
        t.exporter.getFinishedSpans().length === hostile.length ? t.exporter.getFinishedSpans() : undefined,
      'every span',
    );
    for (const span of spans) {
      expect(span.spanContext().traceId).not.toBe(id);
      expect(span.parentSpanContext).toBeUndefined();
    }
  });
});

describe('a request the client gives up on', () => {
  it('HTTP/1.1: its span ends (error.type aborted) and it leaves the in-flight gauge', async () => {
    const t = memoryTracer();
    const registry = new Registry();
    let entered: () => void = () => {};
    const inside = new Promise<void>((r) => {
      entered = r;
    });
    served = await serve(
      (app) =>
        app.get('/hang', async (c) => {
          entered();
          await new Promise<void>((r) => c.req.once('close', r));
        }),
      { tracer: t.tracer, registry },
    );
    const { port } = new URL(served.url);
    const req = httpRequest({ host: '127.0.0.1', port, path: '/hang' });
    req.on('error', () => {});
    req.end();
    await inside;
    req.destroy();
    const span = await until(() => t.exporter.getFinishedSpans()[0], 'the span ended');
    expect(span.attributes['error.type']).toBe('aborted');
    // No response went out: no status on the span, 499 (client closed request) in the metrics.
    expect(span.attributes['http.response.status_code']).toBeUndefined();
    await until(
      async () => /^hyp_http_requests_in_flight 0$/m.test(await registry.metrics()) || undefined,
      'in-flight back to 0',
    );
    const text = await registry.metrics();
    expect(text).toContain('hyp_http_requests_total{method="GET",route="/hang",status="499"} 1');
    expect(text).not.toContain('status="200"');
  });

  it('a response whose head went out keeps its status when the client leaves mid-body', async () => {
    const t = memoryTracer();
    const registry = new Registry();
    served = await serve(
      (app) =>
        app.get('/events', (c) => {
          const sse = c.sse();
          sse.send({ data: 'first' });
        }),
      { tracer: t.tracer, registry },
    );
    const { port } = new URL(served.url);
    await new Promise<void>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: '/events' }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => {});
      req.on('close', () => reject(new Error('closed before the first event')));
      req.end();
    });
    const span = await until(() => t.exporter.getFinishedSpans()[0], 'the span ended');
    expect([span.attributes['http.response.status_code'], span.attributes['error.type']]).toEqual([
      200,
      'aborted',
    ]);
    expect(await registry.metrics()).toContain(
      'hyp_http_requests_total{method="GET",route="/events",status="200"} 1',
    );
  });

  it('HTTP/2: a stream reset by the client ends its span, and a made-up :method is _OTHER everywhere', async () => {
    const t = memoryTracer();
    const registry = new Registry();
    const app = new App({ tracer: t.tracer, registry });
    let entered: () => void = () => {};
    const inside = new Promise<void>((r) => {
      entered = r;
    });
    app.get('/hang', async (c) => {
      entered();
      await new Promise<void>((r) => c.req.once('close', r));
    });
    const server = createHttp2Server();
    server.on('stream', (stream, headers, _flags, raw) => app.handleStream(stream, headers, raw));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const session = connectHttp2(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      const stream = session.request({ ':path': '/hang' });
      stream.on('error', () => {});
      await inside;
      stream.close(0x8); // CANCEL
      const span = await until(() => t.exporter.getFinishedSpans()[0], 'the span ended');
      expect(span.attributes['error.type']).toBe('aborted');
      expect(span.attributes['http.response.status_code']).toBeUndefined();
      expect(await registry.metrics()).toContain(
        'hyp_http_requests_total{method="GET",route="/hang",status="499"} 1',
      );

      const method = `X${'M'.repeat(5000)}`;
      const status = await new Promise((resolve, reject) => {
        const odd = session.request({ ':path': '/hang', ':method': method });
        odd.on('response', (h) => resolve(h[':status']));
        odd.on('error', reject);
        odd.resume();
        odd.end();
      });
      expect(status).toBe(405); // /hang is served for GET only
      const other = await until(() => t.exporter.getFinishedSpans()[1], 'the second span');
      expect(other.name).toBe('HTTP');
      expect(other.attributes['http.request.method']).toBe('_OTHER');
      expect(String(other.attributes['http.request.method_original']).length).toBeLessThanOrEqual(
        maxAttributeLength,
      );
      const text = await registry.metrics();
      expect(text).not.toContain('MMMM');
      expect(text).toMatch(/hyp_http_requests_total\{method="_OTHER",route="[^"]*",status="405"\} 1/);
    } finally {
      session.close();
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});

describe('HTTP metrics: one series per label set', () => {
  it('a HEAD route added after HEAD requests were served by GET: one HEAD series, not two', async () => {
    const registry = new Registry();
    served = await serve((app) => app.get('/a', (c) => c.text('a')), { registry });
    const head = async () => {
      const res = await fetch(`${served!.url}/a`, { method: 'HEAD' });
      expect(res.status).toBe(200);
      await res.arrayBuffer();
    };
    await head();
    served.app.head('/a', (c) => c.text('h'));
    await head();
    const line = /^hyp_http_requests_total\{method="HEAD",route="\/a",status="200"\} (\d+)$/gm;
    const counted = await until(async () => {
      const found = [...(await registry.metrics()).matchAll(line)].map((m) => Number(m[1]));
      return found.reduce((a, b) => a + b, 0) === 2 && found;
    }, 'both HEAD requests counted');
    expect(counted).toEqual([2]);
  });
});
