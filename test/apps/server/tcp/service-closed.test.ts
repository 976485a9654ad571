import { afterEach, describe, expect, it } from 'vitest';
import type { TcpHandler } from '../../../../apps/server/tcp/types.js';
import { capturedLog, closeTracked, DEBUG, dial, metricValue, start, until, WARN } from './helpers.js';

/** Writes 64 KiB chunks until a write fails (bounded): the client never reads, so the buffers fill. */
const floodsTheClient: TcpHandler = async (conn) => {
  const chunk = Buffer.alloc(64 * 1024, 'x');
  for (let i = 0; i < 10_000; i++) await conn.write(chunk);
};

afterEach(closeTracked);

/** A client that connects and never reads, until the service closes it as idle. */
async function closedAsIdle(service: { openConnections(): number }, port: number): Promise<void> {
  const client = await dial(port);
  client.pause();
  client.on('error', () => {});
  await until(() => service.openConnections() === 1, 'connection accepted');
  await until(() => service.openConnections() === 0, 'connection closed as idle');
  client.destroy();
}

describe('a handler failing on a connection the service closed', () => {
  it('closed at idle_timeout while the client never reads: one debug line, no warning, no onError', async () => {
    const { log, lines } = capturedLog();
    const errors: Error[] = [];
    const { service, port, registry } = await start(
      floodsTheClient,
      { idle_timeout: '300ms' },
      { onError: (...e) => errors.push(...e) },
      { log },
    );
    await closedAsIdle(service, port);
    // Before: HYP_E_TCP_HANDLER 'the connection is closed' went to onError (or a warn line).
    expect(errors).toEqual([]);
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
    const reported = lines.filter((l) => l.code === 'HYP_E_TCP_HANDLER');
    expect(reported).toHaveLength(1);
    expect(reported[0]).toMatchObject({ level: DEBUG, closed_by: 'idle' });
    expect(reported[0]!.msg).toMatch(/\(the service closed it, idle for 300ms\)$/);
    expect(JSON.stringify(reported[0])).not.toContain('    at ');
    expect(await metricValue(registry, 'hyp_tcp_idle_closes_total', { service: 'echo' })).toBe(1);
    expect(await metricValue(registry, 'hyp_tcp_errors_total', { service: 'echo' })).toBe(0);
  });

  it('closed at the drain deadline: HYP_E_SHUTDOWN_TIMEOUT once, the handler failure at debug', async () => {
    const { log, lines } = capturedLog();
    const { service, port } = await start(
      floodsTheClient,
      { idle_timeout: '0', shutdown_timeout: '300ms' },
      {},
      { log },
    );
    const clients = await Promise.all([dial(port), dial(port)]);
    for (const c of clients) {
      c.pause();
      c.on('error', () => {});
    }
    await until(() => service.openConnections() === 2, 'connections accepted');
    await service.drain();
    for (const c of clients) c.destroy();
    const warned = lines.filter((l) => l.level >= WARN);
    expect(warned.map((l) => l.err?.code ?? l.code)).toEqual(['HYP_E_SHUTDOWN_TIMEOUT']);
    const reported = lines.filter((l) => l.code === 'HYP_E_TCP_HANDLER');
    expect(reported.map((l) => [l.level, l.closed_by])).toEqual([
      [DEBUG, 'shutdown'],
      [DEBUG, 'shutdown'],
    ]);
  });

  it("a TypeError thrown after the service closed the connection is still the app's bug: onError gets it", async () => {
    const errors: Error[] = [];
    const { service, port } = await start(
      async (conn) => {
        await floodsTheClient(conn).catch(() => {
          throw new TypeError('cannot read properties of undefined');
        });
      },
      { idle_timeout: '300ms' },
      { onError: (...e) => errors.push(...e) },
    );
    await closedAsIdle(service, port);
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['HYP_E_TCP_HANDLER']);
    expect((errors[0]!.cause as Error).name).toBe('TypeError');
  });
});
