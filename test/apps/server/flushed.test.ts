/**
 * flushedBytes(socket): the bytes of a socket the kernel has taken, moving
 * while one large write flushes to a slow reader — through a TLSSocket too,
 * whose own handle only sees cleartext.
 */
import { once } from 'node:events';
import { readFileSync, rmSync } from 'node:fs';
import { createServer, connect as netConnect, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { createServer as createTlsServer, connect as tlsConnect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { flushedBytes } from '../../../apps/server/flushed.js';
import { selfSignedCertDir } from './tcp/helpers.js';

const size = 8 * 1024 * 1024;
let dir = '';
beforeAll(() => {
  dir = selfSignedCertDir('hyp-flushed-');
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Samples {
  /** Values seen while the write was still pending (before its callback). */
  pending: number[];
  final: number;
  afterClose: number;
}

/** Serve one `size`-byte write; sample flushedBytes of the handler's socket every 10 ms until it closes. */
function serve(tls: boolean): { server: Server; samples: Promise<Samples> } {
  let resolve!: (s: Samples) => void;
  const samples = new Promise<Samples>((r) => {
    resolve = r;
  });
  const onSocket = (socket: Socket) => {
    const pending: number[] = [];
    let writing = true;
    let final = 0;
    socket.on('error', () => {});
    socket.write(Buffer.alloc(size, 1), () => {
      writing = false;
      final = flushedBytes(socket);
    });
    const tick = setInterval(() => {
      if (writing) pending.push(flushedBytes(socket));
    }, 10);
    socket.once('close', () => {
      clearInterval(tick);
      resolve({ pending, final, afterClose: flushedBytes(socket) });
    });
  };
  const server = tls
    ? createTlsServer(
        { cert: readFileSync(join(dir, 'server.pem')), key: readFileSync(join(dir, 'server.key')) },
        onSocket,
      )
    : createServer(onSocket);
  return { server, samples };
}

/** Read `size` bytes at about 4 MiB/s (every 20 ms), then close. */
async function slowRead(port: number, tls: boolean): Promise<number> {
  const socket = tls
    ? tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(join(dir, 'server.pem')) })
    : netConnect({ port, host: '127.0.0.1' });
  socket.pause();
  socket.on('readable', () => {});
  await once(socket, tls ? 'secureConnect' : 'connect');
  let got = 0;
  await new Promise<void>((done) => {
    const limit = setTimeout(finish, 30_000);
    const tick = setInterval(() => {
      let budget = 80 * 1024;
      while (budget > 0 && got < size) {
        const chunk = socket.read(Math.min(budget, socket.readableLength || 1)) as Buffer | null;
        if (chunk === null) break;
        got += chunk.length;
        budget -= chunk.length;
      }
      if (got >= size) finish();
    }, 20);
    function finish() {
      clearInterval(tick);
      clearTimeout(limit);
      done();
    }
  });
  socket.destroy();
  return got;
}

describe.each([
  ['a plain socket', false],
  ['a TLSSocket', true],
])('flushedBytes of %s', (_name, tls) => {
  it('moves while one large write is still pending to a slow reader, and ends at least at its size', async () => {
    const { server, samples } = serve(tls);
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as { port: number }).port;
    const got = await slowRead(port, tls);
    const seen = await samples;
    server.close();
    expect(got).toBe(size);
    // The kernel took bytes in several steps before the write completed.
    // (Before, under TLS: the TLS layer's counters stood still until then.)
    expect(new Set(seen.pending.filter((v) => v > 0)).size).toBeGreaterThan(1);
    expect(seen.final).toBeGreaterThanOrEqual(size);
    expect(seen.afterClose).toBe(-1);
  });
});
