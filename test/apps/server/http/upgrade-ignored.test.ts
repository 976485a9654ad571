/**
 * `Upgrade` headers other than WebSocket — `h2c` from `curl --http2`, say —
 * are ignored (RFC 9110 §7.8): the request is answered as the HTTP/1.1
 * request it also is, as the worker wires the server. They used to get 404
 * from the WebSocket upgrade path, on every route.
 */
import { createServer } from 'node:http';
import { connect } from 'node:net';
import { Registry } from 'prom-client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { configWith } from './harness.js';

/** Node ≥ 24.9 routes Upgrade requests through `shouldUpgradeCallback`; older Node sends all of them to 'upgrade'. */
const probe = () => true;
const nativeCallback =
  createServer({ shouldUpgradeCallback: probe } as never).shouldUpgradeCallback === probe;

function exchange(port: number, request: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(request));
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      got += d;
      // One answer is all we want, whether or not the server closes.
      const end = got.indexOf('\r\n\r\n');
      const length = /\r\ncontent-length: (\d+)/i.exec(got)?.[1];
      if (end >= 0 && length !== undefined && got.length >= end + 4 + Number(length)) socket.end();
    });
    socket.on('close', () => resolve(got));
    socket.on('error', reject);
  });
}

const h2cUpgrade =
  'connection: Upgrade, HTTP2-Settings\r\nupgrade: h2c\r\nhttp2-settings: AAMAAABkAARAAAAAAAIAAAAA\r\n';

describe('Upgrade headers other than WebSocket', () => {
  let http: HttpServer;
  let port: number;
  beforeAll(async () => {
    const config = configWith([]);
    const app = new App({ config, registry: new Registry() });
    app.get('/text', (c) => c.text('hi'));
    app.post('/echo', async (c) => c.text(`got ${String(await c.body('text'))}`));
    app.websocket('/ws');
    http = new HttpServer({
      config,
      handler: app.handle,
      streamHandler: app.handleStream,
      registry: new Registry(),
    });
    http.server.on('upgrade', app.handleUpgrade); // as the worker does
    ({ port } = await http.listen({ host: '127.0.0.1', port: 0 }));
  });
  afterAll(() => http.drain(Date.now() + 2000));

  it('curl --http2 over cleartext (Upgrade: h2c): answered over HTTP/1.1, with the request id', async () => {
    const answer = await exchange(port, `GET /text HTTP/1.1\r\nhost: x\r\n${h2cUpgrade}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 200 /);
    expect(answer).toMatch(/\r\nx-request-id: [\w-]+\r\n/i);
    expect(answer).toMatch(/\r\n\r\nhi$/);
  });

  it('an unknown path with Upgrade: h2c gets the app 404, not the upgrade path', async () => {
    const answer = await exchange(port, `GET /nope HTTP/1.1\r\nhost: x\r\n${h2cUpgrade}\r\n`);
    expect(answer).toMatch(/^HTTP\/1\.1 404 /);
    expect(answer).toContain('HYP_E_NOT_FOUND');
  });

  it(`a body with Upgrade: h2c is ${nativeCallback ? 'read as usual' : 'refused 400 (this Node cannot hand it back to HTTP)'}`, async () => {
    const answer = await exchange(
      port,
      `POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 3\r\n${h2cUpgrade}\r\nabc`,
    );
    if (nativeCallback) expect(answer).toMatch(/^HTTP\/1\.1 200 [\s\S]*\r\n\r\ngot abc$/);
    else {
      expect(answer).toMatch(/^HTTP\/1\.1 400 /);
      expect(answer).toContain('HYP_E_BAD_REQUEST');
    }
  });

  it('a WebSocket handshake still upgrades', async () => {
    const answer = await new Promise<string>((resolve, reject) => {
      const socket = connect(port, '127.0.0.1', () =>
        socket.write(
          'GET /ws HTTP/1.1\r\nhost: x\r\nconnection: Upgrade\r\nupgrade: websocket\r\n' +
            'sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n',
        ),
      );
      socket.setEncoding('latin1');
      socket.once('data', (d: string) => {
        socket.destroy();
        resolve(d);
      });
      socket.on('error', reject);
    });
    expect(answer).toMatch(/^HTTP\/1\.1 101 /);
  });
});
