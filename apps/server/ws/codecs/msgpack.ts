import { Decoder, Encoder } from '@msgpack/msgpack';
import { type Envelope, emptyBytes, int64Max, int64Min, utf8Encoder } from '../envelope.js';
import type { Codec } from './codec.js';
import { decodeError } from './decode-error.js';
import {
  decodeJsonChannelRequest,
  decodeJsonRoomRequest,
  encodeJsonChannelRequest,
  encodeJsonRoomRequest,
} from './json-control.js';

/**
 * MessagePack codec (index 3, binary frames): a map with keys `type`,
 * `channel`, `data` (bin), `timestamp` (int64 nanoseconds), `client_id`,
 * and hyp's optional `offset`. Empty fields are omitted; a decoder accepts
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
const decoder = new Decoder({ useBigInt64: true, ...limits });

interface WireMessage {
  type?: string;
  channel?: string;
  data?: Uint8Array;
  timestamp?: bigint;
  client_id?: string;
  offset?: string;
}

function marshal(m: Envelope): Uint8Array {
  const wire: WireMessage = {};
  if (m.type) wire.type = m.type;
  if (m.channel) wire.channel = m.channel;
  if (m.data.length > 0) wire.data = m.data;
  if (m.timestamp !== 0n) wire.timestamp = m.timestamp;
  if (m.clientId) wire.client_id = m.clientId;
  if (m.offset) wire.offset = m.offset;
  return encoder.encode(wire);
}

function stringField(wire: Record<string, unknown>, key: string): string {
  const value = wire[key];
  if (value === undefined || value === null) return '';
  if (typeof value !== 'string') throw decodeError(name, `"${key}" must be a string, got ${typeof value}`);
  return value;
}

function dataField(wire: Record<string, unknown>): Uint8Array {
  const value = wire.data;
  if (value === undefined || value === null) return emptyBytes;
  if (value instanceof Uint8Array) return value.length > 0 ? value : emptyBytes;
  if (typeof value === 'string') return utf8Encoder.encode(value);
  throw decodeError(name, `"data" must be bin or str, got ${typeof value}`);
}

function timestampField(wire: Record<string, unknown>): bigint {
  const value = wire.timestamp;
  if (value === undefined || value === null) return 0n;
  let timestamp: bigint;
  if (typeof value === 'bigint') timestamp = value;
  // a float64 holding an integer (some encoders write large integers so) is taken, within int64
  else if (typeof value === 'number' && Number.isInteger(value)) timestamp = BigInt(value);
  else throw decodeError(name, '"timestamp" must be an integer');
  // beyond int64 no codec could carry it on: protobuf and FlatBuffers would wrap it, JSON peers refuse it
  if (timestamp < int64Min || timestamp > int64Max) throw decodeError(name, '"timestamp" overflows int64');
  return timestamp;
}

function unmarshal(bytes: Uint8Array): Envelope {
  let value: unknown;
  try {
    value = decoder.decode(bytes);
  } catch (err) {
    throw decodeError(name, (err as Error).message, (decoder as unknown as { pos: number }).pos, err);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value) || value instanceof Uint8Array) {
    throw decodeError(name, 'message must be a map', 0);
  }
  const wire = value as Record<string, unknown>;
  return {
    type: stringField(wire, 'type'),
    channel: stringField(wire, 'channel'),
    data: dataField(wire),
    timestamp: timestampField(wire),
    clientId: stringField(wire, 'client_id'),
    offset: stringField(wire, 'offset'),
  };
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
