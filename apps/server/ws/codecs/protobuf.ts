import protobuf from 'protobufjs';
import { HypError } from '../../../../supervisor/errors.js';
import { type Envelope, emptyBytes } from '../envelope.js';
import type { ChannelRequest, Codec, RoomRequest } from './codec.js';
import { decodeError, type ReadableFields, withReadable } from './decode-error.js';

/**
 * Protobuf codec (index 1, binary frames): HypGo's `WsMessage` (fields 1..5,
 * timestamp a plain-varint int64) plus hyp's optional fields 6 `offset` and
 * 7 `id`.
 * Control data is `ChannelRequest{channel=1}` / `RoomRequest{room_id=1}`.
 * The schema text is test/fixtures/ws/message.proto (a test keeps them equal).
 */
export const protoSchema = `syntax = "proto3";
package hyp.ws;
message WsMessage {
  string type = 1;
  string channel = 2;
  bytes data = 3;
  int64 timestamp = 4;
  string client_id = 5;
  string offset = 6;
  string id = 7;
}
message ChannelRequest {
  string channel = 1;
  string offset = 2;
}
message RoomRequest {
  string room_id = 1;
}
`;

const root = protobuf.parse(protoSchema, { keepCase: true }).root;
const WsMessage = root.lookupType('hyp.ws.WsMessage');
const ChannelRequestType = root.lookupType('hyp.ws.ChannelRequest');
const RoomRequestType = root.lookupType('hyp.ws.RoomRequest');

interface WireMessage {
  type?: string;
  channel?: string;
  data?: Uint8Array;
  timestamp?: protobuf.Long | number;
  client_id?: string;
  offset?: string;
  id?: string;
}

const name = 'protobuf';

/** protobufjs writes any `{ low, high }` pair as an int64; no long.js round trip. */
function toLong(value: bigint): protobuf.Long {
  const bits = {
    low: Number(BigInt.asIntN(32, value)),
    high: Number(BigInt.asIntN(32, value >> 32n)),
    unsigned: false,
  };
  return bits as unknown as protobuf.Long;
}

function toBigInt(value: protobuf.Long | number | undefined): bigint {
  if (value === undefined) return 0n;
  if (typeof value === 'number') return BigInt(value);
  return (BigInt(value.high) << 32n) | BigInt(value.low >>> 0);
}

/** Decodes with a reader we keep, so a failure can name its byte offset. */
function decodeWith<T>(type: protobuf.Type, bytes: Uint8Array, fail: Fail): T {
  const reader = protobuf.Reader.create(bytes);
  try {
    return type.decode(reader) as unknown as T;
  } catch (err) {
    return fail((err as Error).message, reader.pos, err);
  }
}

/** Where a decode gives up: the detail, the byte, the library's error, the field at fault. */
type Fail = (detail: string, offset: number, cause: unknown, path?: string) => never;

function failDecode(detail: string, offset: number, cause: unknown, path?: string): never {
  throw decodeError(name, detail, offset, cause, path);
}

function marshal(m: Envelope): Uint8Array {
  const wire: WireMessage = {};
  if (m.type) wire.type = m.type;
  if (m.channel) wire.channel = m.channel;
  if (m.data.length > 0) wire.data = m.data;
  if (m.timestamp !== 0n) wire.timestamp = toLong(m.timestamp);
  if (m.clientId) wire.client_id = m.clientId;
  if (m.offset) wire.offset = m.offset;
  if (m.id) wire.id = m.id;
  return WsMessage.encode(wire).finish();
}

/** A message's fields by number: name and wire type (0 varint, 2 length-delimited). */
type Fields = ReadonlyArray<readonly [string, number] | undefined>;

const envelopeFields: Fields = [
  undefined,
  ['type', 2],
  ['channel', 2],
  ['data', 2],
  ['timestamp', 0],
  ['client_id', 2],
  ['offset', 2],
  ['id', 2],
];
const channelRequestFields: Fields = [undefined, ['channel', 2], ['offset', 2]];
const roomRequestFields: Fields = [undefined, ['room_id', 2]];

/**
 * protobufjs skips a known field of the wrong wire type as if it were unknown: a publish whose
 * `id` a peer wrote as an integer would go out as a plain publish, never acknowledged, and a
 * subscribe whose `offset` was an integer would start at the head without a word. Refused here,
 * naming the field and the byte of its tag; unknown fields (HypGo's, a newer hub's) of any wire
 * type are still skipped.
 */
function checkWireTypes(bytes: Uint8Array, fields: Fields, fail: Fail): void {
  // a plain loop over the bytes (no reader allocated: every frame a client sends passes here);
  // whatever it cannot step over (a truncated field, a group) is left to the decode to refuse
  const end = bytes.length;
  let p = 0;
  while (p < end) {
    const at = p;
    let tag = 0;
    for (let shift = 0; ; shift += 7) {
      if (p >= end || shift > 28) return;
      const b = bytes[p++]!;
      tag += (b & 0x7f) * 2 ** shift;
      if (b < 0x80) break;
    }
    const wireType = tag % 8;
    const number = Math.floor(tag / 8);
    const field = fields[number];
    if (field !== undefined && wireType !== field[1])
      fail(
        `field ${number} (${field[0]}) has wire type ${wireType}, expected ${field[1]}`,
        at,
        undefined,
        field[0],
      );
    if (wireType === 0) {
      // protobufjs reads 10 bytes and drops the bits beyond 64: a timestamp would be taken truncated
      const start = p;
      while (p < end && bytes[p]! >= 0x80) p++;
      p++;
      if (p - start > 10 || (p - start === 10 && bytes[p - 1]! > 1))
        fail(
          `field ${number}${field ? ` (${field[0]})` : ''} holds a varint wider than 64 bits`,
          start,
          undefined,
          field?.[0],
        );
    } else if (wireType === 1) p += 8;
    else if (wireType === 5) p += 4;
    else if (wireType === 2) {
      let length = 0;
      for (let shift = 0; ; shift += 7) {
        if (p >= end || shift > 28) return;
        const b = bytes[p++]!;
        length += (b & 0x7f) * 2 ** shift;
        if (b < 0x80) break;
      }
      p += length;
    } else return;
  }
}

function unmarshal(bytes: Uint8Array): Envelope {
  try {
    checkWireTypes(bytes, envelopeFields, failDecode);
  } catch (err) {
    throw withReadable(err as HypError, readableBeside(bytes, (err as HypError).params.path));
  }
  let wire: WireMessage;
  try {
    wire = decodeWith<WireMessage>(WsMessage, bytes, failDecode);
  } catch (err) {
    throw withReadable(err as HypError, readableBeside(bytes, undefined));
  }
  const m: Envelope = {
    type: wire.type ?? '',
    channel: wire.channel ?? '',
    data: wire.data && wire.data.length > 0 ? wire.data : emptyBytes,
    timestamp: toBigInt(wire.timestamp),
    clientId: wire.client_id ?? '',
    offset: wire.offset ?? '',
  };
  if (wire.id) m.id = wire.id;
  return m;
}

/** The envelope fields a refusal may name, by field number (all length-delimited: wire type 2). */
const echoedFields: ReadonlyArray<'type' | 'channel' | 'data' | 'id' | undefined> = [
  undefined,
  'type',
  'channel',
  'data',
  undefined,
  undefined,
  undefined,
  'id',
];

/**
 * The fields of a refused frame that protobufjs reads whole, field by field
 * as its decode does (a field of another wire type skipped as unknown, the
 * last occurrence winning, an empty one clearing it), up to the first field
 * it cannot read: a frame cut off, or with garbage after its fields, still
 * names the fields before. The field it stops in is not read, nor is an
 * earlier occurrence of it (this one would have replaced it). `bad`, the
 * field at fault when one is (another wire type, a varint wider than 64
 * bits), is never named. Only on the error path.
 */
function readableBeside(bytes: Uint8Array, bad: unknown): ReadableFields {
  const reader = protobuf.Reader.create(bytes);
  const fields: ReadableFields = {};
  let reading: 'type' | 'channel' | 'data' | 'id' | undefined;
  try {
    while (reader.pos < reader.len) {
      const tag = reader.tag();
      const number = tag >>> 3;
      const wireType = tag & 7;
      reading = wireType === 2 ? echoedFields[number] : undefined;
      if (reading === undefined) reader.skipType(wireType, 0, number);
      else {
        const value = reading === 'data' ? reader.bytes() : reader.stringVerify();
        if (value.length === 0) delete fields[reading];
        else if (typeof value === 'string') fields[reading as 'type' | 'channel' | 'id'] = value;
        else fields.data = value;
        reading = undefined;
      }
    }
  } catch {
    if (reading !== undefined) delete fields[reading];
  }
  if (bad === 'type' || bad === 'channel' || bad === 'data' || bad === 'id') delete fields[bad];
  return fields;
}

/** `offset`: the byte of the request's data; `path`: `data`, and the field at fault when one is (`data.room_id`). */
function controlError(kind: string): Fail {
  return (detail, offset, cause, path) => {
    const params = { type: kind, detail: `${detail} (byte ${offset})`, offset };
    throw new HypError(
      'HYP_E_WS_CONTROL',
      { ...params, path: path === undefined ? 'data' : `data.${path}` },
      { cause },
    );
  };
}

function decodeChannelRequest(data: Uint8Array, type = 'subscribe'): ChannelRequest {
  checkWireTypes(data, channelRequestFields, controlError(type));
  const wire = decodeWith<{ channel?: string; offset?: string }>(
    ChannelRequestType,
    data,
    controlError(type),
  );
  if (!wire.channel)
    throw new HypError('HYP_E_WS_CONTROL', { type, detail: 'channel is empty', path: 'data.channel' });
  return { channel: wire.channel, offset: wire.offset ?? '' };
}

function encodeChannelRequest(request: ChannelRequest): Uint8Array {
  const wire: { channel: string; offset?: string } = { channel: request.channel };
  if (request.offset) wire.offset = request.offset;
  return ChannelRequestType.encode(wire).finish();
}

function decodeRoomRequest(data: Uint8Array, type = 'join_room'): RoomRequest {
  checkWireTypes(data, roomRequestFields, controlError(type));
  const wire = decodeWith<{ room_id?: string }>(RoomRequestType, data, controlError(type));
  if (!wire.room_id)
    throw new HypError('HYP_E_WS_CONTROL', { type, detail: 'room_id is empty', path: 'data.room_id' });
  return { roomId: wire.room_id };
}

function encodeRoomRequest(request: RoomRequest): Uint8Array {
  return RoomRequestType.encode({ room_id: request.roomId }).finish();
}

export const protobufCodec: Codec = {
  name,
  index: 1,
  frame: 'binary',
  marshal,
  unmarshal,
  decodeChannelRequest,
  encodeChannelRequest,
  decodeRoomRequest,
  encodeRoomRequest,
};
