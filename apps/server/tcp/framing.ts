/**
 * Framing helpers for TCP handlers (golib leaves framing to the user):
 *
 * - length-prefixed frames: a u16 or u32 big-endian length, then the payload;
 *   a length above `maxFrame` is refused as soon as the header is complete,
 *   before a single payload byte is buffered;
 * - delimited lines: bytes up to a one-byte delimiter (`\n` by default);
 *   a line longer than `maxLine` is refused as soon as that many bytes
 *   arrived without a delimiter.
 *
 * Decoders are push-based and hold at most one frame (or line) plus one
 * chunk. The `read*` helpers drive them from a connection and, on a
 * violation, fail the connection (error callback + close) and throw.
 */
import { HypError } from '../../../supervisor/errors.js';
import type { TcpConnection } from './connection.js';

/**
 * A chunk smaller than this, arriving while bytes are already queued, is
 * copied into a spare buffer instead of being queued as its own Buffer: a
 * peer trickling one byte per segment would otherwise cost a Buffer object
 * (about 200 bytes) per byte held, and a walk over all of them per search.
 */
const coalesceBelow = 1024;
const spareSize = 16 * 1024;

/**
 * Chunks received but not yet consumed, with zero-copy takes when possible.
 * Holds at most `length` bytes in at most about `length / 512` chunks, plus
 * one spare buffer; searches start from the end, so a trickled line costs
 * O(new bytes) per push, not O(bytes held).
 */
class ChunkQueue {
  private readonly chunks: Buffer[] = [];
  /** Bytes buffered. */
  length = 0;
  /** Bytes consumed since the start of the stream (for error offsets). */
  consumed = 0;
  /** Owned buffer small chunks are copied into; `[0, spareUsed)` is written and never rewritten. */
  private spare: Buffer | undefined;
  private spareUsed = 0;
  /** The last chunk, when it is a view of `spare` ending at `spareUsed` (it can grow in place). */
  private spareTail: Buffer | undefined;

  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    this.length += n;
    const chunks = this.chunks;
    if (n >= coalesceBelow || chunks.length === 0) {
      chunks.push(chunk);
      return;
    }
    const last = chunks.length - 1;
    let spare = this.spare;
    if (spare === undefined || this.spareUsed + n > spare.length) {
      spare = this.spare = Buffer.allocUnsafeSlow(spareSize);
      this.spareUsed = 0;
      this.spareTail = undefined;
    }
    const at = this.spareUsed;
    chunk.copy(spare, at);
    this.spareUsed = at + n;
    const tail = this.spareTail;
    const grows = tail !== undefined && chunks[last] === tail;
    const view = spare.subarray(grows ? at - tail.length : at, at + n);
    this.spareTail = view;
    if (grows) chunks[last] = view;
    else chunks.push(view);
  }

  /** The byte at `index` (< length) without consuming it. */
  byteAt(index: number): number {
    for (const chunk of this.chunks) {
      if (index < chunk.length) return chunk[index]!;
      index -= chunk.length;
    }
    throw new RangeError('byteAt past the buffered data');
  }

  /** Remove and return the next `n` bytes (n <= length). */
  take(n: number): Buffer {
    this.length -= n;
    this.consumed += n;
    const first = this.chunks[0];
    if (first === undefined || n === 0) return Buffer.alloc(0);
    if (first.length > n) {
      this.chunks[0] = first.subarray(n);
      if (first === this.spareTail) this.spareTail = this.chunks[0];
      return first.subarray(0, n);
    }
    if (first.length === n) {
      this.chunks.shift();
      return first;
    }
    const out = Buffer.allocUnsafe(n);
    let at = 0;
    while (at < n) {
      const chunk = this.chunks[0]!;
      const want = n - at;
      if (chunk.length <= want) {
        chunk.copy(out, at);
        at += chunk.length;
        this.chunks.shift();
      } else {
        chunk.copy(out, at, 0, want);
        this.chunks[0] = chunk.subarray(want);
        if (chunk === this.spareTail) this.spareTail = this.chunks[0];
        at = n;
      }
    }
    return out;
  }

  /** Index of `byte` at or after `from`, or -1; walks only the chunks from `from` on. */
  indexOf(byte: number, from: number): number {
    const chunks = this.chunks;
    let i = chunks.length;
    let base = this.length;
    while (i > 0 && base > from) base -= chunks[--i]!.length;
    for (; i < chunks.length; i++) {
      const chunk = chunks[i]!;
      const found = chunk.indexOf(byte, Math.max(0, from - base));
      if (found >= 0) return base + found;
      base += chunk.length;
    }
    return -1;
  }
}

export interface LengthPrefixOptions {
  /** Header width in bytes: 2 (u16) or 4 (u32). Default 4. */
  width?: 2 | 4;
  /** Largest payload accepted, in bytes. Required: there is no unbounded default. */
  maxFrame: number;
}

function checkMax(value: number, what: string): number {
  if (!Number.isInteger(value) || value < 0)
    throw new RangeError(`${what} must be a non-negative integer, got ${value}`);
  return value;
}

export class LengthPrefixDecoder {
  private readonly queue = new ChunkQueue();
  private readonly width: 2 | 4;
  private readonly maxFrame: number;
  /** Payload length of the frame being assembled, once its header is complete. */
  private pending = -1;

  constructor(opts: LengthPrefixOptions) {
    this.width = opts.width ?? 4;
    if (this.width !== 2 && this.width !== 4) throw new RangeError(`width must be 2 or 4, got ${this.width}`);
    this.maxFrame = checkMax(opts.maxFrame, 'maxFrame');
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** The next complete payload, or `undefined` until more bytes arrive. Throws HYP_E_TCP_FRAME_TOO_LARGE. */
  next(): Buffer | undefined {
    const q = this.queue;
    if (this.pending < 0) {
      if (q.length < this.width) return undefined;
      let size = 0;
      for (let i = 0; i < this.width; i++) size = size * 256 + q.byteAt(i);
      if (size > this.maxFrame) {
        throw new HypError('HYP_E_TCP_FRAME_TOO_LARGE', { size, limit: this.maxFrame, offset: q.consumed });
      }
      q.take(this.width);
      this.pending = size;
    }
    if (q.length < this.pending) return undefined;
    const frame = q.take(this.pending);
    this.pending = -1;
    return frame;
  }

  /** Bytes held (at most one header + `maxFrame` + one chunk). */
  get buffered(): number {
    return this.queue.length;
  }
}

/** Header + payload as one buffer. Throws RangeError when `payload` does not fit the width. */
export function encodeFrame(payload: Uint8Array, width: 2 | 4 = 4): Buffer {
  const max = width === 2 ? 0xffff : 0xffffffff;
  if (payload.byteLength > max)
    throw new RangeError(`payload of ${payload.byteLength} bytes does not fit a u${width * 8} length`);
  const out = Buffer.allocUnsafe(width + payload.byteLength);
  if (width === 2) out.writeUInt16BE(payload.byteLength, 0);
  else out.writeUInt32BE(payload.byteLength, 0);
  out.set(payload, width);
  return out;
}

export interface LineOptions {
  /** Largest line accepted, delimiter excluded, in bytes. Required. */
  maxLine: number;
  /** One-byte delimiter. Default `\n`. */
  delimiter?: number | string;
  /** Drop a `\r` before the delimiter (CRLF protocols). Default false. */
  trimCR?: boolean;
}

function delimiterByte(d: number | string | undefined): number {
  if (d === undefined) return 0x0a;
  const byte = typeof d === 'string' ? (d.length === 1 ? d.charCodeAt(0) : -1) : d;
  if (!Number.isInteger(byte) || byte < 0 || byte > 255)
    throw new RangeError(`delimiter must be one byte, got ${JSON.stringify(d)}`);
  return byte;
}

export class LineDecoder {
  private readonly queue = new ChunkQueue();
  private readonly delimiter: number;
  private readonly maxLine: number;
  private readonly trimCR: boolean;
  /** Bytes already searched without finding the delimiter. */
  private scanned = 0;

  constructor(opts: LineOptions) {
    this.delimiter = delimiterByte(opts.delimiter);
    this.maxLine = checkMax(opts.maxLine, 'maxLine');
    this.trimCR = opts.trimCR ?? false;
  }

  push(chunk: Buffer): void {
    this.queue.push(chunk);
  }

  /** The next line without its delimiter, or `undefined` until one is complete. Throws HYP_E_TCP_LINE_TOO_LONG. */
  next(): Buffer | undefined {
    const q = this.queue;
    const at = q.indexOf(this.delimiter, this.scanned);
    const limit = this.maxLine + (this.trimCR ? 1 : 0);
    if (at < 0) {
      this.scanned = q.length;
      if (q.length > limit)
        throw new HypError('HYP_E_TCP_LINE_TOO_LONG', { limit: this.maxLine, offset: q.consumed });
      return undefined;
    }
    if (at > limit)
      throw new HypError('HYP_E_TCP_LINE_TOO_LONG', { limit: this.maxLine, offset: q.consumed });
    this.scanned = 0;
    let line = q.take(at + 1).subarray(0, at);
    if (this.trimCR && line.length > 0 && line[line.length - 1] === 0x0d)
      line = line.subarray(0, line.length - 1);
    if (line.length > this.maxLine)
      throw new HypError('HYP_E_TCP_LINE_TOO_LONG', { limit: this.maxLine, offset: q.consumed - at - 1 });
    return line;
  }

  get buffered(): number {
    return this.queue.length;
  }
}

/** Newline-terminated (or `delimiter`-terminated) write. */
export function encodeLine(line: string | Uint8Array, delimiter: number | string = 0x0a): Buffer {
  const byte = delimiterByte(delimiter);
  const body = typeof line === 'string' ? Buffer.from(line) : line;
  const out = Buffer.allocUnsafe(body.byteLength + 1);
  out.set(body, 0);
  out[body.byteLength] = byte;
  return out;
}

interface Decoder {
  push(chunk: Buffer): void;
  next(): Buffer | undefined;
}

async function* decode(
  conn: TcpConnection<object>,
  decoder: Decoder,
): AsyncGenerator<Buffer, void, undefined> {
  for (;;) {
    let item: Buffer | undefined;
    try {
      item = decoder.next();
    } catch (err) {
      conn.fail(err as Error);
      throw err;
    }
    if (item !== undefined) {
      yield item;
      continue;
    }
    const chunk = await conn.read();
    if (chunk === null) return;
    decoder.push(chunk);
  }
}

/** `for await (const frame of readFrames(conn, { width: 2, maxFrame: 65_535 }))`. */
export function readFrames(
  conn: TcpConnection<object>,
  opts: LengthPrefixOptions,
): AsyncGenerator<Buffer, void, undefined> {
  return decode(conn, new LengthPrefixDecoder(opts));
}

/** `for await (const line of readLines(conn, { maxLine: 8192 }))`. */
export function readLines(
  conn: TcpConnection<object>,
  opts: LineOptions,
): AsyncGenerator<Buffer, void, undefined> {
  return decode(conn, new LineDecoder(opts));
}

export function writeFrame(
  conn: TcpConnection<object>,
  payload: Uint8Array,
  width: 2 | 4 = 4,
): Promise<void> {
  return conn.write(encodeFrame(payload, width));
}

export function writeLine(
  conn: TcpConnection<object>,
  line: string | Uint8Array,
  delimiter: number | string = 0x0a,
): Promise<void> {
  return conn.write(encodeLine(line, delimiter));
}
