/**
 * Large HTTP/2 writes go out in slices, one slice handed to Node's native
 * stream at a time.
 *
 * Node's HTTP/2 (20 and 26 alike) counts every byte a stream hands to its
 * native side against the session's `maxSessionMemory` (10 MiB by default)
 * until nghttp2 takes it for a DATA frame; when the stream is destroyed
 * first (the client reset it, or stopped reading), the bytes still queued
 * are freed but never uncounted. An answer written as one chunk
 * (`c.json(big)`, `res.end(big)`) is queued whole, so:
 *   - a few multi-MiB answers in flight at once fill the budget, and every
 *     new stream on the session is refused with `ENHANCE_YOUR_CALM`;
 *   - each client cancel of such an answer leaks its unsent remainder for
 *     good: after a few, the session refuses every request, and Node
 *     destroys it once it has refused enough.
 *
 * Here a server stream's `write`/`end` with more than `sliceBytes` splits
 * the chunk into `sliceBytes` views (no copy for Buffers), and that stream
 * stops batching its buffered writes (`_writev`), so the stream's Writable
 * dispatches one slice at a time, each once the one before has left for
 * the socket. At most one slice is queued natively, so a cancel leaks at
 * most `sliceBytes`. Writes of `sliceBytes` or less take Node's path
 * untouched, for the cost of a type and length check and one counter
 * (`given`). Whatever any stream leaves unsent when it is destroyed
 * unfinished, up to `sliceBytes`, is counted per session (`onAbandoned`),
 * which the session tracker turns into a GOAWAY before the budget runs out.
 *
 * The same `write`/`end` hold a response to the `content-length` it sent:
 * a write that would carry the body past it resets the stream with
 * `INTERNAL_ERROR` instead (`onOverrun` is told). Node's own HTTP/2 sends
 * such a body, and a Node 22+ client (nghttp2 ≥ 1.61) then ends its whole
 * session with PROTOCOL_ERROR, failing every other request on the
 * connection; with the reset only this request fails, as it must.
 */
import { constants, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import { HypError } from '../../../supervisor/errors.js';

/** The largest piece of an answer queued natively at once. */
export const sliceBytes = 64 * 1024;

type Write = (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
type End = (chunk?: unknown, encoding?: unknown, cb?: unknown) => unknown;

type Destroy = (err: Error | null, callback: (err?: Error | null) => void) => void;

interface SlicedProto {
  write: Write;
  end: End;
  _destroy: Destroy;
  [kInstalled]?: true;
}

type SlicedStream = Omit<ServerHttp2Stream, '_writev'> & {
  _writev: unknown;
  [kGiven]?: number;
  [kAnnounced]?: number;
  [kSent]?: number;
};

const kInstalled = Symbol('hyp.h2.slices');
const kGiven = Symbol('hyp.h2.given');
/** The `content-length` the stream sent, once its headers are out; -1: none. */
const kAnnounced = Symbol('hyp.h2.announced');
/** Body bytes written so far, counted only when a length was announced. */
const kSent = Symbol('hyp.h2.sent');

/**
 * What the stream has been given to send, in its Writable's units (bytes;
 * characters for a string), counted by the `write`/`end` installed here:
 * `given(stream) - stream.writableLength` only grows, as writes complete
 * (the HTTP/2 send timeout's measure of progress, stream-stall.ts).
 */
export function given(stream: ServerHttp2Stream): number {
  return (stream as SlicedStream)[kGiven] ?? 0;
}

function count(stream: SlicedStream, chunk: unknown): void {
  const n = typeof chunk === 'string' ? chunk.length : chunk instanceof Uint8Array ? chunk.byteLength : 0;
  stream[kGiven] = (stream[kGiven] ?? 0) + n;
}

/** Told, when a stream that wrote in slices closes unfinished, how many queued bytes Node may have lost count of. */
export type AbandonedListener = (session: ServerHttp2Session, bytes: number) => void;

/** Told that a write would have carried a stream's body past its `content-length` (`sent` > `announced`); the stream is reset. */
export type OverrunListener = (stream: ServerHttp2Stream, announced: number, sent: number) => void;

let abandoned: AbandonedListener = () => {};
let overrun: OverrunListener = () => {};

/**
 * Install the sliced `write`/`end` on the prototype of `stream` (Node's
 * `ServerHttp2Stream`, which it does not export), once per process.
 */
export function installSlices(
  stream: ServerHttp2Stream,
  onAbandoned: AbandonedListener,
  onOverrun: OverrunListener,
): void {
  abandoned = onAbandoned;
  overrun = onOverrun;
  const proto = Object.getPrototypeOf(stream) as SlicedProto;
  // Once per process (every server's streams share the prototype).
  if (proto[kInstalled]) return;
  proto[kInstalled] = true;
  const write = proto.write;
  const end = proto.end;
  const destroy = proto._destroy;
  // Every stream, sliced or not, ends here, with its Writable's count of
  // unsent bytes still intact (Node fails the buffered writes later): what
  // it leaves queued natively is charged to its session. On the prototype,
  // not a 'close' listener per stream: nothing is added to a request's cost.
  proto._destroy = function (this: SlicedStream, err, callback): void {
    if (!this.writableFinished) {
      const unsent = Math.min(this.writableLength, sliceBytes);
      const session = this.session as ServerHttp2Session | undefined;
      if (unsent > 0 && session !== undefined) abandoned(session, unsent);
    }
    destroy.call(this, err, callback);
  };
  proto.write = function (this: SlicedStream, chunk: unknown, encoding?: unknown, cb?: unknown): boolean {
    if (overruns(this, chunk, encoding)) return refuse(this, cb, encoding);
    if (!isLarge(chunk)) {
      count(this, chunk);
      return write.call(this, chunk, encoding, cb);
    }
    return writeSliced(this, write, chunk, encoding, cb);
  };
  proto.end = function (this: SlicedStream, chunk?: unknown, encoding?: unknown, cb?: unknown): unknown {
    if (overruns(this, chunk, encoding)) {
      refuse(this, cb, encoding);
      return this;
    }
    if (!isLarge(chunk)) {
      count(this, chunk);
      return end.call(this, chunk, encoding, cb);
    }
    if (typeof encoding === 'function') {
      cb = encoding;
      encoding = undefined;
    }
    writeSliced(this, write, chunk, encoding, undefined);
    return end.call(this, cb);
  };
}

/**
 * Would `chunk` carry the body past the `content-length` the stream sent?
 * Then the stream is reset (`INTERNAL_ERROR`) and `overrun` told. Costs a
 * symbol read per write when no length was sent, one header read per stream.
 */
function overruns(stream: SlicedStream, chunk: unknown, encoding: unknown): boolean {
  let announced = stream[kAnnounced];
  if (announced === undefined) {
    const headers = stream.sentHeaders as Record<string, unknown> | undefined;
    // Not responded yet: Node refuses the write itself.
    if (headers === undefined) return false;
    announced = contentLength(headers['content-length']);
    stream[kAnnounced] = announced;
  }
  if (announced < 0) return false;
  const n =
    typeof chunk === 'string'
      ? Buffer.byteLength(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
      : chunk instanceof Uint8Array
        ? chunk.byteLength
        : 0;
  const sent = (stream[kSent] ?? 0) + n;
  if (sent <= announced) {
    stream[kSent] = sent;
    return false;
  }
  // Reported once: later writes find the stream closed and Node refuses them.
  if (!stream.closed && !stream.destroyed) {
    stream.close(constants.NGHTTP2_INTERNAL_ERROR);
    overrun(stream as ServerHttp2Stream, announced, sent);
  }
  stream[kSent] = sent;
  return true;
}

/** A `content-length` header value as sent: its length, or -1 (none, or not one number). */
function contentLength(value: unknown): number {
  const n = typeof value === 'number' ? value : typeof value === 'string' ? Number(value) : Number.NaN;
  return Number.isSafeInteger(n) && n >= 0 ? n : -1;
}

/** How a body overran its length, for the log and the refused write's error. */
export function overrunDetail(announced: number, sent: number): string {
  return `${announced} bytes announced, a write would make it ${sent}`;
}

/** The refused write's callback, as Node calls back a write it refuses: with an error, later. */
function refuse(stream: SlicedStream, cb: unknown, encoding: unknown): false {
  const callback = typeof cb === 'function' ? cb : typeof encoding === 'function' ? encoding : undefined;
  if (callback !== undefined) {
    const err = new HypError('HYP_E_RESPONSE_LENGTH', {
      detail: overrunDetail(stream[kAnnounced] ?? 0, stream[kSent] ?? 0),
    });
    process.nextTick(callback as (err: Error) => void, err);
  }
  return false;
}

function isLarge(chunk: unknown): chunk is string | Uint8Array {
  if (typeof chunk === 'string') return chunk.length > sliceBytes;
  return chunk instanceof Uint8Array && chunk.byteLength > sliceBytes;
}

function writeSliced(
  stream: SlicedStream,
  write: Write,
  chunk: string | Uint8Array,
  encoding: unknown,
  cb: unknown,
): boolean {
  if (typeof encoding === 'function') {
    cb = encoding;
    encoding = undefined;
  }
  // Ended or destroyed: Node's own write reports it, once.
  if (stream.writableEnded || stream.destroyed) return write.call(stream, chunk, encoding, cb);
  const bytes =
    typeof chunk === 'string'
      ? Buffer.from(chunk, typeof encoding === 'string' ? (encoding as BufferEncoding) : 'utf8')
      : chunk;
  // One slice per native write: the Writable then hands its buffer over
  // chunk by chunk instead of all at once.
  stream._writev = null;
  count(stream, bytes);
  let ok = true;
  for (let offset = 0; offset < bytes.byteLength; offset += sliceBytes) {
    const last = offset + sliceBytes >= bytes.byteLength;
    ok = write.call(stream, bytes.subarray(offset, offset + sliceBytes), undefined, last ? cb : undefined);
  }
  return ok;
}
