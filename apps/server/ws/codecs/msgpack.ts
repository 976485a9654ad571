import { Decoder, Encoder, ExtData } from '@msgpack/msgpack';
import type { HypError } from '../../../../supervisor/errors.js';
import {
  type Envelope,
  emptyBytes,
  int64Max,
  int64Min,
  utf8Decoder,
  utf8StrictDecoder,
} from '../envelope.js';
import type { Codec } from './codec.js';
import { decodeError, orUndefined, type ReadableFields, withReadable } from './decode-error.js';
import {
  decodeJsonChannelRequest,
  decodeJsonRoomRequest,
  encodeJsonChannelRequest,
  encodeJsonRoomRequest,
} from './json-control.js';

/**
 * MessagePack codec (index 3, binary frames): a map with keys `type`,
 * `channel`, `data` (bin), `timestamp` (int64 nanoseconds), `client_id`,
 * and hyp's optional `offset` and `id`. Empty fields are omitted; a decoder accepts
 * them present with zero values too (HypGo writes every key).
 */

const name = 'msgpack';
/** Generous bounds so a hostile header cannot make the decoder allocate gigabytes. */
const limits = {
  maxStrLength: 16 << 20,
  maxBinLength: 16 << 20,
  maxArrayLength: 1 << 16,
  maxMapLength: 1 << 12,
  maxExtLength: 1 << 20,
};
const encoder = new Encoder({ useBigInt64: true });
// rawStrings: str values come as their bytes (map keys stay strings), so `data` sent as str keeps its
// exact bytes and a string field that is not UTF-8 is refused rather than read as Latin-1 or U+FFFD
const decoder = new Decoder({ useBigInt64: true, rawStrings: true, ...limits });

interface WireMessage {
  type?: string;
  channel?: string;
  data?: Uint8Array;
  timestamp?: bigint;
  client_id?: string;
  offset?: string;
  id?: string;
}

function marshal(m: Envelope): Uint8Array {
  const wire: WireMessage = {};
  if (m.type) wire.type = m.type;
  if (m.channel) wire.channel = m.channel;
  if (m.data.length > 0) wire.data = m.data;
  if (m.timestamp !== 0n) wire.timestamp = m.timestamp;
  if (m.clientId) wire.client_id = m.clientId;
  if (m.offset) wire.offset = m.offset;
  if (m.id) wire.id = m.id;
  return encoder.encode(wire);
}

/** A str (or bin) field as UTF-8 text; `frame` locates it in the error. */
function stringField(wire: Record<string, unknown>, key: string, frame: Uint8Array): string {
  const value = wire[key];
  if (value === undefined || value === null) return '';
  if (!(value instanceof Uint8Array))
    throw decodeError(
      name,
      `"${key}" must be a string, got ${typeName(value)}`,
      valueOffset(frame, key),
      undefined,
      key,
    );
  if (value.length === 0) return '';
  try {
    return utf8StrictDecoder.decode(value);
  } catch {
    throw decodeError(name, `"${key}" is not UTF-8`, value.byteOffset - frame.byteOffset, undefined, key);
  }
}

/** A msgpack type name for an error ("must be a string, got array"). */
function typeName(value: unknown): string {
  if (Array.isArray(value)) return 'array';
  if (typeof value === 'bigint' || (typeof value === 'number' && Number.isInteger(value))) return 'integer';
  if (typeof value === 'number') return 'float';
  if (typeof value === 'object' && value !== null) return value instanceof ExtData ? 'ext' : 'map';
  return typeof value;
}

/** bin, or str as the bytes sent (encoders from before the bin type write bytes as str). */
function dataField(wire: Record<string, unknown>, frame: Uint8Array): Uint8Array {
  const value = wire.data;
  if (value === undefined || value === null) return emptyBytes;
  if (value instanceof Uint8Array) return value.length > 0 ? value : emptyBytes;
  throw decodeError(
    name,
    `"data" must be bin or str, got ${typeName(value)}`,
    valueOffset(frame, 'data'),
    undefined,
    'data',
  );
}

function timestampField(wire: Record<string, unknown>, frame: Uint8Array): bigint {
  const value = wire.timestamp;
  if (value === undefined || value === null) return 0n;
  let timestamp: bigint;
  if (typeof value === 'bigint') timestamp = value;
  // a float64 holding an integer (some encoders write large integers so) is taken, within int64
  else if (typeof value === 'number' && Number.isInteger(value)) timestamp = BigInt(value);
  else
    throw decodeError(
      name,
      `"timestamp" must be an integer, got ${typeName(value)}`,
      valueOffset(frame, 'timestamp'),
      undefined,
      'timestamp',
    );
  // beyond int64 no codec could carry it on: protobuf and FlatBuffers would wrap it, JSON peers refuse it
  if (timestamp < int64Min || timestamp > int64Max)
    throw decodeError(
      name,
      '"timestamp" overflows int64',
      valueOffset(frame, 'timestamp'),
      undefined,
      'timestamp',
    );
  return timestamp;
}

/** Maps and arrays nested deeper than this are refused (the envelope itself is one map). */
const maxDepth = 64;
/**
 * Values (keys included) one message may hold. An envelope has a dozen;
 * only unknown keys, which the hub ignores, could hold more.
 */
const maxValues = 10_000;
/** Items left in each open map (keys and values) or array; map 32 counts reach 2^33. */
const levels = new Float64Array(maxDepth);

/**
 * Refuses nesting deeper than `maxDepth` and more than `maxValues` values
 * before the decoder builds anything: the decoder keeps a state object per
 * level, for good (a 512 KiB frame of one-element arrays is half a million
 * levels: half a second of work and ~50 MB kept), and builds every value,
 * also those of keys the hub ignores (~0.1 s for 512 KiB of empty arrays).
 * Reads only headers; stops quietly at anything malformed or truncated,
 * which the decoder then reports.
 */
function checkStructure(b: Uint8Array): void {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let depth = 0;
  let values = 0;
  let p = 0;
  for (;;) {
    if (p >= b.length) return;
    const at = p;
    if (++values > maxValues) throw decodeError(name, `more than ${maxValues} values`, at);
    p = step(b, view, p);
    if (p < 0) return;
    const items = stepItems;
    if (items > 0) {
      if (depth === maxDepth) throw decodeError(name, `nesting deeper than ${maxDepth}`, at);
      levels[depth++] = items;
      continue;
    }
    // a value is complete: so is every container it was the last item of
    for (;;) {
      if (depth === 0) return;
      if (--levels[depth - 1]! > 0) break;
      depth--;
    }
  }
}

/** Items (keys and values, or elements) of the container whose header the last `step` read; 0 for other values. */
let stepItems = 0;

/**
 * Steps over the header of the value at `p` (and over its bytes, for all but
 * maps and arrays, whose item count goes to `stepItems`). -1 for a header
 * that is truncated or never used (0xc1).
 */
function step(b: Uint8Array, view: DataView, p: number): number {
  const c = b[p]!;
  stepItems = 0;
  if (c <= 0x7f || c >= 0xe0 || c === 0xc0 || c === 0xc2 || c === 0xc3) return p + 1;
  if (c <= 0x8f) {
    stepItems = (c & 0x0f) * 2;
    return p + 1;
  }
  if (c <= 0x9f) {
    stepItems = c & 0x0f;
    return p + 1;
  }
  if (c <= 0xbf) return p + 1 + (c & 0x1f);
  if (p + 1 + lengthSize(c) > b.length) return -1;
  switch (c) {
    case 0xc4: // bin 8, str 8
    case 0xd9:
      return p + 2 + view.getUint8(p + 1);
    case 0xc5: // bin 16, str 16
    case 0xda:
      return p + 3 + view.getUint16(p + 1);
    case 0xc6: // bin 32, str 32
    case 0xdb:
      return p + 5 + view.getUint32(p + 1);
    case 0xc7: // ext 8/16/32: length, type, data
      return p + 3 + view.getUint8(p + 1);
    case 0xc8:
      return p + 4 + view.getUint16(p + 1);
    case 0xc9:
      return p + 6 + view.getUint32(p + 1);
    case 0xca: // float 32/64, uint and int 8..64
    case 0xcb:
    case 0xcc:
    case 0xcd:
    case 0xce:
    case 0xcf:
    case 0xd0:
    case 0xd1:
    case 0xd2:
    case 0xd3:
      return p + 1 + fixedSize[c - 0xca]!;
    case 0xd4: // fixext 1/2/4/8/16: type, data
    case 0xd5:
    case 0xd6:
    case 0xd7:
    case 0xd8:
      return p + 2 + (1 << (c - 0xd4));
    case 0xdc: // array 16/32
      stepItems = view.getUint16(p + 1);
      return p + 3;
    case 0xdd:
      stepItems = view.getUint32(p + 1);
      return p + 5;
    case 0xde: // map 16/32
      stepItems = view.getUint16(p + 1) * 2;
      return p + 3;
    case 0xdf:
      stepItems = view.getUint32(p + 1) * 2;
      return p + 5;
    default: // 0xc1: never used
      return -1;
  }
}

/** Position after the whole value at `p` (items included), or -1; only for a message that decoded. */
function skipValue(b: Uint8Array, view: DataView, p: number): number {
  // bounded: the message decoded, and checkStructure bounded its values
  for (let pending = 1; pending > 0 && p >= 0; pending--) {
    p = step(b, view, p);
    pending += stepItems;
  }
  return p;
}

/**
 * Byte offset of the value of `key` in the envelope map `b` (last one wins,
 * as in the decoder), for an error about that value; undefined if not found.
 * Only on the error path: the decoder keeps no positions.
 */
function valueOffset(b: Uint8Array, key: string): number | undefined {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let p = step(b, view, 0);
  let found: number | undefined;
  for (let pairs = stepItems / 2; pairs > 0 && p >= 0 && p < b.length; pairs--) {
    const keyStart = p;
    p = skipValue(b, view, p);
    if (p < 0) break;
    const c = b[keyStart]!;
    const head = c >= 0xa0 && c <= 0xbf ? 1 : c === 0xd9 ? 2 : c === 0xda ? 3 : c === 0xdb ? 5 : 0;
    if (head > 0 && utf8Decoder.decode(b.subarray(keyStart + head, p)) === key) found = p;
    p = skipValue(b, view, p);
  }
  return found;
}

/** Bytes of the length (or count) after a type byte; 0 for types without one. */
function lengthSize(c: number): number {
  if (c === 0xc4 || c === 0xc7 || c === 0xd9) return 1;
  if (c === 0xc5 || c === 0xc8 || c === 0xda || c === 0xdc || c === 0xde) return 2;
  if (c === 0xc6 || c === 0xc9 || c === 0xdb || c === 0xdd || c === 0xdf) return 4;
  return 0;
}

/** Bytes after the type byte of float 32, float 64, uint 8..64, int 8..64 (0xca..0xd3). */
const fixedSize = [4, 8, 1, 2, 4, 8, 1, 2, 4, 8];

/**
 * Where the decoder gave up. It reports the position after what it read: for
 * a type byte it does not know, that is the byte after it.
 */
function failedAt(err: unknown): number {
  const pos = (decoder as unknown as { pos: number }).pos;
  return err instanceof Error && err.message.startsWith('Unrecognized type byte') ? pos - 1 : pos;
}

/** The fields of the envelope map `wire` the refusal of `frame` may name, each read on its own (it may be at fault too). */
function readable(wire: Record<string, unknown>, frame: Uint8Array): ReadableFields {
  return {
    type: orUndefined(() => stringField(wire, 'type', frame)),
    channel: orUndefined(() => stringField(wire, 'channel', frame)),
    data: orUndefined(() => dataField(wire, frame)),
    id: orUndefined(() => stringField(wire, 'id', frame)),
  };
}

/** Whether `c` is the type byte of a str (fixstr, str 8/16/32): the only key type the decoder names a field by. */
function isStr(c: number | undefined): boolean {
  return c !== undefined && ((c >= 0xa0 && c <= 0xbf) || (c >= 0xd9 && c <= 0xdb));
}

/**
 * The fields of an envelope map that does not decode (cut off, bytes after
 * it, a value the decoder refuses) read whole before the decoder gave up:
 * the library reads the items after the map header one by one, key, value,
 * key, value..., up to the first it cannot. A pair cut in half is not read,
 * nor is an earlier value of its key (the later one would have replaced it);
 * nor is anything after a key the decoder refuses (not a str or number,
 * `__proto__`). Only on the error path, after `checkStructure` bounded the
 * frame's values.
 */
function readablePairs(bytes: Uint8Array): ReadableFields {
  const c = bytes[0];
  let head: number;
  let pairs: number;
  if (c !== undefined && c >= 0x80 && c <= 0x8f) {
    head = 1;
    pairs = c & 0x0f;
  } else if (c === 0xde && bytes.length >= 3) {
    head = 3;
    pairs = (bytes[1]! << 8) | bytes[2]!;
  } else if (c === 0xdf && bytes.length >= 5) {
    head = 5;
    pairs = new DataView(bytes.buffer, bytes.byteOffset, 5).getUint32(1);
  } else return {};
  // the decoder refuses such a map at its header: nothing of it was read
  if (pairs === 0 || pairs > limits.maxMapLength) return {};
  const items = bytes.subarray(head);
  const wire: Record<string, unknown> = {};
  let key: string | undefined;
  let at = 0;
  try {
    for (const item of decoder.decodeMulti(items)) {
      if (key === undefined) {
        if (typeof item === 'number') key = String(item);
        else if (item instanceof Uint8Array && isStr(items[at])) key = utf8Decoder.decode(item);
        if (key === undefined || key === '__proto__') {
          key = undefined;
          break;
        }
      } else {
        wire[key] = item;
        key = undefined;
        if (--pairs === 0) break;
      }
      at = (decoder as unknown as { pos: number }).pos;
    }
  } catch {
    // stopped inside a pair: its key, if read, is dropped below
  }
  if (key !== undefined) delete wire[key];
  return readable(wire, bytes);
}

function unmarshal(bytes: Uint8Array): Envelope {
  checkStructure(bytes);
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (err) {
    // the offset first: it is where the decoder stopped, which the partial read moves
    const failure = decodeError(name, (err as Error).message, failedAt(err), err);
    throw withReadable(failure, readablePairs(bytes));
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw decodeError(name, 'message must be a map', 0);
  }
  const wire = value as Record<string, unknown>;
  try {
    const m: Envelope = {
      type: stringField(wire, 'type', bytes),
      channel: stringField(wire, 'channel', bytes),
      data: dataField(wire, bytes),
      timestamp: timestampField(wire, bytes),
      clientId: stringField(wire, 'client_id', bytes),
      offset: stringField(wire, 'offset', bytes),
    };
    const id = stringField(wire, 'id', bytes);
    if (id) m.id = id;
    return m;
  } catch (err) {
    // the map decoded: each field the refusal may name is read on its own
    throw withReadable(err as HypError, readable(wire, bytes));
  }
}

export const msgpackCodec: Codec = {
  name,
  index: 3,
  frame: 'binary',
  marshal,
  unmarshal,
  decodeChannelRequest: decodeJsonChannelRequest,
  encodeChannelRequest: encodeJsonChannelRequest,
  decodeRoomRequest: decodeJsonRoomRequest,
  encodeRoomRequest: encodeJsonRoomRequest,
};
