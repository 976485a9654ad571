/**
 * `server.limits.send_timeout` on HTTP/1.1: the log line of a connection
 * closed because its client stopped reading names the request whose answer
 * was stuck (`request_id`, its `x-request-id`), as the HTTP/2 line does.
 */
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { rawConnect, type Served, serve } from './harness.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

/**
 * On a keep-alive connection: one small answer read whole (id `first-1`),
 * then `path` asked for as `id` and never read; the server's send-timeout line.
 */
async function stallOn(socket: Socket, path: string, id: string) {
  socket.on('error', () => {});
  let got = '';
  const first = new Promise<void>((resolve) => {
    const onData = (d: Buffer) => {
      got += d.toString('latin1');
      if (!got.endsWith('protocol 1.1')) return;
      socket.off('data', onData);
      resolve();
    };
    socket.on('data', onData);
  });
  socket.write('GET / HTTP/1.1\r\nhost: x\r\nx-request-id: first-1\r\n\r\n');
  await first;
  socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\nx-request-id: ${id}\r\n\r\n`);
  socket.pause(); // what the kernel buffers hold is all that goes out
  await until(() => served!.http.connections === 0 || undefined, 'the connection closed by the server');
  socket.destroy();
  const logged = served!.logs.find((l) => l.code === 'HYP_E_SEND_TIMEOUT');
  expect(Number(logged?.pending_bytes)).toBeGreaterThan(0);
  return logged;
}

describe('the HTTP/1.1 send-timeout log line', () => {
  // One chunk (c.text: the head written in one call) and a stream (c.stream, through c.res).
  for (const path of ['/big?bytes=33554432', '/big-stream?bytes=33554432']) {
    it(`carries the request id of the answer stuck on the connection (${path.split('?')[0]})`, async () => {
      served = await serve(['server.limits.send_timeout=400ms']);
      const logged = await stallOn(await rawConnect(served.port), path, 'slow-reader-1');
      expect(logged?.request_id).toBe('slow-reader-1');
    });
  }

  it('carries it over TLS too', async () => {
    served = await serve(['server.limits.send_timeout=400ms', ...pki.tlsSets()]);
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: served.port,
      ca: pki.read(pki.caCert),
      servername: 'localhost',
      ALPNProtocols: ['http/1.1'],
    });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    await until(() => served!.http.connections === 1 || undefined, 'the connection at the server');
    const logged = await stallOn(socket as unknown as Socket, '/big?bytes=33554432', 'slow-tls-1');
    expect(logged?.request_id).toBe('slow-tls-1');
  });
});
