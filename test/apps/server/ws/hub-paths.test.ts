/**
 * Upgrades find their hub under the same path policy as HTTP routes
 * (`server.router.ignore_trailing_slash`, `server.router.case_sensitive`):
 * a client that reaches `/users/` also reaches the hub on `/ws` at `/ws/`.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Value } from '@sinclair/typebox/value';
import { afterEach, describe, expect, it } from 'vitest';
import WebSocket from 'ws';
import { App } from '../../../../apps/server/app.js';
import { type Config, ConfigSchema } from '../../../../supervisor/config/schema.js';

let server: Server | undefined;
let app: App | undefined;
afterEach(async () => {
  await app?.shutdown();
  server?.closeAllConnections();
  await new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
  server = undefined;
  app = undefined;
});

async function start(router: { ignore_trailing_slash?: boolean; case_sensitive?: boolean }, hubPath = '/ws') {
  const config = Value.Default(ConfigSchema, { server: { router } }) as Config;
  app = new App({ config });
  app.get('/users', (c) => c.text('users'));
  app.websocket(hubPath, { pingIntervalMs: 0 });
  server = createServer(app.handle);
  server.on('upgrade', app.handleUpgrade);
  await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
  return (server.address() as AddressInfo).port;
}

/** 101 → 'open', else the refusal's status code. */
function upgradeStatus(port: number, path: string): Promise<'open' | number> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://127.0.0.1:${port}${path}`);
    ws.on('open', () => {
      ws.close();
      resolve('open');
    });
    ws.on('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
      ws.terminate();
    });
    ws.on('error', (err) => reject(err));
  });
}

async function httpStatus(port: number, path: string): Promise<number> {
  const res = await fetch(`http://127.0.0.1:${port}${path}`);
  await res.arrayBuffer();
  return res.status;
}

describe('hub paths follow the router policy', () => {
  it('default policy: a trailing slash reaches the hub, as it reaches routes', async () => {
    const port = await start({});
    expect(await httpStatus(port, '/users/')).toBe(200);
    expect(await upgradeStatus(port, '/ws')).toBe('open');
    expect(await upgradeStatus(port, '/ws/')).toBe('open');
    expect(await upgradeStatus(port, '/ws/?client_id=a')).toBe('open');
    // Case-sensitive by default, like routes.
    expect(await httpStatus(port, '/Users')).toBe(404);
    expect(await upgradeStatus(port, '/WS')).toBe(404);
    expect(await upgradeStatus(port, '/wsx')).toBe(404);
  });

  it('a hub mounted with a trailing slash answers without one', async () => {
    const port = await start({}, '/live/');
    expect(await upgradeStatus(port, '/live')).toBe('open');
    expect(await upgradeStatus(port, '/live/')).toBe('open');
  });

  it('strict slashes: /ws/ is not the hub on /ws', async () => {
    const port = await start({ ignore_trailing_slash: false });
    expect(await httpStatus(port, '/users/')).toBe(404);
    expect(await upgradeStatus(port, '/ws')).toBe('open');
    expect(await upgradeStatus(port, '/ws/')).toBe(404);
  });

  it('case-insensitive routing reaches the hub in any case', async () => {
    const port = await start({ case_sensitive: false });
    expect(await httpStatus(port, '/USERS')).toBe(200);
    expect(await upgradeStatus(port, '/WS')).toBe('open');
    expect(await upgradeStatus(port, '/Ws/')).toBe('open');
  });

  it('hubs on two paths in one app: both mount, their metrics add up on the worker registry', async () => {
    const port = await start({});
    app!.websocket('/chat', { pingIntervalMs: 0 });
    expect(await upgradeStatus(port, '/chat')).toBe('open');
    const sockets = [
      new WebSocket(`ws://127.0.0.1:${port}/ws`),
      new WebSocket(`ws://127.0.0.1:${port}/chat`),
    ];
    await Promise.all(sockets.map((ws) => new Promise((resolve) => ws.once('open', resolve))));
    // The probe connection above closes on its own time: wait (bounded) for the count to settle.
    const open = async () => {
      const gauge = await app!.registry.getSingleMetric('hyp_ws_connections')!.get();
      return gauge.values.reduce((sum, v) => sum + v.value, 0);
    };
    for (let i = 0; i < 200 && (await open()) !== 2; i++) await new Promise((r) => setTimeout(r, 10));
    expect(await open()).toBe(2);
    for (const ws of sockets) ws.close();
  });

  it('two hubs the policy cannot tell apart are refused at mount', () => {
    app = new App();
    app.websocket('/ws', { pingIntervalMs: 0 });
    expect(() => app!.websocket('/ws/', { pingIntervalMs: 0 })).toThrow(/hub on \/ws already answers/);
  });
});
