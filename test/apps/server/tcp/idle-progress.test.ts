/**
 * The idle sweeper counts a large write being flushed as progress: bytes the
 * kernel takes while a slow reader reads are not idleness, plain or TLS. A
 * peer that stops reading is still closed at `idle_timeout`.
 */
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { selfSignedCertDir, startService, until } from './helpers.js';

const MiB = 1024 * 1024;

/**
 * The kernel's largest TCP send buffer (Linux `tcp_wmem` maximum, 4 MiB by
 * default). It reports room in steps of about a third of it, so a reader
 * that reads this much per idle timeout shows progress three times per timeout.
 */
function sendBufferMax(): number {
  try {
    const max = Number(readFileSync('/proc/sys/net/ipv4/tcp_wmem', 'utf8').trim().split(/\s+/)[2]);
    return Number.isFinite(max) && max > 0 ? max : 4 * MiB;
  } catch {
    return 4 * MiB;
  }
}

let dir = '';
beforeAll(() => {
  dir = selfSignedCertDir('hyp-tcp-idle-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const services: TcpService<object>[] = [];
const clients: Socket[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.destroy();
  await Promise.all(services.splice(0).map((s) => s.close()));
});

interface Outcome {
  /** How the handler's single awaited write ended. */
  write?: 'done' | Error;
  signalReason?: unknown;
}

/** A service whose handler answers every connection with one awaited write of `size` bytes. */
async function serveOneWrite(size: number, idleTimeout: string, tls: boolean) {
  const outcome: Outcome = {};
  const started = await startService(
    async (conn) => {
      try {
        await conn.write(Buffer.alloc(size, 7));
        outcome.write = 'done';
      } catch (err) {
        outcome.write = err as Error;
      }
      outcome.signalReason = conn.signal.reason;
    },
    {
      idle_timeout: idleTimeout,
      ...(tls
        ? {
            tls: {
              enabled: true,
              cert_file: join(dir, 'server.pem'),
              key_file: join(dir, 'server.key'),
              watch: false,
            },
          }
        : {}),
    },
  );
  services.push(started.service as TcpService<object>);
  return { ...started, outcome };
}

async function dialer(port: number, tls: boolean): Promise<Socket> {
  const socket = tls
    ? tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(join(dir, 'server.pem')) })
    : netConnect({ port, host: '127.0.0.1' });
  clients.push(socket);
  socket.on('error', () => {});
  socket.pause();
  await once(socket, tls ? 'secureConnect' : 'connect');
  return socket;
}

/**
 * Read `socket` at about `perSecond` bytes a second (every 20 ms), stopping
 * after `stopAfter` bytes (a reader that stops for good, or the whole answer). Resolves with the byte count once the
 * peer closed, once it stopped, or at `limitMs` (bounded: a stuck run fails, it does not hang).
 */
function pacedRead(socket: Socket, perSecond: number, stopAfter: number, limitMs = 30_000) {
  let got = 0;
  const perTick = Math.ceil(perSecond / 50);
  return new Promise<number>((resolve) => {
    const tick = setInterval(() => {
      let budget = Math.min(perTick, stopAfter - got);
      while (budget > 0) {
        // With nothing buffered, read() returns null and emits 'end' if the peer finished.
        const chunk = socket.read(Math.min(budget, socket.readableLength || 1)) as Buffer | null;
        if (chunk === null) break;
        got += chunk.length;
        budget -= chunk.length;
      }
      if (got >= stopAfter) finish();
    }, 20);
    // Paused mode: `readable` keeps the socket filling its buffer; the tick does the reading.
    socket.on('readable', () => {});
    socket.once('end', finish);
    socket.once('close', finish);
    const limit = setTimeout(finish, limitMs);
    function finish() {
      clearInterval(tick);
      clearTimeout(limit);
      resolve(got);
    }
  });
}

describe.each([
  ['plain', false],
  ['TLS', true],
])('one large awaited write (%s)', (_name, tls) => {
  it('a slow but steady reader gets every byte: bytes the kernel takes are progress, not idleness', async () => {
    // With Linux defaults: 16 MiB read at 4 MiB/s under idle_timeout 1s. The
    // answer takes several idle timeouts to read; the kernel reports room
    // (a third of its send buffer) about three times per timeout.
    const perSecond = sendBufferMax();
    const size = 4 * perSecond;
    const { service, port, outcome } = await serveOneWrite(size, '1s', tls);
    const client = await dialer(port, tls);
    const got = await pacedRead(client, perSecond, size);
    // Before: the one write() was the only activity; the connection was
    // closed one idle_timeout into the transfer, with some 4 MiB read.
    expect(got).toBe(size);
    expect(outcome.write).toBe('done');
    expect(service.stats.idleCloses).toBe(0);
  });

  it('a reader that stops reading mid-answer is still closed at idle_timeout, the write rejected', async () => {
    const size = 32 * MiB;
    const { service, port, outcome } = await serveOneWrite(size, '300ms', tls);
    const client = await dialer(port, tls);
    const got = await pacedRead(client, 8 * MiB, 2 * MiB);
    await until(() => outcome.write !== undefined, 'the handler write to settle');
    expect(service.stats.idleCloses).toBe(1);
    expect(isHypError(outcome.write, 'HYP_E_TCP_CLOSED')).toBe(true);
    expect(isHypError(outcome.signalReason, 'HYP_E_TCP_IDLE')).toBe(true);
    expect(got).toBe(2 * MiB);
    await until(() => service.openConnections() === 0, 'the connection to be gone');
  });
});
