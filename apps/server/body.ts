/**
 * Request bodies: read with a byte limit (413 `HYP_E_BODY_TOO_LARGE`, before
 * a byte is read when Content-Length already says so), then parse as JSON,
 * text, form or raw bytes. Parse failures are 400 `HYP_E_BODY_INVALID` with
 * the parser's position; unsupported types and content encodings are 415.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import { constants, type Http2ServerRequest } from 'node:http2';
import { HypError } from '../../supervisor/errors.js';

export type BodyKind = 'json' | 'text' | 'form' | 'raw';

/** What `c.body(kind)` resolves to. */
export interface BodyTypes {
  json: unknown;
  text: string;
  form: URLSearchParams;
  raw: Buffer;
}

type Request = IncomingMessage | Http2ServerRequest;

const kContinue = Symbol('hyp.continue');
type Continuable = IncomingMessage & { [kContinue]?: ServerResponse };

/**
 * The HTTP/1.1 server's 'checkContinue' listener, in front of `handler`: a
 * request with `Expect: 100-continue` gets its `100 Continue` now when its
 * Content-Length fits `limit` (or it has none), as Node's default would;
 * otherwise only when something starts reading the body (`readBody`, a
 * mounted app), so a body over the limit is refused with 413 before the
 * client sends it, and a handler that answers without reading (401, say)
 * never asks for it. Node closes the connection after an answer that
 * followed no `100 Continue`.
 */
export function checkContinue(
  limit: number,
  handler: (req: IncomingMessage, res: ServerResponse) => void,
): (req: IncomingMessage, res: ServerResponse) => void {
  return (req, res) => {
    const declared = req.headers['content-length'];
    if (declared !== undefined && Number(declared) > limit) (req as Continuable)[kContinue] = res;
    else res.writeContinue();
    handler(req, res);
  };
}

/** Send the `100 Continue` a request is still waiting for (see `checkContinue`), once. */
export function sendContinue(req: Request): void {
  const res = (req as Continuable)[kContinue];
  if (res === undefined) return;
  (req as Continuable)[kContinue] = undefined;
  if (!res.headersSent) res.writeContinue();
}

/** Read the whole body, refusing more than `limit` bytes. */
export function readBody(req: Request, limit: number): Promise<Buffer> {
  const encoding = req.headers['content-encoding'];
  if (encoding !== undefined && !isIdentity(encoding)) {
    return Promise.reject(
      new HypError('HYP_E_UNSUPPORTED_MEDIA_TYPE', { type: `content-encoding ${encoding}` }),
    );
  }
  // The client went away before the read began: its 'aborted'/'error' already
  // fired (or, for an HTTP/2 compat request built after the reset, never will),
  // and the 'end' an HTTP/2 compat request still emits would close a truncated
  // (or dumped) body as if it were whole.
  if (req.aborted || (req.httpVersionMajor === 2 && (req as Http2ServerRequest).stream.aborted))
    return Promise.reject(aborted());
  // Already consumed (by a mounted app or a middleware reading the stream): nothing more will come.
  if (req.readableEnded) return Promise.resolve(Buffer.alloc(0));
  // Destroyed before its end (HTTP/1.1 socket gone): no event will come either.
  if (req.destroyed) return Promise.reject(aborted());
  const declared = req.headers['content-length'];
  if (declared !== undefined && Number(declared) > limit) {
    return Promise.reject(new HypError('HYP_E_BODY_TOO_LARGE', { limit }));
  }
  sendContinue(req);
  return new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    const cleanup = () => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
    };
    const onData = (chunk: Buffer) => {
      size += chunk.length;
      if (size > limit) {
        cleanup();
        req.pause();
        if (req.httpVersionMajor === 2) stopUpload(req as Http2ServerRequest);
        reject(new HypError('HYP_E_BODY_TOO_LARGE', { limit }));
        return;
      }
      chunks.push(chunk);
    };
    const onEnd = () => {
      cleanup();
      if (req.httpVersionMajor === 2 && cutShort(req as Http2ServerRequest, size)) {
        reject(aborted());
        return;
      }
      resolve(chunks.length === 1 ? chunks[0]! : Buffer.concat(chunks, size));
    };
    const onError = (err: Error) => {
      cleanup();
      reject(
        new HypError('HYP_E_BAD_REQUEST', { detail: `request body failed: ${err.message}` }, { cause: err }),
      );
    };
    const onAborted = () => onError(new Error('client aborted the request'));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
    req.resume();
  });
}

/**
 * A Content-Encoding list that names no coding: empty (RFC 9110 §5.6.1
 * lets list elements be empty; body-parser reads an empty value as
 * identity too) or only `identity`.
 */
function isIdentity(encoding: string): boolean {
  for (const coding of encoding.split(',')) {
    const name = coding.trim().toLowerCase();
    if (name !== '' && name !== 'identity') return false;
  }
  return true;
}

/**
 * HTTP/2, a body refused part way: once the answer (the 413) is out, ask the
 * client to stop sending (RST_STREAM NO_ERROR, RFC 9113 §8.1). Node does so
 * itself only for a request nothing began to read; this one was read up to
 * the limit and paused, so the client waited on flow control for ever and
 * the stream stayed open: in flight, holding a drain to its deadline.
 *
 * The reset must not overtake the answer's END_STREAM (a Node 20 client
 * then never closes its stream): it is sent once the stream's local side
 * has closed, and until then what the client sends is read and dropped
 * (at most `maxDropped` bytes, then the reset goes anyway).
 */
function stopUpload(req: Http2ServerRequest): void {
  const stream = req.stream;
  let dropped = 0;
  const resetOnceAnswered = (): boolean => {
    if (stream.closed || stream.destroyed) return true;
    if (stream.state.localClose !== 1 && dropped <= maxDropped) return false;
    stream.close(constants.NGHTTP2_NO_ERROR);
    return true;
  };
  const answered = () => {
    if (resetOnceAnswered()) return;
    req.on('data', (chunk: Buffer) => {
      dropped += chunk.length;
      resetOnceAnswered();
    });
    req.resume();
  };
  if (stream.writableFinished) answered();
  else stream.once('finish', answered);
}

/** Bytes of a refused HTTP/2 upload dropped while its answer's END_STREAM goes out. */
const maxDropped = 1024 * 1024;

/**
 * HTTP/2: Node's compat request also ends when its stream closes, and a reset
 * after the answer went out (the 408 of the request timeout, an early answer)
 * brings no 'aborted'. The upload is cut short if the stream was reset with an
 * error code, or if fewer bytes came than Content-Length said (a complete one
 * matches it: nghttp2 checks that at END_STREAM).
 */
function cutShort(req: Http2ServerRequest, size: number): boolean {
  const stream = req.stream;
  if (stream.closed && stream.rstCode !== undefined && stream.rstCode !== constants.NGHTTP2_NO_ERROR)
    return true;
  const declared = req.headers['content-length'];
  return declared !== undefined && Number(declared) !== size;
}

function aborted(): HypError {
  return new HypError('HYP_E_BAD_REQUEST', { detail: 'request body failed: client aborted the request' });
}

/** The body kind implied by a Content-Type header, `undefined` if none fits. */
export function kindOf(contentType: string | undefined): BodyKind | undefined {
  if (!contentType) return 'raw';
  const type = mediaType(contentType);
  if (type === 'application/json' || type.endsWith('+json')) return 'json';
  if (type === 'application/x-www-form-urlencoded') return 'form';
  if (type.startsWith('text/')) return 'text';
  if (type === 'application/octet-stream') return 'raw';
  if (type.startsWith('multipart/')) return undefined;
  return 'raw';
}

export function parseBody<K extends BodyKind>(
  bytes: Buffer,
  kind: K,
  contentType: string | undefined,
): BodyTypes[K] {
  if (kind === 'raw') return bytes as BodyTypes[K];
  const text = decodeText(bytes, contentType);
  if (kind === 'text') return text as BodyTypes[K];
  if (kind === 'form') return new URLSearchParams(text) as BodyTypes[K];
  if (text.length === 0)
    throw new HypError('HYP_E_BODY_INVALID', { kind: 'JSON', detail: 'the body is empty' });
  // Fewer bytes than the limit cannot nest deeper than it.
  if (bytes.length > maxJsonDepth) {
    const at = tooDeep(bytes, maxJsonDepth);
    if (at >= 0)
      throw new HypError('HYP_E_BODY_INVALID', {
        kind: 'JSON',
        detail: `nesting deeper than ${maxJsonDepth} levels at byte offset ${at}`,
      });
  }
  try {
    return JSON.parse(text) as BodyTypes[K];
  } catch (err) {
    throw new HypError(
      'HYP_E_BODY_INVALID',
      { kind: 'JSON', detail: (err as Error).message },
      { cause: err },
    );
  }
}

/**
 * Deepest JSON nesting accepted. V8 parses any depth, but the value would
 * then overflow the stack of whatever walks it recursively — `c.json()` of
 * it, a logger, a validator — and a client could turn any JSON route into a
 * 500 with a stack trace in the log.
 */
export const maxJsonDepth = 512;

/** Byte offset of the first `[`/`{` nested deeper than `max` (outside strings), or -1. */
function tooDeep(bytes: Buffer, max: number): number {
  let depth = 0;
  let inString = false;
  for (let i = 0; i < bytes.length; i++) {
    const b = bytes[i]!;
    if (inString) {
      if (b === 0x5c /* \ */) i++;
      else if (b === 0x22 /* " */) inString = false;
    } else if (b === 0x22) {
      inString = true;
    } else if (b === 0x5b /* [ */ || b === 0x7b /* { */) {
      if (++depth > max) return i;
    } else if (b === 0x5d /* ] */ || b === 0x7d /* } */) {
      depth--;
    }
  }
  return -1;
}

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: false });

function decodeText(bytes: Buffer, contentType: string | undefined): string {
  const charset = contentType
    ? /;\s*charset\s*=\s*"?([\w-]+)"?/i.exec(contentType)?.[1]?.toLowerCase()
    : undefined;
  if (charset !== undefined && charset !== 'utf-8' && charset !== 'utf8' && charset !== 'us-ascii') {
    throw new HypError('HYP_E_UNSUPPORTED_MEDIA_TYPE', {
      type: `${mediaType(contentType!)}; charset=${charset}`,
    });
  }
  try {
    return utf8.decode(bytes);
  } catch (err) {
    const at = firstInvalidUtf8(bytes);
    throw new HypError(
      'HYP_E_BODY_INVALID',
      { kind: 'UTF-8', detail: `invalid byte at offset ${at}` },
      { cause: err },
    );
  }
}

function mediaType(contentType: string): string {
  const semi = contentType.indexOf(';');
  return (semi < 0 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
}

/** Offset of the first byte that breaks UTF-8 (for the error message). */
function firstInvalidUtf8(bytes: Buffer): number {
  let i = 0;
  while (i < bytes.length) {
    const b = bytes[i]!;
    const len = b < 0x80 ? 1 : b >> 5 === 0b110 ? 2 : b >> 4 === 0b1110 ? 3 : b >> 3 === 0b11110 ? 4 : 0;
    if (len === 0 || i + len > bytes.length) return i;
    const seq = bytes.subarray(i, i + len);
    // Bad continuation, overlong or surrogate sequences decode to U+FFFD (EF BF BD is U+FFFD itself).
    if (len > 1 && seq.toString('utf8') !== String.fromCodePoint(seq.toString('utf8').codePointAt(0)!))
      return i;
    if (
      len > 1 &&
      seq.toString('utf8') === '\ufffd' &&
      !(len === 3 && b === 0xef && seq[1] === 0xbf && seq[2] === 0xbd)
    ) {
      return i;
    }
    i += len;
  }
  return i;
}
