import { describe, expect, it } from 'vitest';
import { flatbuffersCodec, msgpackCodec, protobufCodec } from '../../../../apps/server/ws/codecs/index.js';
import { envelope } from '../../../../apps/server/ws/envelope.js';
import { thrownHypError } from './helpers.js';

/**
 * A refused frame says where the problem sits, so that whoever wrote the
 * encoder can find it: the byte of the bad FlatBuffers reference (not the
 * place, maybe far beyond the buffer, it points to), the byte of a msgpack
 * value of the wrong type. A protobuf varint wider than 64 bits is refused,
 * not truncated.
 */

/** Where a FlatBuffers envelope keeps slot `slot`'s value and the vtable entry that refers to it. */
function flatSlot(b: Uint8Array, slot: number): { entry: number; value: number } {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const table = view.getUint32(0, true);
  const vtable = table - view.getInt32(table, true);
  const entry = vtable + 4 + slot * 2;
  return { entry, value: table + view.getUint16(entry, true) };
}

describe('FlatBuffers: an error names the byte of the bad reference', () => {
  const good = () => flatbuffersCodec.marshal(envelope({ type: 'publish', channel: 'news', timestamp: 7n }));

  it('a string offset pointing outside the buffer: the byte of that offset', () => {
    const b = good();
    const { value } = flatSlot(b, 1);
    new DataView(b.buffer).setUint32(value, 0x7fff0000, true);
    const err = thrownHypError(() => flatbuffersCodec.unmarshal(b));
    expect(err.code).toBe('HYP_E_WS_DECODE');
    expect(err.params.offset).toBe(value);
    expect(err.message).toMatch(/reference to channel length points to \d+, outside the \d+-byte buffer/);
  });

  it('a string length running past the end: the byte of the length', () => {
    const b = good();
    const { value } = flatSlot(b, 1);
    const view = new DataView(b.buffer);
    const start = value + view.getUint32(value, true);
    view.setUint32(start, 1000, true);
    const err = thrownHypError(() => flatbuffersCodec.unmarshal(b));
    expect(err.params.offset).toBe(start);
    expect(err.message).toMatch(/reference to channel points to/);
  });

  it('a field offset in the vtable pointing outside the buffer: the byte of the vtable entry', () => {
    const b = good();
    const { entry } = flatSlot(b, 3);
    new DataView(b.buffer).setUint16(entry, 0xfff0, true);
    const err = thrownHypError(() => flatbuffersCodec.unmarshal(b));
    expect(err.params.offset).toBe(entry);
    expect(err.message).toMatch(/reference to timestamp points to/);
  });

  it('a root offset or vtable offset pointing outside: byte 0, or the byte of the table', () => {
    const b = good();
    const table = new DataView(b.buffer).getUint32(0, true);
    const root = b.slice();
    new DataView(root.buffer).setUint32(0, 1 << 20, true);
    expect(thrownHypError(() => flatbuffersCodec.unmarshal(root)).params.offset).toBe(0);
    const vt = b.slice();
    new DataView(vt.buffer).setInt32(table, 1 << 20, true);
    expect(thrownHypError(() => flatbuffersCodec.unmarshal(vt)).params.offset).toBe(table);
  });
});

describe('msgpack: a value of the wrong type is located', () => {
  // fixmap 2: "type" => "publish", key => value
  const frame = (key: string, value: number[]) =>
    Uint8Array.from([
      0x82,
      0xa4,
      ...Buffer.from('type'),
      0xa7,
      ...Buffer.from('publish'),
      0xa0 + key.length,
      ...Buffer.from(key),
      ...value,
    ]);
  const valueAt = (key: string) => 1 + 5 + 8 + 1 + key.length;

  it('a string field holding an integer, an array or a map: the byte of the value, and its type', () => {
    for (const [value, type] of [
      [[0x05], 'integer'],
      [[0x91, 0x01], 'array'],
      [[0x80], 'map'],
    ] as const) {
      const err = thrownHypError(() => msgpackCodec.unmarshal(frame('channel', [...value])));
      expect(err.code).toBe('HYP_E_WS_DECODE');
      expect(err.params.offset).toBe(valueAt('channel'));
      expect(err.message).toContain(`"channel" must be a string, got ${type}`);
    }
  });

  it('timestamp and data of the wrong type: the byte of the value', () => {
    let err = thrownHypError(() => msgpackCodec.unmarshal(frame('timestamp', [0xa1, 0x31])));
    expect(err.params.offset).toBe(valueAt('timestamp'));
    expect(err.message).toMatch(/"timestamp" must be an integer/);
    err = thrownHypError(() => msgpackCodec.unmarshal(frame('data', [0x80])));
    expect(err.params.offset).toBe(valueAt('data'));
    expect(err.message).toMatch(/"data" must be bin or str, got map/);
  });
});

describe('protobuf: varints wider than 64 bits', () => {
  it('a timestamp varint of 10 bytes with bits beyond 64, or of 11 bytes, is refused at the varint', () => {
    const ones = Array(9).fill(0xff);
    for (const varint of [
      [...ones, 0x7f],
      [...ones, 0x02],
      [...ones, 0xff, 0x01],
    ]) {
      const err = thrownHypError(() => protobufCodec.unmarshal(Uint8Array.from([0x20, ...varint])));
      expect(err.code).toBe('HYP_E_WS_DECODE');
      expect(err.params.offset).toBe(1);
      expect(err.message).toMatch(/field 4 \(timestamp\) holds a varint wider than 64 bits/);
    }
  });

  it('a 10-byte varint within 64 bits still decodes (-1), and an unknown field with a wide varint is refused too', () => {
    const m = protobufCodec.unmarshal(Uint8Array.from([0x20, ...Array(9).fill(0xff), 0x01]));
    expect(m.timestamp).toBe(-1n);
    const err = thrownHypError(() =>
      protobufCodec.unmarshal(Uint8Array.from([0x40, ...Array(10).fill(0xff), 0x01])),
    );
    expect(err.message).toMatch(/field 8 holds a varint wider than 64 bits/);
  });
});
