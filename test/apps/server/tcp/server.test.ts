import { once } from 'node:events';
import { connect } from 'node:net';
import { Registry } from 'prom-client';
import { afterEach, describe, expect, it } from 'vitest';
import type { TcpConnection } from '../../../../apps/server/tcp/connection.js';
import { TcpService } from '../../../../apps/server/tcp/server.js';
import type { ConnState } from '../../../../apps/server/tcp/types.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { holdListener } from '../../../../supervisor/listeners.js';
import {
  closedByPeer,
  closeTracked,
  dial,
  echo,
  metricValue,
  readBytes,
  silentLog,
  start,
  tcpConfig,
  track,
  until,
} from './helpers.js';

afterEach(async () => {
  await closeTracked();
});

function create(overrides: Partial<ConstructorParameters<typeof TcpService>[0]>) {
  return new TcpService({
    name: 'echo',
    config: tcpConfig(),
    handler: echo,
    log: silentLog,
    registry: new Registry(),
    ...overrides,
  });
}

describe('creating a TCP service', () => {
  it('is stopped with no connections until it listens', () => {
    const service = create({});
    expect(service.state).toBe('stopped');
    expect(service.openConnections()).toBe(0);
  });

  it('refuses a handler that is not a function with HYP_E_TCP_INVALID_HANDLER', () => {
    expect(() => create({ handler: 'nope' as never })).toThrow(
      expect.objectContaining({ code: 'HYP_E_TCP_INVALID_HANDLER' }),
    );
  });

  it('refuses an unparseable address with HYP_E_TCP_INVALID_ADDRESS naming it', () => {
    expect(() => create({ config: tcpConfig({ addr: 'not an address' }) })).toThrow(
      /invalid address not an address/,
    );
  });

  it('refuses an empty address as an unconfigured service', () => {
    expect(() => create({ config: tcpConfig({ addr: '' }) })).toThrow(
      expect.objectContaining({ code: 'HYP_E_TCP_UNKNOWN_SERVICE' }),
    );
  });

  it('refuses a bad duration or limit with the config key path', () => {
    expect(() => create({ config: tcpConfig({ idle_timeout: 'soon' }) })).toThrow(/tcp\.echo\.idle_timeout/);
    expect(() => create({ config: tcpConfig({ max_connections: 0 }) })).toThrow(/tcp\.echo\.max_connections/);
    expect(() => create({ name: 'Bad Name' })).toThrow(
      expect.objectContaining({ code: 'HYP_E_TCP_INVALID_OPTION' }),
    );
  });
});

describe('listening', () => {
  it('runs on the configured address and reports it', async () => {
    const infos: string[] = [];
    const { service, port } = await start(echo, {}, { onServerInfo: (m) => infos.push(m) });
    expect(service.state).toBe('running');
    expect(port).toBeGreaterThan(0);
    expect(service.address().address).toBe('127.0.0.1');
    expect(infos.some((m) => m.startsWith('listening on 127.0.0.1:0'))).toBe(true);
  });

  it('accepts on a supervisor-held fd (bound, not polled) like a supervised worker', async () => {
    const held = await holdListener('echo', '127.0.0.1:0');
    const service = create({});
    track(service);
    await service.listen({ fd: held.fd });
    expect(service.address().port).toBe(held.port);
    const client = await dial(held.port);
    client.write('via fd');
    expect((await readBytes(client, 6)).toString()).toBe('via fd');
    client.destroy();
    // The service's close() closes this fd number; in a real worker it is the worker's own
    // copy. held.close() here would close the same number a second time, so it is skipped.
  });

  it('fails with HYP_E_LISTEN when the port is taken, and cannot listen twice', async () => {
    const { service, port } = await start(echo);
    const second = create({ config: tcpConfig({ addr: `127.0.0.1:${port}` }) });
    await expect(second.listen()).rejects.toMatchObject({ code: 'HYP_E_LISTEN' });
    await expect(service.listen()).rejects.toMatchObject({ code: 'HYP_E_TCP_SERVER_CLOSED' });
  });
});

describe('accepting and echoing', () => {
  it('echoes bytes back', async () => {
    const { port } = await start(echo);
    const client = await dial(port);
    client.write('hello, hyp');
    expect((await readBytes(client, 10)).toString()).toBe('hello, hyp');
    client.end();
    await closedByPeer(client);
  });

  it('serves 50 concurrent connections independently and counts them open', async () => {
    const { service, port } = await start(echo);
    const clients = await Promise.all(Array.from({ length: 50 }, () => dial(port)));
    await until(() => service.openConnections() === 50, '50 open connections');
    const answers = await Promise.all(
      clients.map((c, i) => {
        const msg = `client-${i}`;
        c.write(msg);
        return readBytes(c, msg.length).then((b) => b.toString());
      }),
    );
    expect(answers).toEqual(clients.map((_, i) => `client-${i}`));
    for (const c of clients) c.end();
    await until(() => service.openConnections() === 0, 'all connections done');
  });

  it('counts accepted connections and bytes in the metrics', async () => {
    const { port, registry } = await start(echo);
    const client = await dial(port);
    client.write('12345');
    await readBytes(client, 5);
    client.end();
    await closedByPeer(client);
    expect(await metricValue(registry, 'hyp_tcp_connections_accepted_total', { service: 'echo' })).toBe(1);
    expect(await metricValue(registry, 'hyp_tcp_received_bytes_total', { service: 'echo' })).toBe(5);
    expect(await metricValue(registry, 'hyp_tcp_sent_bytes_total', { service: 'echo' })).toBe(5);
  });
});

describe('the connection context', () => {
  it('reads, writes, reports addresses and connectivity, and closes', async () => {
    let seen:
      | { remote: string; local: string; remoteHost: string; network: string; connected: boolean }
      | undefined;
    let afterClose: boolean | undefined;
    const { port } = await start(async (conn) => {
      const first = await conn.read();
      seen = {
        remote: conn.remoteAddress,
        local: conn.localAddress,
        remoteHost: conn.remoteHost,
        network: conn.network,
        connected: conn.isConnected(),
      };
      await conn.write(`got ${first}`);
      await conn.close();
      afterClose = conn.isConnected();
      await expect(conn.write('late')).rejects.toMatchObject({ code: 'HYP_E_TCP_CLOSED' });
    });
    const client = await dial(port);
    const clientPort = client.localPort;
    client.write('ping');
    const { data } = await closedByPeer(client);
    expect(data.toString()).toBe('got ping');
    expect(seen).toEqual({
      remote: `127.0.0.1:${clientPort}`,
      local: `127.0.0.1:${port}`,
      remoteHost: `tcp://127.0.0.1:${clientPort}`,
      network: 'tcp',
      connected: true,
    });
    expect(afterClose).toBe(false);
  });

  it('returns null from read() once the peer half-closes, and can still answer', async () => {
    const { port } = await start(async (conn) => {
      const parts: Buffer[] = [];
      for await (const chunk of conn) parts.push(chunk);
      await conn.write(`total ${Buffer.concat(parts).length}`);
    });
    const client = await dial(port);
    client.end('abcdef');
    const { data } = await closedByPeer(client);
    expect(data.toString()).toBe('total 6');
  });

  it('half-closes with closeWrite(): the peer sees the end, and can still send', async () => {
    const states: ConnState[] = [];
    const { port } = await start(
      async (conn) => {
        await conn.write('bye');
        conn.closeWrite();
        const last = await conn.read();
        states.push(last?.toString() === 'after' ? 'read' : 'close');
      },
      {},
      { onInfo: (_l, _r, state) => states.push(state) },
    );
    const client = connect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await once(client, 'connect');
    client.setEncoding('utf8');
    let got = '';
    client.on('data', (d: string) => {
      got += d;
    });
    await once(client, 'end');
    expect(got).toBe('bye');
    client.end('after');
    await closedByPeer(client);
    await until(() => states.includes('close'), 'close');
    expect(states).toContain('close-write');
    expect(states.filter((s) => s === 'read').length).toBeGreaterThanOrEqual(1);
  });

  it('cannot listen again after it was drained', async () => {
    const service = create({});
    await service.close();
    expect(service.state).toBe('stopped');
    await expect(service.listen()).rejects.toMatchObject({ code: 'HYP_E_TCP_SERVER_CLOSED' });
  });

  it('keeps per-connection state from the state() option', async () => {
    const { port } = await start<{ count: number }>(
      async (conn) => {
        for await (const chunk of conn) {
          conn.state.count += chunk.length;
          await conn.write(String(conn.state.count));
        }
      },
      {},
      { state: () => ({ count: 0 }) },
    );
    const a = await dial(port);
    const b = await dial(port);
    a.write('xxx');
    expect((await readBytes(a, 1)).toString()).toBe('3');
    b.write('y');
    expect((await readBytes(b, 1)).toString()).toBe('1');
    a.destroy();
    b.destroy();
  });

  it('waits for the socket to drain when the peer does not read (backpressure)', async () => {
    let writes = 0;
    let blocked = false;
    const chunk = Buffer.alloc(64 * 1024, 1);
    const { port } = await start(async (conn) => {
      // The peer never reads: write() must stop resolving once the buffers are full.
      while (conn.isConnected() && writes < 10_000) {
        const w = conn.write(chunk);
        const state = await Promise.race([
          w.then(() => 'done'),
          new Promise((r) => setTimeout(r, 200, 'pending')),
        ]);
        writes++;
        if (state === 'pending') {
          blocked = true;
          break;
        }
      }
    });
    const client = await dial(port);
    client.pause();
    await until(() => blocked, 'a write that waits for drain');
    expect(writes).toBeLessThan(10_000);
    client.destroy();
  });

  it('applies updateConn to every accepted socket after the defaults', async () => {
    const tuned: number[] = [];
    const { port } = await start(echo, {}, { updateConn: (s) => tuned.push(s.remotePort ?? 0) });
    const client = await dial(port);
    await until(() => tuned.length === 1, 'updateConn');
    expect(tuned).toEqual([client.localPort]);
    client.destroy();
  });
});

describe('callbacks', () => {
  it('reports golib states in order: new, handler, read, write, close-read, close', async () => {
    const states: ConnState[] = [];
    let where: [string, string] | undefined;
    const { port } = await start(
      echo,
      {},
      {
        onInfo: (local, remote, state) => {
          states.push(state);
          where = [local, remote];
        },
      },
    );
    const client = await dial(port);
    const clientPort = client.localPort;
    client.write('x');
    await readBytes(client, 1);
    client.end();
    await closedByPeer(client);
    await until(() => states.includes('close'), 'close state');
    expect(states.slice(0, 4)).toEqual(['new', 'handler', 'read', 'write']);
    expect(states.indexOf('close-read')).toBeLessThan(states.indexOf('close'));
    expect(states.at(-1)).toBe('close');
    expect(where).toEqual([`127.0.0.1:${port}`, `127.0.0.1:${clientPort}`]);
  });

  it('sends handler failures to onError and closes that connection only', async () => {
    const errors: Error[] = [];
    const { port } = await start(
      async (conn) => {
        for await (const chunk of conn) {
          if (chunk.toString() === 'boom') throw new Error('handler exploded');
          await conn.write(chunk);
        }
      },
      {},
      { onError: (...errs) => errors.push(...errs) },
    );
    const good = await dial(port);
    const bad = await dial(port);
    bad.write('boom');
    await closedByPeer(bad);
    good.write('still here');
    expect((await readBytes(good, 10)).toString()).toBe('still here');
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'HYP_E_TCP_HANDLER' });
    expect(errors[0]!.message).toMatch(/handler exploded/);
    good.destroy();
  });

  it('tells onServerInfo about listening, refusals, draining and stop', async () => {
    const messages: string[] = [];
    const { service, port } = await start(
      echo,
      { max_connections: 1 },
      { onServerInfo: (m) => messages.push(m) },
    );
    const first = await dial(port);
    await until(() => service.openConnections() === 1, 'first connection');
    const second = await dial(port);
    await closedByPeer(second);
    first.destroy();
    await service.close();
    expect(messages[0]).toMatch(/^listening on/);
    expect(messages.some((m) => /refused .*connection limit 1 reached/.test(m))).toBe(true);
    expect(messages.some((m) => m.startsWith('draining'))).toBe(true);
    expect(messages.at(-1)).toBe('stopped');
  });
});

describe('limits', () => {
  it('closes connections over max_connections at once and counts them refused', async () => {
    const { service, port, registry } = await start(echo, { max_connections: 2 });
    const a = await dial(port);
    const b = await dial(port);
    await until(() => service.openConnections() === 2, 'two connections');
    const c = await dial(port);
    const { data } = await closedByPeer(c);
    expect(data.length).toBe(0);
    expect(
      await metricValue(registry, 'hyp_tcp_connections_refused_total', {
        service: 'echo',
        reason: 'max_connections',
      }),
    ).toBe(1);
    a.write('ok');
    expect((await readBytes(a, 2)).toString()).toBe('ok');
    a.destroy();
    b.destroy();
  });

  it('refuses a burst of connections from one IP beyond the token bucket', async () => {
    const { port, registry } = await start(echo, { rate_limit: { per_ip_per_second: 0.001, burst: 2 } });
    const a = await dial(port);
    const b = await dial(port);
    const c = await dial(port);
    await closedByPeer(c);
    expect(
      await metricValue(registry, 'hyp_tcp_connections_refused_total', {
        service: 'echo',
        reason: 'rate_limit',
      }),
    ).toBe(1);
    b.write('b');
    expect((await readBytes(b, 1)).toString()).toBe('b');
    a.destroy();
    b.destroy();
  });
});

describe('idle timeout and cancellation', () => {
  it('closes a silent connection through the sweeper and fires its signal with HYP_E_TCP_IDLE', async () => {
    let reason: unknown;
    const { port, registry } = await start(
      async (conn) => {
        conn.signal.addEventListener('abort', () => {
          reason = conn.signal.reason;
        });
        for await (const chunk of conn) await conn.write(chunk);
      },
      { idle_timeout: '200ms' },
    );
    const client = await dial(port);
    client.write('a');
    await readBytes(client, 1);
    await closedByPeer(client);
    expect(isHypError(reason, 'HYP_E_TCP_IDLE')).toBe(true);
    expect(await metricValue(registry, 'hyp_tcp_idle_closes_total', { service: 'echo' })).toBe(1);
  });

  it('keeps a connection that keeps talking', async () => {
    const { port, service } = await start(echo, { idle_timeout: '300ms' });
    const client = await dial(port);
    for (let i = 0; i < 8; i++) {
      client.write('.');
      await readBytes(client, 1);
      await new Promise((r) => setTimeout(r, 100));
    }
    expect(client.destroyed).toBe(false);
    expect(service.openConnections()).toBe(1);
    client.destroy();
  });

  it('fires the signal on drain so a long-running handler can finish cleanly', async () => {
    let reason: unknown;
    const { service, port } = await start(async (conn: TcpConnection) => {
      await new Promise<void>((resolve) => conn.signal.addEventListener('abort', () => resolve()));
      reason = conn.signal.reason;
      await conn.write('bye\n');
    });
    const client = await dial(port);
    await until(() => service.openConnections() === 1, 'connection');
    const drained = service.drain(Date.now() + 5_000);
    expect(service.state).toBe('draining');
    const { data } = await closedByPeer(client);
    await drained;
    expect(data.toString()).toBe('bye\n');
    expect(isHypError(reason, 'HYP_E_DRAINING')).toBe(true);
    expect(service.state).toBe('stopped');
  });
});

describe('shutdown', () => {
  it('stops accepting at once: new connections are refused by the closed listener', async () => {
    const { service, port } = await start(echo);
    await service.drain(Date.now() + 1_000);
    const client = connect({ port, host: '127.0.0.1' });
    const [err] = (await once(client, 'error')) as [NodeJS.ErrnoException];
    expect(err.code).toBe('ECONNREFUSED');
  });

  it('waits for handlers, then force-closes at the deadline with HYP_E_SHUTDOWN_TIMEOUT', async () => {
    const errors: Error[] = [];
    const { service, port } = await start(
      async (conn) => {
        // Ignores the signal on purpose.
        for await (const _ of conn) {
        }
      },
      { shutdown_timeout: '300ms' },
      { onError: (...e) => errors.push(...e) },
    );
    const client = await dial(port);
    await until(() => service.openConnections() === 1, 'connection');
    await service.drain(Date.now() + 60_000);
    await closedByPeer(client);
    expect(service.state).toBe('stopped');
    expect(service.openConnections()).toBe(0);
    expect(errors.map((e) => (e as { code?: string }).code)).toContain('HYP_E_SHUTDOWN_TIMEOUT');
  });

  it('close() ends every connection immediately without a timeout error', async () => {
    const errors: Error[] = [];
    const { service, port } = await start(echo, {}, { onError: (...e) => errors.push(...e) });
    const clients = await Promise.all([dial(port), dial(port), dial(port)]);
    await until(() => service.openConnections() === 3, 'connections');
    await service.close();
    await Promise.all(clients.map(closedByPeer));
    expect(service.openConnections()).toBe(0);
    expect(errors).toEqual([]);
  });
});
