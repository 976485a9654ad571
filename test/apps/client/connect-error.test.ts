/**
 * A connection attempt that fails before opening is reported as a
 * `connect_error` event carrying what is known (as Socket.IO's
 * connect_error): on Node with `ws`, the HTTP status of a refused upgrade
 * and the hub's code and message from its answer, or the network error.
 * Before, a 403 from `authorize`, a 404 or a refused port showed only as
 * `close` 1006 and `reconnecting`, retried without end. The reconnect
 * policy is unchanged: the client keeps retrying and `connect()` waits.
 * Real hubs and servers in-process, loopback only.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { WebSocket as NodeWs } from 'ws';
import type { ConnectErrorEvent } from '../../../apps/client/index.js';
import { eventually } from '../server/ws/helpers.js';
import { cleanup, client, closeAll, hub } from './delivery.js';

afterEach(closeAll);

/**
 * A client recording its connect_error, close and reconnecting events in
 * order. On `ws` unless told otherwise: the client's default on Node 22+ is
 * the global WebSocket, which shows no more than a browser does.
 */
function watched(url: string, options: Parameters<typeof client>[1] = {}) {
  const c = client(url, { WebSocket: NodeWs, ...options });
  const events: string[] = [];
  const failures: ConnectErrorEvent[] = [];
  c.ws.on('connect_error', (e) => {
    failures.push(e);
    events.push('connect_error');
  });
  c.ws.on('close', (code) => events.push(`close ${code}`));
  c.ws.on('reconnecting', (attempt) => events.push(`reconnecting ${attempt}`));
  let settled = 'pending';
  void c.ws.connect().then(
    () => {
      settled = 'resolved';
    },
    (e: Error) => {
      settled = `rejected: ${e.message}`;
    },
  );
  return {
    ...c,
    events,
    failures,
    get settled() {
      return settled;
    },
  };
}

/** An HTTP server answering every upgrade with `response` (raw HTTP). */
async function refusing(response: string): Promise<string> {
  const server: Server = createServer((_req, res) => res.writeHead(404).end());
  server.on('upgrade', (_req, socket) => {
    // the client ends the attempt with a reset once it has read the answer: not an error here
    socket.on('error', () => {});
    socket.end(response);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    server.closeAllConnections();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  });
  return `ws://127.0.0.1:${(server.address() as AddressInfo).port}/ws`;
}

describe('connect_error', () => {
  it("a 403 from authorize: the status, the hub's code and message, before each 1006; reconnecting goes on and connect() waits", async () => {
    const served = await hub({ authorize: () => false });
    const c = watched(served.url);
    await eventually(() => c.failures.length >= 3, 10_000);
    expect(c.failures[0]).toEqual({
      status: 403,
      code: 'HYP_E_WS_FORBIDDEN',
      message: 'websocket upgrade forbidden: authorize hook refused',
    });
    expect(c.events.slice(0, 6)).toEqual([
      'connect_error',
      'close 1006',
      'reconnecting 1',
      'connect_error',
      'close 1006',
      'reconnecting 2',
    ]);
    expect(c.settled).toBe('pending');
    expect(c.errors).toEqual([]);
  });

  it('a 404 without a hub body: the status and the HTTP reason', async () => {
    const url = await refusing(
      'HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found',
    );
    const c = watched(url);
    await eventually(() => c.failures.length >= 1, 10_000);
    expect(c.failures[0]).toEqual({ status: 404, message: 'unexpected server response: 404 Not Found' });
    expect(c.events.slice(0, 2)).toEqual(['connect_error', 'close 1006']);
  });

  it('a hub body larger than what is read (4 KiB) still reports the status', async () => {
    const body = JSON.stringify({ error: { code: 'HYP_E_WS_FORBIDDEN', message: 'x'.repeat(10_000) } });
    const url = await refusing(
      `HTTP/1.1 403 Forbidden\r\ncontent-type: application/json\r\ncontent-length: ${body.length}\r\nconnection: close\r\n\r\n${body}`,
    );
    const c = watched(url);
    await eventually(() => c.failures.length >= 1, 10_000);
    expect(c.failures[0]).toEqual({ status: 403, message: 'unexpected server response: 403 Forbidden' });
  });

  it('a refused port: the network error, no status', async () => {
    const server = createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const { port } = server.address() as AddressInfo;
    await new Promise<void>((resolve) => server.close(() => resolve()));
    const c = watched(`ws://127.0.0.1:${port}/ws`);
    await eventually(() => c.failures.length >= 1, 10_000);
    expect(c.failures[0]!.status).toBeUndefined();
    expect(c.failures[0]!.message).toMatch(/ECONNREFUSED/);
    expect(c.events.slice(0, 2)).toEqual(['connect_error', 'close 1006']);
  });

  it("with the client's default socket: Node 22+'s global WebSocket shows only 'handshake failed', Node 20's default (ws) the status", async () => {
    const served = await hub({ authorize: () => false });
    const global = (globalThis as { WebSocket?: unknown }).WebSocket;
    const c = watched(served.url, { WebSocket: undefined });
    await eventually(() => c.failures.length >= 1, 10_000);
    if (global === undefined)
      expect(c.failures[0]).toMatchObject({ status: 403, code: 'HYP_E_WS_FORBIDDEN' });
    else expect(c.failures[0]).toEqual({ message: 'handshake failed' });
    expect(c.events.slice(0, 2)).toEqual(['connect_error', 'close 1006']);
  });

  it('not for a connection that opened, nor for an attempt ended by close()', async () => {
    const served = await hub();
    const c = watched(served.url);
    await eventually(() => c.settled === 'resolved');
    c.ws.close();
    await eventually(() => c.events.length === 1);
    expect(c.events).toEqual(['close 1000']);

    const slow = await hub({ authorize: () => new Promise<boolean>(() => {}) }); // never answers
    const d = watched(slow.url);
    await new Promise((resolve) => setTimeout(resolve, 100)); // the upgrade reaches the hub and hangs
    d.ws.close();
    await eventually(() => d.settled !== 'pending');
    expect(d.failures).toEqual([]);
  });
});
