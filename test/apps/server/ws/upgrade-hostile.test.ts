/**
 * Hostile upgrade requests through the App's `upgrade` listener: each gets a
 * clear HTTP answer, never crashes the worker (no uncaught exception, no
 * unhandled rejection) and never leaves a socket open.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import type { HubOptions } from '../../../../apps/server/ws/hub.js';
import { handshakeKey, openSockets, rawExchange, upgradeRequest } from './helpers.js';

let server: Server | undefined;
let app: App | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await app?.shutdown();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  app = undefined;
});

async function start(options: HubOptions = {}): Promise<number> {
  app = new App();
  app.websocket('/ws', { pingIntervalMs: 0, ...options });
  server = createServer(app.handle);
  server.on('upgrade', app.handleUpgrade);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

function upgrade(line: string, extra = ''): string {
  return upgradeRequest(line, extra);
}

/** Sends `request` and resolves with the answer's head and body once the server ends; this side never closes first. */
function send(port: number, request: string): Promise<string> {
  const { socket, answer } = rawExchange(port, request);
  sockets.push(socket);
  return answer;
}

describe('upgrade request lines that are not HTTP/1.1', () => {
  it('answers 505 HYP_E_HTTP_VERSION to `HTTP/2.0` and HTTP/0.9, and 400 to HTTP/1.0, without running authorize', async () => {
    let authorized = 0;
    const port = await start({
      authorize: () => {
        authorized++;
        return true;
      },
    });
    for (const line of ['GET /ws HTTP/2.0', 'GET /ws', 'GET /elsewhere HTTP/2.0']) {
      const answer = await send(port, upgrade(line));
      expect(answer, line).toMatch(/^HTTP\/1\.1 505 /);
      expect(answer, line).toContain('"code":"HYP_E_HTTP_VERSION"');
    }
    const answer = await send(port, upgrade('GET /ws HTTP/1.0'));
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    expect(answer).toContain('websocket upgrade needs HTTP/1.1');
    expect(authorized).toBe(0);
    expect(app!.websockets.get('/ws')!.clients()).toBe(0);
    expect(await openSockets(server!)).toBe(0);
  });
});

describe('refused upgrades', () => {
  it('a peer that resets right after asking for an unknown path does not make the socket throw', async () => {
    const port = await start();
    const errors: unknown[] = [];
    const onError = (err: unknown) => errors.push(err);
    process.on('uncaughtException', onError);
    try {
      // a large head: the 404 is written after the reset has arrived
      const pad = `X-Pad: ${'p'.repeat(8000)}\r\n`;
      for (let i = 0; i < 20; i++) {
        await new Promise<void>((resolve) => {
          const socket = connect(port, '127.0.0.1', () => {
            socket.write(upgrade('GET /nope HTTP/1.1', pad), () => {
              socket.resetAndDestroy();
              resolve();
            });
          });
          socket.on('error', () => {});
        });
      }
      await new Promise((r) => setTimeout(r, 100));
      expect(errors).toEqual([]);
      expect(await openSockets(server!)).toBe(0);
    } finally {
      process.off('uncaughtException', onError);
    }
  });

  it('every refusal is answered and its socket closed by the server, though the client keeps its side open', async () => {
    const port = await start({
      authorize: (req) => {
        const how = req.headers['x-how'];
        if (how === 'false') return false;
        if (how === 'throw') throw new Error('boom');
        if (how === 'reject') return Promise.reject(new Error('boom'));
        return true;
      },
    });
    const cases: Array<[string, RegExp]> = [
      [upgrade('GET /nope HTTP/1.1'), /^HTTP\/1\.1 404 /],
      [upgrade('GET /ws/x HTTP/1.1'), /^HTTP\/1\.1 404 /],
      [
        upgrade('GET /ws HTTP/1.1', 'Origin: http://evil.example\r\n'),
        /^HTTP\/1\.1 403 [\s\S]*HYP_E_WS_ORIGIN/,
      ],
      [upgrade('GET /ws HTTP/1.1', 'X-How: false\r\n'), /^HTTP\/1\.1 403 [\s\S]*HYP_E_WS_FORBIDDEN/],
      [upgrade('GET /ws HTTP/1.1', 'X-How: throw\r\n'), /^HTTP\/1\.1 401 [\s\S]*HYP_E_WS_UNAUTHORIZED/],
      [upgrade('GET /ws HTTP/1.1', 'X-How: reject\r\n'), /^HTTP\/1\.1 401 [\s\S]*HYP_E_WS_UNAUTHORIZED/],
      [upgrade('GET /ws HTTP/1.1').replace(handshakeKey, 'garbage'), /^HTTP\/1\.1 400 /],
      [upgrade('GET /ws HTTP/1.1', `Sec-WebSocket-Key: ${handshakeKey}\r\n`), /^HTTP\/1\.1 400 /],
      [upgrade('GET /ws HTTP/1.1', 'Sec-WebSocket-Version: 8\r\n'), /^HTTP\/1\.1 400 /],
      [
        upgrade('GET /ws HTTP/1.1').replace('Upgrade: websocket', 'Upgrade: WebSocket, foo'),
        /^HTTP\/1\.1 400 /,
      ],
      [upgrade('POST /ws HTTP/1.1'), /^HTTP\/1\.1 405 /],
      [upgrade('GET /ws?client_id=' + 'a'.repeat(300) + ' HTTP/1.1'), /^HTTP\/1\.1 400 /],
    ];
    for (const [request, expected] of cases) {
      expect(await send(port, request), request.split('\r\n')[0]).toMatch(expected);
    }
    expect(await openSockets(server!)).toBe(0);
    expect(app!.websockets.get('/ws')!.clients()).toBe(0);
  });

  it('an authorize hook returning a clientId that is not a string refuses 500, no unhandled rejection', async () => {
    const port = await start({ authorize: () => ({ clientId: 42 as unknown as string }) });
    const answer = await send(port, upgrade('GET /ws HTTP/1.1'));
    expect(answer).toMatch(/^HTTP\/1\.1 500 [\s\S]*HYP_E_INTERNAL/);
    expect(app!.websockets.get('/ws')!.clients()).toBe(0);
    expect(await openSockets(server!)).toBe(0);
  });
});
