import { Builder } from 'flatbuffers';
import { type Envelope, emptyBytes, utf8StrictDecoder } from '../envelope.js';
import type { Codec } from './codec.js';
import { decodeError } from './decode-error.js';
import {
  decodeJsonChannelRequest,
  decodeJsonRoomRequest,
  encodeJsonChannelRequest,
  encodeJsonRoomRequest,
} from './json-control.js';

/**
 * FlatBuffers codec (index 2, binary frames): one table, slots 0-4 = type,
 * channel, data ([ubyte]), timestamp (int64), client_id; hyp's slots 5 and
 * 6 are `offset` and `id`. No file identifier (test/fixtures/ws/message.fbs).
 *
 * Encoding uses the flatbuffers Builder in HypGo's order, so the bytes match
 * HypGo's for the same fields. The runtime has no verifier, so decoding
 * reads the table by hand with a bounds check before every access: a
 * truncated or hostile buffer is refused with the offset it points at.
 */

const name = 'flatbuffers';
const slotType = 0;
const slotChannel = 1;
const slotData = 2;
const slotTimestamp = 3;
const slotClientId = 4;
const slotOffset = 5;
const slotId = 6;
const slots = 7;

const builder = new Builder(256);

function marshal(m: Envelope): Uint8Array {
  builder.clear();
  const type = m.type ? builder.createString(m.type) : 0;
  const channel = m.channel ? builder.createString(m.channel) : 0;
  const data = m.data.length > 0 ? builder.createByteVector(m.data) : 0;
  const clientId = m.clientId ? builder.createString(m.clientId) : 0;
  const offset = m.offset ? builder.createString(m.offset) : 0;
  const id = m.id ? builder.createString(m.id) : 0;
  builder.startObject(slots);
  builder.addFieldOffset(slotType, type, 0);
  builder.addFieldOffset(slotChannel, channel, 0);
  builder.addFieldOffset(slotData, data, 0);
  builder.addFieldInt64(slotTimestamp, m.timestamp, 0n);
  builder.addFieldOffset(slotClientId, clientId, 0);
  builder.addFieldOffset(slotOffset, offset, 0);
  builder.addFieldOffset(slotId, id, 0);
  builder.finish(builder.endObject());
  return builder.asUint8Array().slice();
}

class TableReader {
  readonly view: DataView;
  readonly table: number;
  readonly vtable: number;
  readonly vtableSize: number;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.need(0, 4, 'root offset');
    this.table = this.view.getUint32(0, true);
    this.need(this.table, 4, 'table');
    this.vtable = this.table - this.view.getInt32(this.table, true);
    this.need(this.vtable, 4, 'vtable');
    this.vtableSize = this.view.getUint16(this.vtable, true);
    if (this.vtableSize < 4 || this.vtableSize % 2 !== 0)
      fail(`vtable size ${this.vtableSize} is invalid`, this.vtable);
    this.need(this.vtable, this.vtableSize, 'vtable');
  }

  need(at: number, size: number, what: string): void {
    if (at < 0 || at + size > this.bytes.length) {
      fail(`${what} (${size} bytes) lies outside the ${this.bytes.length}-byte buffer`, Math.max(at, 0));
    }
  }

  /** Absolute position of a slot's value, or 0 when the slot is absent. */
  field(slot: number): number {
    const entry = 4 + slot * 2;
    if (entry >= this.vtableSize) return 0;
    const rel = this.view.getUint16(this.vtable + entry, true);
    return rel === 0 ? 0 : this.table + rel;
  }

  vector(slot: number, what: string): Uint8Array {
    const at = this.field(slot);
    if (at === 0) return emptyBytes;
    this.need(at, 4, `${what} offset`);
    const start = at + this.view.getUint32(at, true);
    this.need(start, 4, `${what} length`);
    const length = this.view.getUint32(start, true);
    this.need(start + 4, length, what);
    return this.bytes.subarray(start + 4, start + 4 + length);
  }

  string(slot: number, what: string): string {
    const bytes = this.vector(slot, what);
    if (bytes.length === 0) return '';
    try {
      return utf8StrictDecoder.decode(bytes);
    } catch {
      return fail(`${what} is not UTF-8`, bytes.byteOffset - this.bytes.byteOffset);
    }
  }

  int64(slot: number, what: string): bigint {
    const at = this.field(slot);
    if (at === 0) return 0n;
    this.need(at, 8, what);
    return this.view.getBigInt64(at, true);
  }
}

function fail(detail: string, offset: number): never {
  throw decodeError(name, detail, offset);
}

function unmarshal(bytes: Uint8Array): Envelope {
  const t = new TableReader(bytes);
  const data = t.vector(slotData, 'data');
  const m: Envelope = {
    type: t.string(slotType, 'type'),
    channel: t.string(slotChannel, 'channel'),
    data: data.length > 0 ? data.slice() : emptyBytes,
    timestamp: t.int64(slotTimestamp, 'timestamp'),
    clientId: t.string(slotClientId, 'client_id'),
    offset: t.string(slotOffset, 'offset'),
  };
  const id = t.string(slotId, 'id');
  if (id) m.id = id;
  return m;
}

export const flatbuffersCodec: Codec = {
  name,
  index: 2,
  frame: 'binary',
  marshal,
  unmarshal,
  decodeChannelRequest: decodeJsonChannelRequest,
  encodeChannelRequest: encodeJsonChannelRequest,
  decodeRoomRequest: decodeJsonRoomRequest,
  encodeRoomRequest: encodeJsonRoomRequest,
};
