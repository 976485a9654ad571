/**
 * The send side of a TCP connection is bounded (`tcp.<name>.max_buffered`):
 * a handler that writes without awaiting to a peer that does not read is cut
 * off once a write finds more than the bound queued, plain or TLS — logged
 * (HYP_E_TCP_SEND_BUFFER), counted, its signal fired, no unhandled
 * rejection — while the service's other connections are served on. Awaited
 * writes never reach the bound, however large one is.
 */
import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { pino } from 'pino';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpConnection } from '../../../../apps/server/tcp/connection.js';
import { isHypError } from '../../../../supervisor/errors.js';
import {
  closedByPeer,
  closeTracked,
  metricValue,
  readBytes,
  selfSignedCertDir,
  start,
  tcpConfig,
} from './helpers.js';

const KiB = 1024;
const MiB = 1024 * KiB;
/** The bound under test: small, so the kernel's own buffers (several MiB on loopback) do not hide it. */
const bound = MiB;
const chunk = Buffer.alloc(64 * KiB, 0x61);
/** At most this many unawaited writes (128 MiB, one shared buffer): far past the bound plus the kernel's buffers. */
const maxChunks = 2048;

let dir = '';
let unhandled: unknown[] = [];
const onUnhandled = (reason: unknown) => unhandled.push(reason);
beforeAll(() => {
  dir = selfSignedCertDir('hyp-tcp-sendbuf-');
  process.on('unhandledRejection', onUnhandled);
});
afterAll(() => {
  process.off('unhandledRejection', onUnhandled);
  rmSync(dir, { recursive: true, force: true });
});

const clients: Socket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await closeTracked();
  unhandled = [];
});

const tlsKeys = () => ({
  tls: {
    enabled: true,
    cert_file: join(dir, 'server.pem'),
    key_file: join(dir, 'server.key'),
    watch: false,
  },
});

async function client(port: number, tls: boolean): Promise<Socket> {
  const socket = tls
    ? tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false })
    : netConnect({ port, host: '127.0.0.1' });
  clients.push(socket);
  await once(socket, tls ? 'secureConnect' : 'connect');
  return socket;
}

/** What the flooding handler saw. */
interface Flood {
  /** The largest `writableLength` right after a write: bytes the worker held for this peer. */
  maxQueued: number;
  writes: number;
  reason?: unknown;
  /** Rejections of the writes made after the cut. */
  laterRejection?: unknown;
}

/**
 * A handler that floods when the first chunk is `flood` (writes without
 * awaiting, yielding to the event loop every 16 writes, at most `maxChunks`)
 * and echoes otherwise.
 */
function floodOrEcho(done: (flood: Flood) => void) {
  return async (conn: TcpConnection) => {
    const first = await conn.read();
    if (first?.toString() !== 'flood') {
      if (first !== null) await conn.write(first);
      for await (const data of conn) await conn.write(data);
      return;
    }
    const flood: Flood = { maxQueued: 0, writes: 0 };
    while (flood.writes < maxChunks && conn.isConnected()) {
      void conn.write(chunk); // fire-and-forget, like socket.write
      flood.writes++;
      flood.maxQueued = Math.max(flood.maxQueued, conn.socket.writableLength);
      if (flood.writes % 16 === 0) await new Promise((resolve) => setImmediate(resolve));
    }
    flood.reason = conn.signal.reason;
    if (flood.reason !== undefined) {
      await conn.write('more').catch((err: unknown) => {
        flood.laterRejection = err;
      });
    }
    done(flood);
  };
}

describe.each([
  { how: 'plain TCP', tls: false },
  { how: 'TLS', tls: true },
])('max_buffered over $how', ({ tls }) => {
  it('a handler writing without awaiting to a peer that never reads is cut off at the bound, logged and counted; other connections are served on', async () => {
    const lines: string[] = [];
    const log = pino({ level: 'warn' }, { write: (line: string) => void lines.push(line) });
    let flooded: (flood: Flood) => void = () => {};
    const finished = new Promise<Flood>((resolve) => {
      flooded = resolve;
    });
    const { port, registry } = await start(
      floodOrEcho((flood) => flooded(flood)),
      { max_buffered: '1MiB', ...(tls ? tlsKeys() : {}) },
      {},
      { log },
    );
    const other = await client(port, tls);
    const slow = await client(port, tls);
    slow.pause(); // never reads
    const cut = closedByPeer(slow);
    slow.write('flood');

    const flood = await finished;
    // Worker-side bytes held for the peer never exceeded the bound plus the write that found it full.
    expect(flood.maxQueued).toBeGreaterThan(bound);
    expect(flood.maxQueued).toBeLessThanOrEqual(bound + chunk.length);
    expect(flood.writes).toBeLessThan(maxChunks);
    expect(isHypError(flood.reason, 'HYP_E_TCP_SEND_BUFFER')).toBe(true);
    // Later writes reject with the same reason: a handler that lets it propagate is not reported twice.
    expect(flood.laterRejection).toBe(flood.reason);
    // What the kernel took before the cut is still delivered, then the close.
    slow.resume();
    await cut;

    const logged = lines
      .map((line) => JSON.parse(line))
      .filter((l) => l.err?.code === 'HYP_E_TCP_SEND_BUFFER');
    expect(logged).toHaveLength(1);
    expect(logged[0].err.params).toMatchObject({ name: 'echo', limit: '1MiB' });
    expect(logged[0].err.params.pending).toBeGreaterThan(bound);
    expect(logged[0].msg).toMatch(
      /tcp service echo: \d+ bytes written to 127\.0\.0\.1:\d+ .*max_buffered \(1MiB\)/,
    );
    expect(await metricValue(registry, 'hyp_tcp_send_buffer_closes_total', { service: 'echo' })).toBe(1);

    // The connection opened before the flood is served after it.
    other.write('ping');
    expect((await readBytes(other, 4)).toString()).toBe('ping');
    // And a new one too.
    const later = await client(port, tls);
    later.write('pong');
    expect((await readBytes(later, 4)).toString()).toBe('pong');
    expect(unhandled).toEqual([]);
  });

  it('an awaited 64 MiB write, 64 times the bound, reaches a reader that reads slowly but steadily whole', async () => {
    const size = 64 * MiB;
    const big = Buffer.alloc(size, 0x62);
    let outcome: unknown;
    const { port, registry } = await start(
      async (conn) => {
        try {
          await conn.write(big);
          conn.write('!'); // unawaited, behind an empty queue
          await conn.write('end');
          outcome = 'done';
        } catch (err) {
          outcome = err;
        }
      },
      { max_buffered: '1MiB', ...(tls ? tlsKeys() : {}) },
    );
    const reader = await client(port, tls);
    let got = 0;
    let tail = Buffer.alloc(0);
    // Slow but steady: one chunk per timer turn.
    reader.on('data', (data: Buffer) => {
      got += data.length;
      tail = Buffer.concat([tail, data]).subarray(-4);
      reader.pause();
      setTimeout(() => reader.resume(), 1);
    });
    await once(reader, 'end');
    expect(got).toBe(size + 4);
    expect(tail.toString()).toBe('!end');
    expect(outcome).toBe('done');
    expect(await metricValue(registry, 'hyp_tcp_send_buffer_closes_total', { service: 'echo' })).toBe(0);
  });
});

describe('max_buffered: 0', () => {
  it('leaves the send side unbounded', async () => {
    let flooded: (flood: Flood) => void = () => {};
    const finished = new Promise<Flood>((resolve) => {
      flooded = resolve;
    });
    const { port } = await start(
      floodOrEcho((flood) => flooded(flood)),
      { max_buffered: '0' },
    );
    const slow = await client(port, false);
    slow.pause();
    slow.write('flood');
    const flood = await finished;
    expect(flood.writes).toBe(maxChunks);
    expect(flood.maxQueued).toBeGreaterThan(16 * MiB);
    expect(flood.reason).toBeUndefined();
  });
});

describe('tcp.<name>.max_buffered', () => {
  it('defaults to 16MiB', () => {
    expect(tcpConfig().max_buffered).toBe('16MiB');
  });

  it('refuses a value that is not a size, naming the key', async () => {
    await expect(start(async () => {}, { max_buffered: 'lots' })).rejects.toThrow(/tcp\.echo\.max_buffered/);
  });
});
