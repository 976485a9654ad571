/**
 * Misbehaving apps and peers never take the worker down: user callbacks that
 * throw, handlers that never return, writes after the peer left.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closedByPeer, closeTracked, dial, echo, readBytes, start, until } from './helpers.js';

afterEach(async () => {
  await closeTracked();
});

/** Errors that escaped to the process (uncaught exceptions, unhandled rejections) while `fn` ran. */
async function escaped(fn: () => Promise<void>): Promise<unknown[]> {
  const seen: unknown[] = [];
  const onError = (err: unknown) => seen.push(err);
  // Vitest's own listeners stay; ours only records.
  process.on('uncaughtException', onError);
  process.on('unhandledRejection', onError);
  try {
    await fn();
    // unhandled rejections are reported after a macrotask
    await new Promise((r) => setTimeout(r, 50));
  } finally {
    process.off('uncaughtException', onError);
    process.off('unhandledRejection', onError);
  }
  return seen;
}

const codes = (errors: Error[]) => errors.map((e) => (e as { code?: string }).code);

describe('user callbacks that throw', () => {
  it('an onInfo that throws is reported as HYP_E_TCP_CALLBACK; the connection is served and closes', async () => {
    const errors: Error[] = [];
    const leaked = await escaped(async () => {
      const { service, port } = await start(
        echo,
        {},
        {
          onInfo: () => {
            throw new Error('info callback bug');
          },
          onError: (...e) => errors.push(...e),
        },
      );
      const client = await dial(port);
      client.write('ping');
      expect((await readBytes(client, 4)).toString()).toBe('ping');
      client.end();
      await closedByPeer(client);
      await until(() => service.openConnections() === 0, 'connection done');
    });
    expect(leaked).toEqual([]);
    expect(errors.length).toBeGreaterThan(0);
    expect(new Set(codes(errors))).toEqual(new Set(['HYP_E_TCP_CALLBACK']));
    expect(errors[0]!.message).toMatch(/onInfo.*info callback bug/);
  });

  it('a state() that throws refuses that connection with HYP_E_TCP_CALLBACK; the next one is served', async () => {
    const errors: Error[] = [];
    let calls = 0;
    const leaked = await escaped(async () => {
      const { service, port } = await start(
        echo,
        {},
        {
          state: () => {
            if (++calls === 1) throw new Error('state factory bug');
            return {};
          },
          onError: (...e) => errors.push(...e),
        },
      );
      const first = await dial(port);
      await closedByPeer(first);
      const second = await dial(port);
      second.write('ok');
      expect((await readBytes(second, 2)).toString()).toBe('ok');
      second.destroy();
      await until(() => service.openConnections() === 0, 'connections done');
    });
    expect(leaked).toEqual([]);
    expect(codes(errors)).toEqual(['HYP_E_TCP_CALLBACK']);
    expect(errors[0]!.message).toMatch(/state.*state factory bug/);
  });

  it('an onServerInfo that throws does not stop listening, refusing or draining', async () => {
    const errors: Error[] = [];
    const leaked = await escaped(async () => {
      const { service, port } = await start(
        echo,
        { max_connections: 1 },
        {
          onServerInfo: () => {
            throw new Error('server info bug');
          },
          onError: (...e) => errors.push(...e),
        },
      );
      const first = await dial(port);
      await until(() => service.openConnections() === 1, 'first connection');
      const refused = await dial(port); // over max_connections: refused, onServerInfo told
      await closedByPeer(refused);
      first.destroy();
      await service.close();
      expect(service.state).toBe('stopped');
    });
    expect(leaked).toEqual([]);
    expect(codes(errors).length).toBeGreaterThanOrEqual(2);
    expect(new Set(codes(errors))).toEqual(new Set(['HYP_E_TCP_CALLBACK']));
  });
});

describe('handlers and peers', () => {
  it('drain finishes at the deadline even when a handler never returns', async () => {
    const errors: Error[] = [];
    const { service, port } = await start(
      async () => {
        await new Promise(() => {}); // stuck on something that is not the socket
      },
      { shutdown_timeout: '200ms' },
      { onError: (...e) => errors.push(...e) },
    );
    const client = await dial(port);
    await until(() => service.openConnections() === 1, 'connection');
    let drained = false;
    const drain = service.drain().then(() => {
      drained = true;
    });
    await closedByPeer(client);
    await until(() => drained, 'drain to finish', 10_000);
    await drain;
    expect(service.state).toBe('stopped');
    expect(service.openConnections()).toBe(0);
    expect(codes(errors)).toContain('HYP_E_SHUTDOWN_TIMEOUT');
  });

  it('a write the app does not await, after the peer left, is no unhandled rejection', async () => {
    let result: unknown;
    const leaked = await escaped(async () => {
      let wrote = false;
      const { port } = await start(async (conn) => {
        await conn.read();
        conn.destroy();
        // fire-and-forget, like socket.write; awaiting it would reject with HYP_E_TCP_CLOSED
        void conn.write('late');
        result = await conn.write('late, awaited').catch((err: { code?: string }) => err.code);
        wrote = true;
      });
      const client = await dial(port);
      client.write('x');
      await closedByPeer(client);
      await until(() => wrote, 'handler to write');
    });
    expect(leaked).toEqual([]);
    expect(result).toBe('HYP_E_TCP_CLOSED');
  });

  it('a second read() while one is pending rejects with HYP_E_TCP_READ_PENDING; the first still gets the data', async () => {
    let second: unknown;
    let first: Buffer | null | undefined;
    const { port } = await start(async (conn) => {
      const pending = conn.read();
      second = await conn.read().catch((err: unknown) => err);
      first = await pending;
    });
    const client = await dial(port);
    await until(() => second !== undefined, 'the second read to settle');
    client.write('x');
    await closedByPeer(client);
    expect(second).toBeInstanceOf(Error);
    expect((second as { code?: string }).code).toBe('HYP_E_TCP_READ_PENDING');
    expect(first?.toString()).toBe('x');
  });

  it('a handler that returned while its peer does not read: the connection is closed after shutdown_timeout, even with idle_timeout 0', async () => {
    let returned = false;
    const { service, port } = await start(
      async (conn) => {
        // More than the socket buffers take: the end of it stays queued while the peer does not read.
        void conn.write(Buffer.alloc(32 * 1024 * 1024, 1));
        returned = true;
      },
      { idle_timeout: '0', shutdown_timeout: '300ms' },
    );
    const client = await dial(port);
    client.pause(); // never reads
    client.on('error', () => {});
    await until(() => returned, 'the handler to return');
    // Before: the connection stayed open forever (no idle sweep with idle_timeout 0).
    await until(() => service.openConnections() === 0, 'the connection to be released', 10_000);
    client.destroy();
  });

  it('closeWrite() and return with writes still queued: the peer gets every byte, then the end', async () => {
    const size = 8 * 1024 * 1024;
    const { service, port } = await start(async (conn) => {
      void conn.write(Buffer.alloc(size, 3));
      conn.closeWrite();
    });
    const client = await dial(port);
    client.pause();
    await new Promise((r) => setTimeout(r, 50)); // the handler returns with writes queued
    const closed = closedByPeer(client);
    client.resume();
    const { data } = await closed;
    // Before: the socket was destroyed at once (no longer writable after closeWrite), dropping the queue.
    expect(data.length).toBe(size);
    await until(() => service.openConnections() === 0, 'the connection to be done');
  });

  it('a peer that reads within shutdown_timeout after the handler returned gets everything (idle_timeout 0)', async () => {
    const size = 8 * 1024 * 1024;
    const { service, port } = await start(
      async (conn) => {
        void conn.write(Buffer.alloc(size, 2));
      },
      { idle_timeout: '0', shutdown_timeout: '20s' },
    );
    const client = await dial(port);
    client.pause();
    await new Promise((r) => setTimeout(r, 50)); // the handler returns with writes queued
    const closed = closedByPeer(client);
    client.resume();
    const { data } = await closed;
    expect(data.length).toBe(size);
    await until(() => service.openConnections() === 0, 'the connection to be done');
  });
});
