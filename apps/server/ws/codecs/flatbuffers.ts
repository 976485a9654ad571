import { Builder } from 'flatbuffers';
import type { HypError } from '../../../../supervisor/errors.js';
import { type Envelope, emptyBytes, utf8StrictDecoder } from '../envelope.js';
import type { Codec } from './codec.js';
import { decodeError, orUndefined, withReadable } from './decode-error.js';
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
  /** Where the vtable entry of the last slot `field` found sits: the reference to that field. */
  private entryAt = 0;
  /** The field being read, named as the key path of an error about it; undefined for the table itself. */
  private path: string | undefined;

  constructor(readonly bytes: Uint8Array) {
    this.view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    this.need(0, 4, 'root offset');
    this.table = this.view.getUint32(0, true);
    this.need(this.table, 4, 'table', 0);
    this.vtable = this.table - this.view.getInt32(this.table, true);
    this.need(this.vtable, 4, 'vtable', this.table);
    this.vtableSize = this.view.getUint16(this.vtable, true);
    if (this.vtableSize < 4 || this.vtableSize % 2 !== 0)
      fail(`vtable size ${this.vtableSize} is invalid`, this.vtable);
    this.need(this.vtable, this.vtableSize, 'vtable', this.vtable);
  }

  /**
   * `size` bytes at `at` must lie in the buffer. `ref`: where the offset that
   * leads to `at` is stored; the error names that byte (the bad reference),
   * since `at` itself may lie anywhere, far beyond the buffer.
   */
  need(at: number, size: number, what: string, ref?: number): void {
    if (at >= 0 && at + size <= this.bytes.length) return;
    const length = this.bytes.length;
    if (ref === undefined)
      fail(`${what} (${size} bytes) lies outside the ${length}-byte buffer`, Math.max(at, 0), this.path);
    fail(
      `the reference to ${what} points to ${at}, outside the ${length}-byte buffer (${size} bytes needed there)`,
      ref,
      this.path,
    );
  }

  /** Absolute position of a slot's value, or 0 when the slot is absent. */
  field(slot: number): number {
    const entry = 4 + slot * 2;
    if (entry >= this.vtableSize) return 0;
    this.entryAt = this.vtable + entry;
    const rel = this.view.getUint16(this.entryAt, true);
    return rel === 0 ? 0 : this.table + rel;
  }

  vector(slot: number, what: string): Uint8Array {
    this.path = what;
    const at = this.field(slot);
    if (at === 0) return emptyBytes;
    this.need(at, 4, `${what} offset`, this.entryAt);
    const start = at + this.view.getUint32(at, true);
    this.need(start, 4, `${what} length`, at);
    const length = this.view.getUint32(start, true);
    this.need(start + 4, length, what, start);
    return this.bytes.subarray(start + 4, start + 4 + length);
  }

  string(slot: number, what: string): string {
    const bytes = this.vector(slot, what);
    if (bytes.length === 0) return '';
    try {
      return utf8StrictDecoder.decode(bytes);
    } catch {
      return fail(`${what} is not UTF-8`, bytes.byteOffset - this.bytes.byteOffset, what);
    }
  }

  int64(slot: number, what: string): bigint {
    this.path = what;
    const at = this.field(slot);
    if (at === 0) return 0n;
    this.need(at, 8, what, this.entryAt);
    return this.view.getBigInt64(at, true);
  }
}

function fail(detail: string, offset: number, path?: string): never {
  throw decodeError(name, detail, offset, undefined, path);
}

function unmarshal(bytes: Uint8Array): Envelope {
  const t = new TableReader(bytes);
  try {
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
  } catch (err) {
    // the table itself is sound: every slot is read on its own, the refusal names those that read
    throw withReadable(err as HypError, {
      type: orUndefined(() => t.string(slotType, 'type')),
      channel: orUndefined(() => t.string(slotChannel, 'channel')),
      data: orUndefined(() => t.vector(slotData, 'data').slice()),
      id: orUndefined(() => t.string(slotId, 'id')),
    });
  }
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
