/**
 * `client.address` on a server span behind a proxy: the original client
 * (what `c.clientIp` resolves through `server.trusted_proxies`), with the
 * proxy as `network.peer.address`, as the HTTP semantic conventions define
 * them; the socket's peer when there is no proxy.
 */
import type { IncomingMessage } from 'node:http';
import { describe, expect, it } from 'vitest';
import { HttpTracing } from '../../../../apps/server/telemetry/tracing.js';
import { memoryTracer } from '../../../helpers/tracing.js';

function request(peer: string): IncomingMessage {
  return {
    headers: { host: 'api.example.com', 'x-forwarded-for': '203.0.113.7' },
    socket: { remoteAddress: peer },
    httpVersion: '1.1',
  } as unknown as IncomingMessage;
}

function attributes(clientAddress: string | undefined) {
  const t = memoryTracer();
  const tracing = new HttpTracing(t.tracer);
  tracing.resolve();
  const { span } = tracing.start(request('10.0.0.2'), 'GET', '/x', '/x', clientAddress);
  tracing.end(span, 200, false);
  return t.exporter.getFinishedSpans()[0]!.attributes;
}

describe('server span client.address', () => {
  it('is the client behind the proxy when hyp resolved one, the proxy being network.peer.address', () => {
    expect(attributes('203.0.113.7')).toMatchObject({
      'client.address': '203.0.113.7',
      'network.peer.address': '10.0.0.2',
    });
  });

  it("is the socket's peer without a proxy (and no network.peer.address repeating it)", () => {
    for (const given of [undefined, '10.0.0.2', '']) {
      const attrs = attributes(given);
      expect(attrs['client.address']).toBe('10.0.0.2');
      expect(attrs['network.peer.address']).toBeUndefined();
    }
  });
});
