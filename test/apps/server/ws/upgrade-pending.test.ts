/**
 * Upgrades waiting on an async `authorize` hook, and upgrade requests that
 * carry a body: a hung hook is bounded (`authorizeTimeoutMs`), a client that
 * leaves while the hook runs is never connected, a drain refuses the waiting
 * upgrades at once, and a body is refused before the handshake.
 */
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { afterEach, describe, expect, it } from 'vitest';
import type { Authorization, HubOptions } from '../../../../apps/server/ws/hub.js';
import { hubOptionsFromConfig } from '../../../../apps/server/ws/options.js';
import { loadConfig } from '../../../../supervisor/config/load.js';
import {
  eventually,
  fakeLog,
  openSockets,
  type RawExchange,
  rawExchange,
  type Served,
  serveHub,
  upgradeRequest,
} from './helpers.js';

let served: Served | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await served?.close();
  served = undefined;
});

async function start(options: HubOptions): Promise<number> {
  served = await serveHub(options);
  return (served.server.address() as AddressInfo).port;
}

function upgrade(extra = '', line = 'GET /ws HTTP/1.1'): string {
  return upgradeRequest(line, extra);
}

function open(port: number, request: string): RawExchange {
  const exchange = rawExchange(port, request);
  sockets.push(exchange.socket);
  return exchange;
}

/** An authorize hook that never settles on its own; `release` settles every pending call. */
function gate(): {
  authorize: () => Promise<Authorization | boolean>;
  calls: () => number;
  release: (v: Authorization | boolean) => void;
} {
  let calls = 0;
  const waiting: Array<(v: Authorization | boolean) => void> = [];
  return {
    authorize: () => {
      calls++;
      return new Promise((resolve) => waiting.push(resolve));
    },
    calls: () => calls,
    release: (v) => {
      for (const w of waiting.splice(0)) w(v);
    },
  };
}

describe('websocket.authorize_timeout', () => {
  it('defaults to 10 s, 0 turns it off, and reaches the hub options', () => {
    const { config } = loadConfig({ env: {}, cwd: tmpdir() });
    expect(config.websocket.authorize_timeout).toBe('10s');
    const noIpc = { send: undefined } as unknown as NodeJS.Process;
    expect(hubOptionsFromConfig(config, { ipc: noIpc }).authorizeTimeoutMs).toBe(10_000);
    const off = loadConfig({ env: { HYP_WEBSOCKET_AUTHORIZE_TIMEOUT: '0s' }, cwd: tmpdir() });
    expect(hubOptionsFromConfig(off.config, { ipc: noIpc }).authorizeTimeoutMs).toBe(0);
  });

  it('a hung authorize hook is refused with 503 HYP_E_WS_AUTHORIZE_TIMEOUT and its socket closed', async () => {
    const g = gate();
    const connected: string[] = [];
    const port = await start({ authorize: g.authorize, authorizeTimeoutMs: 50 });
    served!.hub.onConnect((c) => {
      connected.push(c.id);
    });
    const { answer } = open(port, upgrade());
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 503 /);
    expect(text).toContain('"code":"HYP_E_WS_AUTHORIZE_TIMEOUT"');
    expect(g.calls()).toBe(1);
    // a late verdict changes nothing
    g.release(true);
    await new Promise((r) => setTimeout(r, 20));
    expect(connected).toEqual([]);
    expect(served!.hub.clients()).toBe(0);
    expect(await openSockets(served!.server)).toBe(0);
  });

  it("the timeout's warning names the path, never the query a browser puts its token in", async () => {
    const g = gate();
    const log = fakeLog();
    const port = await start({ authorize: g.authorize, authorizeTimeoutMs: 50, log });
    const { answer } = open(port, upgrade('', 'GET /ws?token=s3cret-token&client_id=a HTTP/1.1'));
    expect(await answer).toMatch(/^HTTP\/1\.1 503 /);
    const calls = (log.warn as unknown as { mock: { calls: unknown[][] } }).mock.calls;
    await eventually(() => calls.length > 0);
    const [fields, msg] = calls[0] as [Record<string, unknown>, string];
    expect(msg).toBe('websocket authorize hook timed out');
    expect(fields).toMatchObject({ path: '/ws', timeoutMs: 50 });
    // Before: { url: '/ws?token=s3cret-token&client_id=a' }
    expect(JSON.stringify(calls)).not.toContain('s3cret');
    g.release(true);
  });

  it('a client that leaves while authorize runs is never connected (no onConnect, no onDisconnect)', async () => {
    const g = gate();
    const events: string[] = [];
    const port = await start({ authorize: g.authorize, authorizeTimeoutMs: 0 });
    served!.hub.onConnect((c) => {
      events.push(`connect ${c.id}`);
    });
    served!.hub.onDisconnect((c) => {
      events.push(`disconnect ${c.id}`);
    });
    const { socket } = open(port, upgrade());
    await eventually(() => g.calls() === 1);
    socket.end();
    // the server notices the peer left and lets the socket go
    expect(await openSockets(served!.server)).toBe(0);
    g.release({ clientId: 'gone' });
    await new Promise((r) => setTimeout(r, 50));
    expect(events).toEqual([]);
    expect(served!.hub.clients()).toBe(0);
  });

  it('a hook that settles in time still upgrades, and bytes sent early reach the connection', async () => {
    const g = gate();
    const port = await start({ authorize: g.authorize, authorizeTimeoutMs: 10_000 });
    const { socket } = open(port, upgrade());
    await eventually(() => g.calls() === 1);
    let got = '';
    socket.on('data', (d: string) => {
      got += d;
    });
    // a masked ping ("hi", zero mask) sent before the 101: answered by a pong once connected
    socket.write(Buffer.from([0x89, 0x82, 0, 0, 0, 0, 0x68, 0x69]));
    await new Promise((r) => setTimeout(r, 20));
    g.release({ clientId: 'alice' });
    await eventually(() => got.includes('\x8a\x02hi'));
    expect(got).toMatch(/^HTTP\/1\.1 101 /);
    expect(served!.hub.client('alice')).toBeDefined();
  });
});

describe('drain with upgrades waiting on authorize', () => {
  it('refuses them at once with 503 HYP_E_DRAINING; the hook settling later connects nothing', async () => {
    const g = gate();
    const connected: string[] = [];
    const port = await start({ authorize: g.authorize, authorizeTimeoutMs: 0 });
    served!.hub.onConnect((c) => {
      connected.push(c.id);
    });
    const first = open(port, upgrade());
    const second = open(port, upgrade());
    await eventually(() => g.calls() === 2);
    const drained = served!.hub.drain({ spreadMs: 0 });
    for (const { answer } of [first, second]) {
      const text = await answer;
      expect(text).toMatch(/^HTTP\/1\.1 503 /);
      expect(text).toContain('"code":"HYP_E_DRAINING"');
    }
    await drained;
    g.release(true);
    await new Promise((r) => setTimeout(r, 20));
    expect(connected).toEqual([]);
    // and a new upgrade during drain is refused the same way, without running the hook
    const late = await open(port, upgrade()).answer;
    expect(late).toMatch(/^HTTP\/1\.1 503 [\s\S]*HYP_E_DRAINING/);
    expect(g.calls()).toBe(2);
    expect(await openSockets(served!.server)).toBe(0);
  });
});

describe('upgrade requests with a body', () => {
  for (const [name, extra, body] of [
    ['Content-Length', 'Content-Length: 5\r\n', 'hello'],
    ['Transfer-Encoding', 'Transfer-Encoding: chunked\r\n', '5\r\nhello\r\n0\r\n\r\n'],
  ] as const) {
    it(`${name}: refused with 400 HYP_E_BAD_REQUEST before the handshake and authorize`, async () => {
      let authorized = 0;
      const port = await start({
        authorize: () => {
          authorized++;
          return true;
        },
      });
      const text = await open(port, upgrade(extra) + body).answer;
      expect(text).toMatch(/^HTTP\/1\.1 400 /);
      expect(text).toContain('"code":"HYP_E_BAD_REQUEST"');
      expect(text).toContain('cannot carry a body');
      expect(authorized).toBe(0);
      expect(served!.hub.clients()).toBe(0);
      expect(await openSockets(served!.server)).toBe(0);
    });
  }

  it('Content-Length: 0 is no body and upgrades', async () => {
    const port = await start({});
    const { socket } = open(port, upgrade('Content-Length: 0\r\n'));
    let got = '';
    socket.on('data', (d: string) => {
      got += d;
    });
    await eventually(() => got.includes('\r\n\r\n'));
    expect(got).toMatch(/^HTTP\/1\.1 101 /);
  });
});

describe('bytes sent while authorize runs', () => {
  it('more than 64 KiB before the 101 is refused with 400 and never connected', async () => {
    const g = gate();
    const port = await start({ authorize: g.authorize, authorizeTimeoutMs: 0 });
    const { socket, answer } = open(port, upgrade());
    await eventually(() => g.calls() === 1);
    socket.write(Buffer.alloc(64 * 1024 + 1, 0x81));
    const text = await answer;
    expect(text).toMatch(/^HTTP\/1\.1 400 [\s\S]*HYP_E_BAD_REQUEST/);
    g.release(true);
    await new Promise((r) => setTimeout(r, 20));
    expect(served!.hub.clients()).toBe(0);
    expect(await openSockets(served!.server)).toBe(0);
  });
});
