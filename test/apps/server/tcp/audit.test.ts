/**
 * Adversarial audit of the TCP services: hostile peers (port reuse, resets,
 * floods, peers that never read) and misbehaving apps, each against the
 * real accept path on 127.0.0.1.
 */
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import fc from 'fast-check';
import { Registry } from 'prom-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { encodeFrame, LengthPrefixDecoder, LineDecoder } from '../../../../apps/server/tcp/framing.js';
import { ConnectionRateLimiter } from '../../../../apps/server/tcp/ratelimit.js';
import { TcpService } from '../../../../apps/server/tcp/server.js';
import {
  closedByPeer,
  closeTracked,
  dial,
  echo,
  readBytes,
  selfSignedCertDir,
  silentLog,
  start,
  tcpConfig,
  until,
} from './helpers.js';

let dir = '';
const file = (name: string) => join(dir, name);

/** A self-signed certificate for 127.0.0.1. */
beforeAll(() => {
  dir = selfSignedCertDir('hyp-tcp-audit-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

afterEach(async () => {
  await closeTracked();
});

const tlsConfig = () => ({
  tls: { enabled: true, cert_file: file('server.pem'), key_file: file('server.key'), watch: false },
});

function dialTls(port: number, extra: Record<string, unknown> = {}): TLSSocket {
  return tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(file('server.pem')), ...extra });
}

/** A plain connection from a client port in 20000–29999 (outside Linux's ephemeral range), retried if taken. */
async function dialFromFixedPort(port: number): Promise<{ socket: Socket; localPort: number }> {
  for (let attempt = 0; ; attempt++) {
    const localPort = 20_000 + Math.floor(Math.random() * 10_000);
    const socket = netConnect({ port, host: '127.0.0.1', localAddress: '127.0.0.1', localPort });
    try {
      await once(socket, 'connect');
      socket.on('error', () => {});
      return { socket, localPort };
    } catch (err) {
      socket.destroy();
      if ((err as NodeJS.ErrnoException).code !== 'EADDRINUSE' || attempt >= 20) throw err;
    }
  }
}

/** Block this process's event loop: events that arrive meanwhile are handled in one poll. */
function blockFor(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    /* spin */
  }
}

describe('TLS handshakes in flight', () => {
  it('a reset connection does not take the handshake of a new one from the same address and port', async () => {
    const errors: Error[] = [];
    const { port, service } = await start(echo, tlsConfig(), { onError: (...e) => errors.push(...e) });
    // A client port below the ephemeral range, so no other connection of the
    // machine takes it between the reset and the reconnect.
    const { socket: old, localPort: reused } = await dialFromFixedPort(port);
    await until(() => service.openConnections() === 1, 'first connection accepted');
    // The peer resets and reconnects from the same port (no TIME_WAIT after
    // a reset). The server sees the reset and the new connection in one poll;
    // the old socket's `close` comes after the new one was accepted.
    old.resetAndDestroy();
    const fresh = dialTls(port, { localAddress: '127.0.0.1', localPort: reused });
    fresh.on('error', () => {});
    process.nextTick(() => blockFor(100)); // after the connect syscall, before the next poll
    await once(fresh, 'secureConnect');
    fresh.write('still here');
    const { data } = await Promise.race([
      readBytes(fresh, 10).then((d) => ({ data: d })),
      closedByPeer(fresh),
    ]);
    expect(data.toString()).toBe('still here');
    fresh.end();
    await closedByPeer(fresh);
    await until(() => service.openConnections() === 0, 'both connections done');
  });
});

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Heap and ArrayBuffer bytes `hold()`'s result keeps alive. */
function retainedBytes(hold: () => unknown): { bytes: number; kept: unknown } {
  gc();
  const before = process.memoryUsage();
  const kept = hold();
  gc();
  const after = process.memoryUsage();
  return {
    bytes: after.heapUsed - before.heapUsed + after.arrayBuffers - before.arrayBuffers,
    kept,
  };
}

/** One fresh single-byte Buffer per call, as a socket read of one segment would give. */
function byte(value: number): Buffer {
  const b = Buffer.allocUnsafeSlow(1);
  b[0] = value;
  return b;
}

describe('framing against a peer that trickles one byte per segment', () => {
  const trickled = 100_000;

  it('a half-received frame holds about its own size, not a Buffer per byte', () => {
    const { bytes, kept } = retainedBytes(() => {
      const decoder = new LengthPrefixDecoder({ maxFrame: 1 << 20 });
      decoder.push(Buffer.from([0x00, 0x10, 0x00, 0x00])); // 1 MiB announced
      for (let i = 0; i < trickled; i++) {
        decoder.push(byte(i & 0xff));
        if (decoder.next() !== undefined) throw new Error(`a frame after ${i} bytes`);
      }
      return decoder;
    });
    expect((kept as LengthPrefixDecoder).buffered).toBe(trickled);
    // Before: about 220 bytes per byte held (one Buffer object and ArrayBuffer each).
    expect(bytes).toBeLessThan(4 * trickled + 256 * 1024);
  });

  it('a half-received line holds about its own size, and each byte is searched once', () => {
    const { bytes, kept } = retainedBytes(() => {
      const decoder = new LineDecoder({ maxLine: 1 << 20 });
      for (let i = 0; i < trickled; i++) {
        decoder.push(byte(0x41));
        if (decoder.next() !== undefined) throw new Error(`a line after ${i} bytes`);
      }
      return decoder;
    });
    const decoder = kept as LineDecoder;
    expect(decoder.buffered).toBe(trickled);
    // Before: every push searched every byte-sized chunk held (quadratic: this loop took about a minute).
    expect(bytes).toBeLessThan(4 * trickled + 256 * 1024);
    decoder.push(Buffer.from('\n'));
    expect(decoder.next()?.equals(Buffer.alloc(trickled, 0x41))).toBe(true);
  });

  it('frames and lines come out intact from any mix of tiny and large chunks, and stay intact after later pushes', () => {
    const chunking = fc.array(fc.oneof(fc.integer({ min: 1, max: 3 }), fc.integer({ min: 900, max: 5000 })), {
      minLength: 1,
      maxLength: 200,
    });
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 3000 }), { maxLength: 12 }),
        chunking,
        (payloads, sizes) => {
          const frames = Buffer.concat(payloads.map((p) => encodeFrame(p)));
          const lines = Buffer.concat(
            payloads.map((p) =>
              Buffer.concat([Buffer.from(p.map((b) => (b === 0x0a ? 0x20 : b))), Buffer.from('\n')]),
            ),
          );
          for (const [decoder, stream, expected] of [
            [new LengthPrefixDecoder({ maxFrame: 3000 }), frames, payloads.map((p) => Buffer.from(p))],
            [
              new LineDecoder({ maxLine: 3000 }),
              lines,
              payloads.map((p) => Buffer.from(p.map((b) => (b === 0x0a ? 0x20 : b)))),
            ],
          ] as const) {
            const out: Buffer[] = [];
            let at = 0;
            for (let i = 0; at < stream.length; i++) {
              const n = sizes[i % sizes.length]!;
              // Copies, as sockets hand over fresh buffers.
              decoder.push(Buffer.from(stream.subarray(at, at + n)));
              at += n;
              for (let f = decoder.next(); f !== undefined; f = decoder.next()) out.push(f); // views, not copies
            }
            expect(out.map((f) => f.toString('hex'))).toEqual(expected.map((f) => f.toString('hex')));
          }
        },
      ),
      { numRuns: 200 },
    );
  });
});

describe('handlers that settle in unusual ways', () => {
  it('a handler returning a promise from another realm (or any thenable) owns its connection until it settles', async () => {
    const errors: Error[] = [];
    const otherRealm = runInNewContext('Promise') as PromiseConstructor;
    const { port, service } = await start(
      (conn) =>
        new otherRealm<void>((resolve, reject) => {
          setTimeout(() => conn.write('late answer').then(resolve, reject), 50);
        }),
      {},
      { onError: (...e) => errors.push(...e) },
    );
    const client = await dial(port);
    // Before: not `instanceof Promise`, so taken as a synchronous return and closed at once.
    const { data } = await closedByPeer(client);
    expect(data.toString()).toBe('late answer');
    expect(errors).toEqual([]);
    await until(() => service.openConnections() === 0, 'connection done');
  });

  it('a thenable that rejects late is a handler failure, reported once', async () => {
    const errors: Error[] = [];
    const { port, service } = await start(
      () => ({
        // biome-ignore lint/suspicious/noThenProperty: the spec is about thenables
        then(_resolve: () => void, reject: (err: Error) => void) {
          setTimeout(() => reject(new Error('late failure')), 20);
        },
      }),
      {},
      { onError: (...e) => errors.push(...e) },
    );
    const client = await dial(port);
    await closedByPeer(client);
    await until(() => service.openConnections() === 0, 'connection done');
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['HYP_E_TCP_HANDLER']);
    expect(errors[0]!.message).toContain('late failure');
  });
});

describe('drain racing listen', () => {
  it('a drain begun while listen() is under way closes the listener: the service ends stopped, listen rejects', async () => {
    const service = new TcpService({
      name: 'echo',
      config: tcpConfig(),
      handler: echo,
      log: silentLog,
      registry: new Registry(),
    });
    const listened = service.listen();
    const drained = service.drain();
    await expect(listened).rejects.toMatchObject({ code: 'HYP_E_TCP_SERVER_CLOSED' });
    await drained;
    // Before: listen completed after the drain, and the "drained" service stayed running and accepting.
    expect(service.state).toBe('stopped');
    expect(() => service.address()).toThrow(/closed/);
  });
});

describe('connect floods', () => {
  it.each([
    ['plain', {}],
    ['TLS', { tls: true }],
  ])(
    '%s: max_connections and the metrics hold under a flood of connects, half of them reset at once',
    async (_, how) => {
      const total = 300;
      const { port, service, registry } = await start(
        async (conn) => {
          for await (const chunk of conn) await conn.write(chunk);
        },
        { max_connections: 10, idle_timeout: '0', ...('tls' in how ? tlsConfig() : {}) },
        { onError: () => {} },
      );
      let maxOpen = 0;
      const watch = setInterval(() => {
        maxOpen = Math.max(maxOpen, service.openConnections());
      }, 1);
      const sockets: Socket[] = [];
      const dialed: Promise<unknown>[] = [];
      for (let i = 0; i < total; i++) {
        const s = netConnect({ port, host: '127.0.0.1' });
        s.on('error', () => {});
        sockets.push(s);
        dialed.push(
          new Promise((resolve) => {
            s.once('connect', () => {
              if (i % 2 === 0) s.resetAndDestroy();
              resolve(undefined);
            });
            s.once('close', resolve);
          }),
        );
      }
      await Promise.all(dialed);
      await until(
        () => service.stats.accepted + service.stats.refusedMaxConnections === total,
        'every connection accepted or refused',
      ).catch(() => {}); // a reset before accept may never reach the service
      for (const s of sockets) s.destroy();
      await until(() => service.openConnections() === 0, 'all connections done');
      clearInterval(watch);
      expect(maxOpen).toBeLessThanOrEqual(10);
      expect(service.stats.accepted + service.stats.refusedMaxConnections).toBeLessThanOrEqual(total);
      expect(service.stats.accepted).toBeGreaterThan(0);
      expect(service.stats.open).toBe(0);
      const text = await registry.metrics();
      expect(text).toMatch(/hyp_tcp_connections\{service="echo"\} 0/);
      expect(text).not.toMatch(/ -\d/); // no negative value anywhere
    },
  );
});

describe('the per-IP rate limit against address rotation', () => {
  it('counts an IPv6 client by its /64 (a host holds a whole prefix) and an IPv4-mapped address as IPv4', () => {
    const limiter = new ConnectionRateLimiter(1, 1, () => 0);
    expect(limiter.take('2001:db8:1:2::a')).toBe(true);
    // Before: every rotated interface identifier got a fresh bucket.
    expect(limiter.take('2001:db8:1:2:ffff:1:2:b')).toBe(false);
    expect(limiter.take('2001:0db8:0001:0002:0000:0000:0000:000c')).toBe(false);
    expect(limiter.take('2001:db8:1:2::d%eth0')).toBe(false);
    expect(limiter.take('2001:db8:1:3::a')).toBe(true);
    expect(limiter.take('::ffff:192.0.2.1')).toBe(true);
    expect(limiter.take('192.0.2.1')).toBe(false);
    expect(limiter.take('192.0.2.2')).toBe(true);
    expect(limiter.take('::1')).toBe(true);
    expect(limiter.take('::2')).toBe(false); // ::/64
    expect(limiter.size).toBe(5);
  });
});

/** A ClientHello record header announcing 255 bytes, then one byte every 50 ms, until the server closes. */
async function trickleHandshake(port: number): Promise<void> {
  const client = netConnect({ port, host: '127.0.0.1' });
  client.on('error', () => {});
  await once(client, 'connect');
  client.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff]));
  const trickle = setInterval(() => client.writable && client.write(Buffer.from([0x01])), 50);
  await closedByPeer(client);
  clearInterval(trickle);
}

describe('TLS peers that stall', () => {
  it('a handshake trickled byte by byte is closed at idle_timeout: handshake bytes are not activity', async () => {
    const errors: Error[] = [];
    let handlers = 0;
    const { port, service } = await start(
      () => {
        handlers++;
      },
      { idle_timeout: '300ms', ...tlsConfig() },
      { onError: (...e) => errors.push(...e) },
    );
    await trickleHandshake(port);
    await until(() => service.openConnections() === 0, 'handshake cleaned up');
    expect(service.stats.idleCloses).toBe(1);
    expect(handlers).toBe(0);
  });
});

describe('TLS handshake deadline', () => {
  it('a handshake trickled byte by byte is closed at handshake_timeout, with idle_timeout off', async () => {
    const errors: Error[] = [];
    let handlers = 0;
    const { port, service } = await start(
      () => {
        handlers++;
      },
      { idle_timeout: '0', handshake_timeout: '300ms', ...tlsConfig() },
      { onError: (...e) => errors.push(...e) },
    );
    // Before: nothing closed it (no idle sweep, no handshake timer).
    await trickleHandshake(port);
    await until(() => service.openConnections() === 0, 'handshake cleaned up');
    expect(handlers).toBe(0);
    const handshake = errors.find((e) => (e as { code?: string }).code === 'HYP_E_TCP_HANDSHAKE');
    expect(handshake?.message).toContain('not completed within handshake_timeout (300ms)');
  });
});

describe('refusal messages', () => {
  it('name an IPv6 peer as [addr]:port', async () => {
    const messages: string[] = [];
    const { port } = await start(
      echo,
      { addr: '[::1]:0', max_connections: 1 },
      { onServerInfo: (m) => messages.push(m) },
    );
    const first = netConnect({ port, host: '::1' });
    await once(first, 'connect');
    const second = netConnect({ port, host: '::1' });
    await once(second, 'connect');
    const secondPort = second.localPort;
    await closedByPeer(second);
    const refused = messages.find((m) => m.startsWith('refused'));
    // Before: "refused ::1:40000", the port indistinguishable from an address group.
    expect(refused).toContain(`refused [::1]:${secondPort}:`);
    first.destroy();
  });
});

describe('handlers that throw', () => {
  it('a synchronous throw (even of a non-Error) closes that connection, is reported once, and the service goes on', async () => {
    const errors: Error[] = [];
    let calls = 0;
    const { port, service } = await start(
      (conn) => {
        if (calls++ === 0) throw 'not an Error'; // a misuse on purpose
        return echo(conn);
      },
      {},
      { onError: (...e) => errors.push(...e) },
    );
    const bad = await dial(port);
    await closedByPeer(bad);
    const good = await dial(port);
    good.write('ok');
    expect((await readBytes(good, 2)).toString()).toBe('ok');
    good.destroy();
    await until(() => service.openConnections() === 0, 'connections done');
    expect(errors.map((e) => (e as { code?: string }).code)).toEqual(['HYP_E_TCP_HANDLER']);
    expect(errors[0]!.message).toContain('not an Error');
    expect(service.stats.open).toBe(0);
  });
});
