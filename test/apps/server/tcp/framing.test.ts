import fc from 'fast-check';
import { afterEach, describe, expect, it } from 'vitest';
import {
  encodeFrame,
  encodeLine,
  LengthPrefixDecoder,
  LineDecoder,
  readFrames,
  readLines,
  writeFrame,
  writeLine,
} from '../../../../apps/server/tcp/framing.js';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { closedByPeer, dial, readBytes, startService, until } from './helpers.js';

function feed(
  decoder: { push(b: Buffer): void; next(): Buffer | undefined },
  bytes: Buffer,
  cuts: number[],
): Buffer[] {
  const out: Buffer[] = [];
  let at = 0;
  for (const cut of [...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length]) {
    decoder.push(bytes.subarray(at, cut));
    at = cut;
    for (let f = decoder.next(); f !== undefined; f = decoder.next()) out.push(Buffer.from(f));
  }
  return out;
}

describe('length-prefixed frames', () => {
  it('decodes any sequence of frames however the stream is split (u16 and u32)', () => {
    fc.assert(
      fc.property(
        fc.array(fc.uint8Array({ maxLength: 300 }), { maxLength: 20 }),
        fc.constantFrom<2 | 4>(2, 4),
        fc.array(fc.nat(8000), { maxLength: 10 }),
        (payloads, width, cuts) => {
          const stream = Buffer.concat(payloads.map((p) => encodeFrame(p, width)));
          const frames = feed(new LengthPrefixDecoder({ width, maxFrame: 300 }), stream, cuts);
          expect(frames.map((f) => [...f])).toEqual(payloads.map((p) => [...p]));
        },
      ),
    );
  });

  it('refuses a length above maxFrame as soon as the header is complete, naming size, limit and offset', () => {
    const decoder = new LengthPrefixDecoder({ width: 4, maxFrame: 1024 });
    decoder.push(encodeFrame(Buffer.from('ok')));
    expect(decoder.next()?.toString()).toBe('ok');
    decoder.push(Buffer.from([0xff, 0xff, 0xff, 0xf0]));
    expect(() => decoder.next()).toThrow('frame of 4294967280 bytes at byte 6 exceeds the limit of 1024');
    expect(decoder.buffered).toBe(4);
  });

  it('rejects bad options and payloads that do not fit the header', () => {
    expect(() => new LengthPrefixDecoder({ width: 3 as 2, maxFrame: 1 })).toThrow(RangeError);
    expect(() => new LengthPrefixDecoder({ maxFrame: -1 })).toThrow(RangeError);
    expect(() => encodeFrame(Buffer.alloc(70_000), 2)).toThrow(/does not fit a u16/);
  });
});

describe('delimited lines', () => {
  it('splits lines however the stream is split, with optional CRLF trimming', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.string({ maxLength: 40 }).map((s) => s.replace(/[\r\n]/g, '')),
          { maxLength: 20 },
        ),
        fc.array(fc.nat(2000), { maxLength: 10 }),
        (lines, cuts) => {
          const stream = Buffer.from(lines.map((l) => `${l}\r\n`).join(''));
          const out = feed(new LineDecoder({ maxLine: 200, trimCR: true }), stream, cuts);
          expect(out.map((b) => b.toString())).toEqual(lines);
        },
      ),
    );
  });

  it('refuses a line longer than maxLine before its delimiter arrives', () => {
    const decoder = new LineDecoder({ maxLine: 8 });
    decoder.push(Buffer.from('short\n0123'));
    expect(decoder.next()?.toString()).toBe('short');
    expect(decoder.next()).toBeUndefined();
    decoder.push(Buffer.from('456789'));
    expect(() => decoder.next()).toThrow('line starting at byte 6 exceeds 8 bytes');
  });

  it('takes a custom one-byte delimiter and refuses longer ones', () => {
    const decoder = new LineDecoder({ maxLine: 10, delimiter: '\0' });
    decoder.push(Buffer.from('a\0b\0'));
    expect([decoder.next()?.toString(), decoder.next()?.toString()]).toEqual(['a', 'b']);
    expect(() => new LineDecoder({ maxLine: 1, delimiter: '\r\n' })).toThrow(/one byte/);
    expect(encodeLine('x', ';').toString()).toBe('x;');
  });
});

describe('framing on live connections', () => {
  const services: TcpService<object>[] = [];
  afterEach(async () => {
    await Promise.all(services.splice(0).map((s) => s.close()));
  });

  async function start(handler: Parameters<typeof startService>[0]) {
    const errors: Error[] = [];
    const bytesReadAtClose: number[] = [];
    const started = await startService(
      handler,
      {},
      {
        onError: (...e) => errors.push(...e),
        updateConn: (socket) => socket.on('close', () => bytesReadAtClose.push(socket.bytesRead)),
      },
    );
    services.push(started.service as TcpService<object>);
    return { ...started, errors, bytesReadAtClose };
  }

  it('an oversized length prefix closes that connection with HYP_E_TCP_FRAME_TOO_LARGE; others go on', async () => {
    const { port, errors } = await start(async (conn) => {
      for await (const frame of readFrames(conn, { width: 4, maxFrame: 64 * 1024 }))
        await writeFrame(conn, frame);
    });
    const good = await dial(port);
    const bad = await dial(port);
    // Announce 3 GiB: the server must refuse without allocating it.
    const header = Buffer.alloc(4);
    header.writeUInt32BE(3 * 1024 ** 3);
    bad.write(header);
    await closedByPeer(bad);
    good.write(encodeFrame(Buffer.from('still framed')));
    const reply = await readBytes(good, 4 + 12);
    expect(reply.subarray(4).toString()).toBe('still framed');
    expect(errors).toHaveLength(1);
    expect(isHypError(errors[0], 'HYP_E_TCP_FRAME_TOO_LARGE')).toBe(true);
    good.destroy();
  });

  it('an endless line is cut off at maxLine: bounded reads, error callback, neighbours unaffected', async () => {
    const maxLine = 16 * 1024;
    const { port, errors, bytesReadAtClose } = await start(async (conn) => {
      for await (const line of readLines(conn, { maxLine })) await writeLine(conn, line);
    });
    const good = await dial(port);
    const bad = await dial(port);
    bad.on('error', () => {});
    // Up to 64 MiB without a newline, written as fast as the socket takes it.
    const junk = Buffer.alloc(256 * 1024, 0x61);
    let sent = 0;
    const closed = closedByPeer(bad);
    const pump = async () => {
      while (!bad.destroyed && sent < 64 * 1024 * 1024) {
        sent += junk.length;
        if (!bad.write(junk)) await new Promise((r) => bad.once('drain', r).once('close', r));
      }
    };
    await Promise.all([pump(), closed]);
    await until(() => bytesReadAtClose.length === 1, 'the bad connection closed on the server');
    expect(isHypError(errors[0], 'HYP_E_TCP_LINE_TOO_LONG')).toBe(true);
    // The server stopped reading long before the client stopped sending.
    expect(bytesReadAtClose[0]).toBeLessThan(maxLine + 2 * 1024 * 1024);
    good.write('hello\n');
    expect((await readBytes(good, 6)).toString()).toBe('hello\n');
    good.destroy();
  });
});
