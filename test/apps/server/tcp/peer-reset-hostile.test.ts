/**
 * A peer that resets its connection while the handler still works on it: the
 * report of the handler's failure names that peer. The address is read from
 * the socket, and a reset socket no longer knows its peer (getpeername fails
 * once the handle is gone), so it is read when the connection is accepted.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import type { HypError } from '../../../../supervisor/errors.js';
import { closeTracked, dial, start, until } from './helpers.js';

afterEach(async () => {
  await closeTracked();
});

describe('a peer that resets mid-connection', () => {
  it('a handler failing after the reset is reported as HYP_E_TCP_HANDLER naming the peer (host:port)', async () => {
    const errors: HypError[] = [];
    const seen: string[] = [];
    const { service, port } = await start(
      async (conn) => {
        await conn.read();
        // The peer resets; the handler's next write fails, as the demo's echo loop does.
        if (!conn.socket.destroyed) await new Promise((r) => conn.socket.once('close', r));
        seen.push(conn.remoteAddress);
        await conn.write('late');
      },
      {},
      { onError: (err) => errors.push(err as HypError) },
    );
    const client = await dial(port);
    const local = `127.0.0.1:${client.localPort}`;
    client.write('hello');
    await until(() => service.openConnections() === 1, 'connection accepted');
    // Give the handler its chunk before the reset.
    await new Promise((r) => setTimeout(r, 50));
    client.resetAndDestroy();
    await until(() => errors.length > 0, 'handler failure reported');
    expect(errors[0]!.code).toBe('HYP_E_TCP_HANDLER');
    expect(errors[0]!.params.remote).toBe(local);
    expect(errors[0]!.message).toMatch(new RegExp(`^tcp service echo: handler failed for ${local}: `));
    expect(seen).toEqual([local]);
  });

  it('a peer that reset before the accept is named "a client", not an empty address', async () => {
    const errors: HypError[] = [];
    const seen: string[] = [];
    const { service, port } = await start(
      async (conn) => {
        seen.push(conn.remoteAddress);
        await conn.read();
        throw new Error('handler gave up');
      },
      {},
      { onError: (err) => errors.push(err as HypError) },
    );
    // Another process connects, writes and resets while this one's event loop
    // is blocked: the kernel completes the handshake from the backlog, and the
    // service accepts a socket that is already reset (getpeername fails).
    execFileSync(process.execPath, [
      '-e',
      `const s = require('node:net').connect(${port}, '127.0.0.1', () => { s.write('x'); setTimeout(() => { s.resetAndDestroy(); setTimeout(() => process.exit(0), 50); }, 50); });`,
    ]);
    await until(() => errors.length > 0 || service.openConnections() > 0, 'connection accepted');
    await until(() => errors.length > 0, 'handler failure reported');
    expect(seen).toEqual(['']);
    expect(errors[0]!.code).toBe('HYP_E_TCP_HANDLER');
    expect(errors[0]!.params.remote).toBe('a client');
    expect(errors[0]!.message).toBe('tcp service echo: handler failed for a client: handler gave up');
  });
});
