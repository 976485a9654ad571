/**
 * Claims of docs/http.md and docs/tcp.md checked against the runtime (docs audit).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../apps/server/tcp/server.js';
import { dial, startService, until } from './tcp/helpers.js';

let service: TcpService | undefined;
afterEach(async () => {
  await service?.close();
  service = undefined;
});

describe('docs/tcp.md: conn.closeRead() discards further input', () => {
  it('a peer that keeps sending after closeRead() is read and dropped, never stalled by a full window', async () => {
    const total = 32 * 1024 * 1024; // far more than loopback's socket buffers hold
    let handlerSaw = 0;
    const started = await startService(async (conn) => {
      conn.closeRead();
      // Nothing more is handed to the handler: iteration is over at once.
      for await (const chunk of conn) handlerSaw += chunk.length;
      await conn.write('read side closed\n');
      await new Promise((resolve) => conn.signal.addEventListener('abort', resolve, { once: true }));
    });
    service = started.service;
    const socket = await dial(started.port);
    socket.on('error', () => {});
    let flushed = false;
    socket.write(Buffer.alloc(total, 0x61), () => {
      flushed = true;
    });
    // The service counts every byte it read (hyp_tcp_received_bytes_total): all of them, none handed over.
    await until(() => service!.stats.bytesIn >= total, `${total} bytes read and dropped`);
    await until(() => flushed, "the peer's write flushed");
    expect(service.stats.bytesIn).toBe(total);
    expect(handlerSaw).toBe(0);
  });
});

describe('the package root exports what the docs import from it', () => {
  // The hub's public types are checked by the type check of test/fixtures/apps/public-api.ts.
  it("docs/tcp.md's framing helpers come from 'hyp'", async () => {
    const root: Record<string, unknown> = await import('../../../apps/server/index.js');
    for (const name of [
      'readFrames',
      'writeFrame',
      'readLines',
      'writeLine',
      'LineDecoder',
      'LengthPrefixDecoder',
    ])
      expect(typeof root[name], name).toBe('function');
    // A line service as docs/tcp.md writes it, through the root's exports.
    const { readLines, writeLine } = root as typeof import('../../../apps/server/tcp/index.js');
    const started = await startService(async (conn) => {
      for await (const line of readLines(conn, { maxLine: 8192 }))
        await writeLine(conn, line.toString('utf8').toUpperCase());
    });
    service = started.service;
    const socket = await dial(started.port);
    let got = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      got += d;
    });
    socket.write('hello\n');
    await until(() => got === 'HELLO\n', 'the line echoed upper-case');
    socket.destroy();
  });
});
