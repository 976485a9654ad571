/**
 * An acknowledged publish on a client that will not connect again by
 * itself — after `close()`, a 4000 (replaced by a newer connection with the
 * same client id), `reconnect.maxAttempts` reached, or a close with
 * reconnecting disabled — rejects at once with HYP_E_WS_ACK_CLOSED, saying
 * which of these happened. Before, after a 4000 it said "close() called",
 * and after maxAttempts or with reconnecting disabled it waited out its
 * whole timeout (HYP_E_WS_ACK_TIMEOUT). `connect()` makes it usable again.
 * Real hubs in-process, loopback only.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { eventually } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';

afterEach(closeAll);

interface Rejection {
  code: string;
  message: string;
}

const rejection = (p: Promise<unknown>) =>
  p.then(
    () => ({ code: 'resolved', message: '' }),
    (e: Rejection) => e,
  );

/** A loopback port nothing listens on. */
async function deadPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

describe('publishAck on a client that stopped', () => {
  it('after close(): rejects at once, saying close() was called', async () => {
    const served = await hub();
    const c = client(served.url);
    await c.ws.connect();
    c.ws.close();
    const err = await rejection(c.ws.publishAck('news', 1, { timeoutMs: 3_000 }));
    expect(err.code).toBe('HYP_E_WS_ACK_CLOSED');
    expect(err.message).toMatch(/close\(\) was called; connect\(\) first/);
  });

  it('after a 4000 (replaced by a newer connection with the same client id): says so, not close()', async () => {
    const served = await hub();
    const a = client(served.url, { clientId: 'twin' });
    const codes: number[] = [];
    a.ws.on('close', (code) => codes.push(code));
    await a.ws.connect();
    const b = client(served.url, { clientId: 'twin' });
    await b.ws.connect();
    await eventually(() => codes.length === 1);
    expect(codes).toEqual([4000]);
    const err = await rejection(a.ws.publishAck('news', 1, { timeoutMs: 3_000 }));
    expect(err.code).toBe('HYP_E_WS_ACK_CLOSED');
    expect(err.message).toMatch(/replaced by a newer one with the same client id \(4000\)/);
    expect(err.message).not.toMatch(/close\(\)/);
  });

  it('after giving up (maxAttempts): rejects at once rather than waiting out its timeout', async () => {
    const port = await deadPort();
    const c = client(`ws://127.0.0.1:${port}/ws`, {
      reconnect: { initialDelayMs: 1, maxDelayMs: 5, maxAttempts: 2 },
    });
    await expect(c.ws.connect()).rejects.toThrow(/gave up after 2 attempts/);
    const err = await rejection(c.ws.publishAck('news', 1, { timeoutMs: 3_000 }));
    expect(err.code).toBe('HYP_E_WS_ACK_CLOSED');
    expect(err.message).toMatch(/gave up reconnecting after 2 attempts \(maxAttempts\); connect\(\) first/);
  });

  it('after a close with reconnecting disabled: rejects at once; connect() makes the client usable again', async () => {
    const f = await frontOf(await hub());
    const c = client(f.url, { reconnect: { enabled: false } });
    await c.ws.connect();
    const codes: number[] = [];
    c.ws.on('close', (code) => codes.push(code));
    f.cut(); // the connection drops without a close frame (1006)
    await eventually(() => codes.length === 1);
    const err = await rejection(c.ws.publishAck('news', 1, { timeoutMs: 3_000 }));
    expect(err.code).toBe('HYP_E_WS_ACK_CLOSED');
    expect(err.message).toMatch(/closed \(1006\) and reconnecting is disabled/);
    await c.ws.connect();
    const ack = await c.ws.publishAck('news', 2, { timeoutMs: 5_000 });
    expect(ack.offset).not.toBe('');
  });

  it('before the first connect(): waits in the queue and goes out on connecting, as before', async () => {
    const served = await hub();
    const c = client(served.url);
    const acked = c.ws.publishAck('news', 1, { timeoutMs: 5_000 });
    await c.ws.connect();
    expect((await acked).offset).not.toBe('');
  });
});
