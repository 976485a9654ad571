import type { HypError } from '../../../../supervisor/errors.js';
import {
  type Envelope,
  emptyBytes,
  int64Max,
  int64Min,
  utf8Decoder,
  utf8Encoder,
  utf8StrictDecoder,
} from '../envelope.js';
import type { Codec } from './codec.js';
import { decodeError, withReadable } from './decode-error.js';
import {
  decodeJsonChannelRequest,
  decodeJsonRoomRequest,
  encodeJsonChannelRequest,
  encodeJsonRoomRequest,
} from './json-control.js';
import { escapeText, loneSurrogateEscape } from './surrogates.js';
import { utf8SequenceLength } from './utf8.js';

/**
 * JSON codec (index 0, text frames), HypGo's `Message` with `encoding/json`:
 * `{"type","channel","data","timestamp","client_id"}` where `data` is raw
 * JSON, plus hyp's optional `offset` and `id`. Decoding is a small byte scanner rather than `JSON.parse` because
 * `data` must keep its exact bytes and `timestamp` (int64 nanoseconds)
 * does not fit a double.
 *
 * Data that is not JSON text (a binary payload from a protobuf publisher)
 * is written as a base64 string, as Go writes `[]byte`.
 */

const maxDepth = 256;
const name = 'json';

function fail(detail: string, offset: number, path?: string): never {
  throw decodeError(name, detail, offset, undefined, path);
}

function describe(b: Uint8Array, p: number): string {
  if (p >= b.length) return 'unexpected end of input';
  const c = b[p]!;
  return c >= 0x20 && c < 0x7f
    ? `unexpected character '${String.fromCharCode(c)}'`
    : `unexpected byte 0x${c.toString(16).padStart(2, '0')}`;
}

function skipWs(b: Uint8Array, p: number): number {
  while (p < b.length) {
    const c = b[p]!;
    if (c !== 0x20 && c !== 0x09 && c !== 0x0a && c !== 0x0d) break;
    p++;
  }
  return p;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}

/** Returns the offset after the closing quote; `p` is at the opening quote. */
function scanString(b: Uint8Array, p: number): number {
  p++;
  for (;;) {
    if (p >= b.length) fail('unterminated string', p);
    const c = b[p]!;
    if (c === 0x22) return p + 1;
    if (c === 0x5c) {
      const e = b[p + 1];
      if (e === 0x75) {
        for (let i = 2; i < 6; i++) if (!isHex(b[p + i] ?? 0)) fail('invalid \\u escape', p + i);
        p += 6;
      } else if (
        e === 0x22 ||
        e === 0x5c ||
        e === 0x2f ||
        e === 0x62 ||
        e === 0x66 ||
        e === 0x6e ||
        e === 0x72 ||
        e === 0x74
      ) {
        p += 2;
      } else {
        fail('invalid escape', p + 1);
      }
    } else if (c < 0x20) {
      fail('control character in string', p);
    } else if (c < 0x80) {
      p++;
    } else {
      p += utf8Sequence(b, p);
    }
  }
}

/**
 * Length of the UTF-8 sequence at `p`. JSON text is UTF-8, and a text frame
 * that is not makes every WebSocket peer fail the connection (1007).
 */
function utf8Sequence(b: Uint8Array, p: number): number {
  const length = utf8SequenceLength(b, p);
  if (length > 0) return length;
  const c = b[p]!;
  if (c < 0xc2 || c > 0xf4) return fail(`invalid UTF-8 byte 0x${c.toString(16)}`, p);
  return fail('invalid UTF-8 sequence', p);
}

function scanDigits(b: Uint8Array, p: number): number {
  const start = p;
  while (p < b.length && b[p]! >= 0x30 && b[p]! <= 0x39) p++;
  if (p === start) fail(describe(b, p) + ', expected a digit', p);
  return p;
}

let lastNumberIsInteger = false;

function scanNumber(b: Uint8Array, p: number): number {
  if (b[p] === 0x2d) p++;
  if (b[p] === 0x30) p++;
  else p = scanDigits(b, p);
  lastNumberIsInteger = true;
  if (b[p] === 0x2e) {
    p = scanDigits(b, p + 1);
    lastNumberIsInteger = false;
  }
  if (b[p] === 0x65 || b[p] === 0x45) {
    p++;
    if (b[p] === 0x2b || b[p] === 0x2d) p++;
    p = scanDigits(b, p);
    lastNumberIsInteger = false;
  }
  return p;
}

function scanLiteral(b: Uint8Array, p: number, word: string): number {
  for (let i = 0; i < word.length; i++) {
    if (b[p + i] !== word.charCodeAt(i)) fail(describe(b, p + i) + `, expected '${word}'`, p + i);
  }
  return p + word.length;
}

/** Validates one JSON value starting at `p` (no leading whitespace); returns the offset after it. */
function scanValue(b: Uint8Array, p: number, depth: number): number {
  if (depth > maxDepth) fail(`nesting deeper than ${maxDepth}`, p);
  const c = b[p];
  if (c === 0x22) return scanString(b, p);
  if (c === 0x7b) {
    p = skipWs(b, p + 1);
    if (b[p] === 0x7d) return p + 1;
    for (;;) {
      if (b[p] !== 0x22) fail(describe(b, p) + ', expected an object key', p);
      p = skipWs(b, scanString(b, p));
      if (b[p] !== 0x3a) fail(describe(b, p) + ", expected ':'", p);
      p = skipWs(b, scanValue(b, skipWs(b, p + 1), depth + 1));
      if (b[p] === 0x7d) return p + 1;
      if (b[p] !== 0x2c) fail(describe(b, p) + ", expected ',' or '}'", p);
      p = skipWs(b, p + 1);
    }
  }
  if (c === 0x5b) {
    p = skipWs(b, p + 1);
    if (b[p] === 0x5d) return p + 1;
    for (;;) {
      p = skipWs(b, scanValue(b, p, depth + 1));
      if (b[p] === 0x5d) return p + 1;
      if (b[p] !== 0x2c) fail(describe(b, p) + ", expected ',' or ']'", p);
      p = skipWs(b, p + 1);
    }
  }
  if (c === 0x2d || (c !== undefined && c >= 0x30 && c <= 0x39)) return scanNumber(b, p);
  if (c === 0x74) return scanLiteral(b, p, 'true');
  if (c === 0x66) return scanLiteral(b, p, 'false');
  if (c === 0x6e) return scanLiteral(b, p, 'null');
  return fail(describe(b, p) + ', expected a JSON value', p);
}

/** Whether `bytes` hold exactly one JSON value (whitespace around allowed). */
export function isJsonText(bytes: Uint8Array): boolean {
  try {
    const p = skipWs(bytes, 0);
    return p < bytes.length && skipWs(bytes, scanValue(bytes, p, 0)) === bytes.length;
  } catch {
    return false;
  }
}

/**
 * The byte where `bytes` stop being one JSON value, or -1 when they are one:
 * for control data that `JSON.parse` refused, whose message gives no
 * position for most errors.
 */
export function jsonErrorAt(bytes: Uint8Array): number {
  try {
    const end = skipWs(bytes, scanValue(bytes, skipWs(bytes, 0), 0));
    return end === bytes.length ? -1 : end;
  } catch (err) {
    const at = (err as HypError).params?.offset;
    return typeof at === 'number' ? at : -1;
  }
}

function stringAt(b: Uint8Array, start: number, end: number): string {
  for (let i = start + 1; i < end - 1; i++) {
    if (b[i] === 0x5c) return JSON.parse(utf8StrictDecoder.decode(b.subarray(start, end))) as string;
  }
  // the scanner checked UTF-8; strict only so that a leading U+FEFF stays part of the string
  return utf8StrictDecoder.decode(b.subarray(start + 1, end - 1));
}

function isNull(b: Uint8Array, start: number, end: number): boolean {
  return end - start === 4 && b[start] === 0x6e;
}

/** A name field: a JSON string (or null for ''), with no lone surrogate (see surrogates.ts). */
function stringField(b: Uint8Array, key: string, start: number, end: number): string {
  if (b[start] === 0x22) {
    const lone = loneSurrogateEscape(b, start + 1, end - 1);
    if (lone >= 0)
      fail(`"${key}" holds the lone surrogate ${escapeText(b, lone)}, which has no UTF-8 form`, lone, key);
    return stringAt(b, start, end);
  }
  if (isNull(b, start, end)) return '';
  return fail(`"${key}" must be a string`, start, key);
}

function base64Encode(bytes: Uint8Array): string {
  let binary = '';
  for (let i = 0; i < bytes.length; i += 0x8000) {
    binary += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000) as unknown as number[]);
  }
  return btoa(binary);
}

/** Envelope fields of the frame being read that were of the wrong shape (bits of `fieldBits`). */
let failedFields = 0;
/** The first of them: the frame is refused with it once the rest has been read. */
let firstShapeError: unknown;
const fieldBits: Readonly<Record<string, number>> = { type: 1, channel: 2, data: 4, id: 8 };

/**
 * A field of the wrong shape (`"timestamp":"soon"`) does not stop the scan:
 * the fields after it are still read, so the refusal can name the request's
 * `id`, `type` and `channel`. Text that is not JSON stops it where it is.
 * The error is the first one met either way, as before.
 */
function unmarshal(b: Uint8Array): Envelope {
  const out: Envelope = { type: '', channel: '', data: emptyBytes, timestamp: 0n, clientId: '', offset: '' };
  failedFields = 0;
  firstShapeError = undefined;
  try {
    readEnvelope(b, out);
  } catch (err) {
    throw withReadable((firstShapeError ?? err) as HypError, readable(out));
  }
  if (firstShapeError !== undefined) throw withReadable(firstShapeError as HypError, readable(out));
  return out;
}

/** The fields of `out` read whole: set, and never of the wrong shape in this frame. */
function readable(out: Envelope) {
  const ok = (field: string) => (failedFields & fieldBits[field]!) === 0;
  return {
    type: ok('type') ? out.type : '',
    channel: ok('channel') ? out.channel : '',
    data: ok('data') ? out.data : emptyBytes,
    id: ok('id') ? out.id : undefined,
  };
}

function readEnvelope(b: Uint8Array, out: Envelope): void {
  let p = skipWs(b, 0);
  if (b[p] !== 0x7b) fail(describe(b, p) + ", expected '{'", p);
  p = skipWs(b, p + 1);
  if (b[p] === 0x7d) p++;
  else {
    for (;;) {
      if (b[p] !== 0x22) fail(describe(b, p) + ', expected an object key', p);
      const keyEnd = scanString(b, p);
      const key = stringAt(b, p, keyEnd);
      p = skipWs(b, keyEnd);
      if (b[p] !== 0x3a) fail(describe(b, p) + ", expected ':'", p);
      const start = skipWs(b, p + 1);
      const end = scanValue(b, start, 1);
      try {
        readField(b, out, key, start, end);
      } catch (err) {
        failedFields |= fieldBits[key] ?? 0;
        firstShapeError ??= err;
      }
      p = skipWs(b, end);
      if (b[p] === 0x7d) {
        p++;
        break;
      }
      if (b[p] !== 0x2c) fail(describe(b, p) + ", expected ',' or '}'", p);
      p = skipWs(b, p + 1);
    }
  }
  p = skipWs(b, p);
  if (p !== b.length) fail(describe(b, p) + ' after the message', p);
}

/** Reads the value of `key` (at `start`, before `end`) into `out`; throws when it is of the wrong shape. */
function readField(b: Uint8Array, out: Envelope, key: string, start: number, end: number): void {
  switch (key) {
    case 'type':
      out.type = stringField(b, key, start, end);
      break;
    case 'channel':
      out.channel = stringField(b, key, start, end);
      break;
    case 'client_id':
      out.clientId = stringField(b, key, start, end);
      break;
    case 'offset':
      out.offset = stringField(b, key, start, end);
      break;
    case 'id': {
      const id = stringField(b, key, start, end);
      if (id) out.id = id;
      else delete out.id;
      break;
    }
    case 'data':
      out.data = isNull(b, start, end) ? emptyBytes : b.slice(start, end);
      break;
    case 'timestamp': {
      if (isNull(b, start, end)) {
        out.timestamp = 0n;
        break;
      }
      if (
        b[start] === 0x22 ||
        b[start] === 0x7b ||
        b[start] === 0x5b ||
        b[start] === 0x74 ||
        b[start] === 0x66
      ) {
        fail('"timestamp" must be an integer', start, key);
      }
      if (!lastNumberIsInteger) fail('"timestamp" must be an integer', start, key);
      // int64 has at most 19 digits (and a sign): a longer number overflows
      // without paying BigInt's quadratic parse of, say, 500,000 digits.
      if (end - start > 20) fail('"timestamp" overflows int64', start, key);
      const value = BigInt(utf8Decoder.decode(b.subarray(start, end)));
      if (value < int64Min || value > int64Max) fail('"timestamp" overflows int64', start, key);
      out.timestamp = value;
      break;
    }
  }
}

function marshal(m: Envelope): Uint8Array {
  let head = '{"type":' + JSON.stringify(m.type);
  if (m.channel) head += ',"channel":' + JSON.stringify(m.channel);
  let tail = '';
  if (m.timestamp !== 0n) tail += ',"timestamp":' + m.timestamp.toString();
  if (m.clientId) tail += ',"client_id":' + JSON.stringify(m.clientId);
  if (m.offset) tail += ',"offset":' + JSON.stringify(m.offset);
  if (m.id) tail += ',"id":' + JSON.stringify(m.id);
  tail += '}';
  if (m.data.length === 0) return utf8Encoder.encode(head + tail);
  if (!isJsonText(m.data)) return utf8Encoder.encode(`${head},"data":"${base64Encode(m.data)}"${tail}`);
  const h = utf8Encoder.encode(head + ',"data":');
  const t = utf8Encoder.encode(tail);
  const out = new Uint8Array(h.length + m.data.length + t.length);
  out.set(h, 0);
  out.set(m.data, h.length);
  out.set(t, h.length + m.data.length);
  return out;
}

export const jsonCodec: Codec = {
  name,
  index: 0,
  frame: 'text',
  marshal,
  unmarshal,
  decodeChannelRequest: decodeJsonChannelRequest,
  encodeChannelRequest: encodeJsonChannelRequest,
  decodeRoomRequest: decodeJsonRoomRequest,
  encodeRoomRequest: encodeJsonRoomRequest,
};
