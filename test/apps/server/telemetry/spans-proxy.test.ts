/** Through a trusted proxy: the span's client.address is the client X-Forwarded-For names. */
import { Registry } from 'prom-client';
import { expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { until } from '../../../helpers/supervisor.js';
import { memoryTracer } from '../../../helpers/tracing.js';
import { configWith, get1, memoryLog } from '../http/harness.js';

it('behind server.trusted_proxies: client.address is the forwarded client, network.peer.address the proxy', async () => {
  const t = memoryTracer();
  const config = configWith(['server.trusted_proxies=127.0.0.1']);
  const { log } = memoryLog();
  const app = new App({ config, log, registry: new Registry(), tracer: t.tracer });
  app.get('/ip', (c) => c.text(c.clientIp));
  const http = new HttpServer({
    config,
    handler: app.handle,
    streamHandler: app.handleStream,
    registry: new Registry(),
    log,
  });
  const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
  try {
    expect((await get1(port, '/ip', { 'x-forwarded-for': '203.0.113.7' })).body).toBe('203.0.113.7');
    const span = await until(() => t.exporter.getFinishedSpans()[0], 'the span');
    expect(span.attributes).toMatchObject({
      'client.address': '203.0.113.7',
      'network.peer.address': '127.0.0.1',
    });
  } finally {
    await http.drain(Date.now() + 2000);
  }
});
