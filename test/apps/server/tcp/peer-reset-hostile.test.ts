/**
 * A peer that resets its connection while the handler still works on it.
 *
 * A handler that fails only because of the reset (its next write finds the
 * socket gone) is no bug of the app, and any client can cause one per
 * connection: it is one debug line (code, errno, peer, no stack), counted in
 * `hyp_tcp_handler_peer_gone_total`, and reaches neither `onError` nor
 * `hyp_tcp_errors_total`. A handler that fails for another reason — on a
 * healthy socket, after the reset with an unrelated error, or with a reset
 * of another socket — is still a warning with its stack.
 *
 * The peer's address is read when the connection is accepted: a reset
 * socket no longer knows its peer (getpeername fails once the handle is gone).
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpConnection } from '../../../../apps/server/tcp/connection.js';
import type { TcpHandler } from '../../../../apps/server/tcp/types.js';
import type { HypError } from '../../../../supervisor/errors.js';
import {
  capturedLog,
  closeTracked,
  DEBUG,
  dial,
  echo,
  metricValue,
  selfSignedCertDir,
  start,
  until,
  WARN,
} from './helpers.js';

/** The lines reporting a handler failure: the code is the line's own (debug) or its error's (warn). */
const handlerLines = (lines: LogLine[]) =>
  lines.filter((l) => (l.code ?? l.err?.code) === 'HYP_E_TCP_HANDLER');

let upstream: Server | undefined;
let certDir = '';

beforeAll(() => {
  certDir = selfSignedCertDir('hyp-tcp-peer-reset-');
});
afterAll(() => rmSync(certDir, { recursive: true, force: true }));

afterEach(async () => {
  await closeTracked();
  upstream?.close();
  upstream = undefined;
});

/** Wait until the server side of the connection has seen the reset (its socket closed). */
async function peerClosed(conn: TcpConnection): Promise<void> {
  // Not events.once: it rejects on the socket's 'error' (the reset), which would fail the handler itself.
  if (!conn.socket.destroyed) await new Promise((resolve) => conn.socket.once('close', resolve));
}

describe('a handler that fails because its peer reset the connection', () => {
  it.each<[string, string, TcpHandler]>([
    [
      'conn.write after the reset',
      'HYP_E_TCP_CLOSED',
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await conn.write('late');
      },
    ],
    [
      'socket.write after the reset',
      'ERR_STREAM_DESTROYED',
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await new Promise<void>((resolve, reject) =>
          conn.socket.write('late', (err) => (err ? reject(err) : resolve())),
        );
      },
    ],
    [
      'stream.finished on the socket',
      'ECONNRESET',
      async (conn) => {
        await conn.read();
        await finished(conn.socket);
      },
    ],
    [
      "an app's Error wrapping the reset as its cause",
      'HYP_E_TCP_CLOSED',
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await conn.write('late').catch((err) => {
          throw new Error('echo failed', { cause: err });
        });
      },
    ],
    [
      'the reset three causes down',
      'ECONNRESET',
      async (conn) => {
        await conn.read();
        await finished(conn.socket).catch((err) => {
          const store = new Error('store failed', { cause: new Error('flush failed', { cause: err }) });
          throw new Error('session failed', { cause: store });
        });
      },
    ],
    [
      'an AggregateError of writes all refused by the reset',
      'HYP_E_TCP_CLOSED',
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await Promise.any([conn.write('a'), conn.write('b')]);
      },
    ],
  ])(
    '%s: one debug line (code, errno, peer, no stack), counted, no warning',
    async (_, errorCode, handler) => {
      const { log, lines } = capturedLog();
      const { service, port, registry } = await start(handler, {}, {}, { log });
      const client = await dial(port);
      const local = `127.0.0.1:${client.localPort}`;
      client.write('hello');
      await until(() => service.openConnections() === 1, 'connection accepted');
      // Give the handler its chunk before the reset.
      await new Promise((r) => setTimeout(r, 50));
      client.resetAndDestroy();
      await until(() => service.openConnections() === 0, 'connection done');
      // Before: a warn line with the stack of HYP_E_TCP_HANDLER, counted in hyp_tcp_errors_total.
      expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
      const reported = handlerLines(lines);
      expect(reported).toHaveLength(1);
      const line = reported[0]!;
      expect(line.level).toBe(DEBUG);
      expect(line.errno).toBe('ECONNRESET');
      expect(line.error_code).toBe(errorCode);
      expect(line.remote).toBe(local);
      expect(line.msg).toMatch(
        new RegExp(
          `^tcp service echo: handler failed for ${local}: .*\\(the peer reset the connection: ECONNRESET\\)$`,
        ),
      );
      expect(line.err).toBeUndefined();
      expect(JSON.stringify(line)).not.toContain('    at ');
      expect(await metricValue(registry, 'hyp_tcp_handler_peer_gone_total', { service: 'echo' })).toBe(1);
      expect(await metricValue(registry, 'hyp_tcp_errors_total', { service: 'echo' })).toBe(0);
    },
  );

  it.each<[string, TcpHandler]>([
    [
      'conn.write after the reset',
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await conn.write('late');
      },
    ],
    [
      'an Error wrapping it as its cause',
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await conn.write('late').catch((err) => {
          throw new Error('echo failed', { cause: err });
        });
      },
    ],
  ])('over TLS, with onError set, %s: the same debug line, read from the TLS socket', async (_, handler) => {
    const { log, lines } = capturedLog();
    const errors: Error[] = [];
    const tls = {
      enabled: true,
      cert_file: join(certDir, 'server.pem'),
      key_file: join(certDir, 'server.key'),
      watch: false,
    };
    const { service, port, registry } = await start(
      handler,
      { tls },
      { onError: (...e) => errors.push(...e) },
      { log },
    );
    // The TLS client runs over a plain socket of ours: resetAndDestroy() needs the TCP handle.
    const raw = await dial(port);
    const local = `127.0.0.1:${raw.localPort}`;
    const client = tlsConnect({
      socket: raw,
      ca: readFileSync(join(certDir, 'server.pem')),
      host: '127.0.0.1',
    });
    client.on('error', () => {});
    await once(client, 'secureConnect');
    client.write('hello');
    await until(() => service.stats.bytesIn > 0, 'chunk read');
    await new Promise((r) => setTimeout(r, 50));
    raw.resetAndDestroy();
    await until(() => service.openConnections() === 0, 'connection done');
    expect(errors).toEqual([]);
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
    const reported = handlerLines(lines);
    expect(reported).toHaveLength(1);
    expect(reported[0]).toMatchObject({
      level: DEBUG,
      errno: 'ECONNRESET',
      error_code: 'HYP_E_TCP_CLOSED',
      remote: local,
    });
    expect(await metricValue(registry, 'hyp_tcp_handler_peer_gone_total', { service: 'echo' })).toBe(1);
    expect(await metricValue(registry, 'hyp_tcp_errors_total', { service: 'echo' })).toBe(0);
  });

  it("the demo's echo loop, reset while a write waits for the peer: counted, not sent to onError", async () => {
    const errors: Error[] = [];
    const conns: TcpConnection[] = [];
    const { log, lines } = capturedLog();
    const { service, port, registry } = await start(
      (conn) => {
        conns.push(conn);
        return echo(conn);
      },
      { idle_timeout: '0' },
      { onError: (...e) => errors.push(...e) },
      { log },
    );
    const client = await dial(port);
    client.on('error', () => {});
    // The client sends and never reads: the echo's write waits for the peer (backpressure).
    const chunk = Buffer.alloc(64 * 1024, 0x61);
    for (let i = 0; i < 512 && !(conns[0]?.socket.writableNeedDrain ?? false); i++) {
      client.write(chunk);
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(conns[0]!.socket.writableNeedDrain).toBe(true);
    client.resetAndDestroy();
    await until(() => service.openConnections() === 0, 'connection done');
    // Before: onError got HYP_E_TCP_HANDLER ("write after the connection closed") for every such peer.
    expect(errors).toEqual([]);
    const reported = handlerLines(lines);
    expect(reported).toHaveLength(1);
    expect(reported[0]!.level).toBe(DEBUG);
    expect(reported[0]!.errno).toMatch(/^(ECONNRESET|EPIPE)$/);
    expect(reported[0]!.error_code).toBe('HYP_E_TCP_CLOSED');
    expect(await metricValue(registry, 'hyp_tcp_handler_peer_gone_total', { service: 'echo' })).toBe(1);
    expect(await metricValue(registry, 'hyp_tcp_errors_total', { service: 'echo' })).toBe(0);
  });

  it('twenty peers resetting at once: twenty debug lines, not one warning', async () => {
    const peers = 20;
    const { log, lines } = capturedLog();
    const { service, port, registry } = await start(
      async (conn) => {
        await conn.read();
        await peerClosed(conn);
        await conn.write('late');
      },
      {},
      {},
      { log },
    );
    const clients = await Promise.all(Array.from({ length: peers }, () => dial(port)));
    for (const c of clients) c.write('hello');
    await until(() => service.openConnections() === peers, 'connections accepted');
    await new Promise((r) => setTimeout(r, 50));
    for (const c of clients) c.resetAndDestroy();
    await until(() => service.openConnections() === 0, 'connections done');
    expect(lines.filter((l) => l.level >= WARN)).toEqual([]);
    expect(handlerLines(lines).map((l) => l.level)).toEqual(Array(peers).fill(DEBUG));
    expect(await metricValue(registry, 'hyp_tcp_handler_peer_gone_total', { service: 'echo' })).toBe(peers);
  });
});

describe('a handler that fails for another reason stays a warning with its stack', () => {
  async function failed(handler: TcpHandler, reset: boolean) {
    const { log, lines } = capturedLog();
    const { service, port, registry } = await start(handler, {}, {}, { log });
    const client = await dial(port);
    client.on('error', () => {});
    client.write('hello');
    await until(() => service.openConnections() === 1, 'connection accepted');
    await new Promise((r) => setTimeout(r, 50));
    if (reset) client.resetAndDestroy();
    await until(() => service.openConnections() === 0, 'connection done');
    const reported = handlerLines(lines);
    expect(reported).toHaveLength(1);
    expect(reported[0]!.level).toBe(WARN);
    expect(await metricValue(registry, 'hyp_tcp_handler_peer_gone_total', { service: 'echo' })).toBe(0);
    expect(await metricValue(registry, 'hyp_tcp_errors_total', { service: 'echo' })).toBe(1);
    client.destroy();
    return reported[0]!;
  }

  it('a TypeError while the socket is healthy', async () => {
    const line = await failed(async (conn) => {
      await conn.read();
      (undefined as unknown as { x: number }).x;
    }, false);
    expect(line.err?.stack).toMatch(/TypeError/);
    expect(line.err?.stack).toContain('    at ');
  });

  it('an unrelated error thrown after the peer reset', async () => {
    const line = await failed(async (conn) => {
      await conn.read();
      await peerClosed(conn);
      JSON.parse('{');
    }, true);
    expect(line.err?.stack).toMatch(/SyntaxError/);
    expect(line.err?.stack).toContain('    at ');
  });

  it('a TypeError whose cause is the reset (an engine error is a bug, whatever it wraps)', async () => {
    const line = await failed(async (conn) => {
      await conn.read();
      await peerClosed(conn);
      await conn.write('late').catch((err) => {
        throw new TypeError('state.out is not a function', { cause: err });
      });
    }, true);
    expect(line.err?.stack).toMatch(/TypeError: state.out is not a function/);
    expect(line.err?.stack).toContain('    at ');
  });

  it('an app error wrapping an unrelated error after the peer reset', async () => {
    const line = await failed(async (conn) => {
      await conn.read();
      await peerClosed(conn);
      try {
        JSON.parse('{');
      } catch (err) {
        throw new Error('bad request', { cause: err });
      }
    }, true);
    expect(line.err?.stack).toMatch(/Error: bad request/);
    expect(line.err?.stack).toContain('    at ');
  });

  it('an AggregateError in which the reset sits next to a bug', async () => {
    const line = await failed(async (conn) => {
      await conn.read();
      await peerClosed(conn);
      await Promise.any([conn.write('a'), Promise.reject(new RangeError('bad offset'))]);
    }, true);
    expect(line.err?.stack).toMatch(/AggregateError/);
    expect(line.err?.stack).toContain('    at ');
  });

  it('the reset wrapped deeper than three causes', async () => {
    const line = await failed(async (conn) => {
      await conn.read();
      await peerClosed(conn);
      await conn.write('late').catch((err) => {
        let wrapped: Error = err;
        for (let i = 0; i < 4; i++) wrapped = new Error(`layer ${i}`, { cause: wrapped });
        throw wrapped;
      });
    }, true);
    expect(line.err?.stack).toMatch(/Error: layer 3/);
  });

  it("a reset of another socket (the handler's upstream) while its own peer is still there", async () => {
    upstream = createServer((s) => s.resetAndDestroy());
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    const upstreamPort = (upstream.address() as { port: number }).port;
    const line = await failed(async (conn) => {
      await conn.read();
      const up = connect(upstreamPort, '127.0.0.1');
      await once(up, 'data'); // rejects with the upstream's ECONNRESET
    }, false);
    expect(line.err?.stack).toContain('ECONNRESET');
    expect(line.err?.stack).toContain('    at ');
  });
});

describe('a peer that reset before the accept', () => {
  it('is named "a client", not an empty address', async () => {
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
