import { readFileSync } from 'node:fs';
import { ByteBuffer } from 'flatbuffers';
import { describe, expect, it } from 'vitest';
import { codecByName, codecs } from '../../../../../apps/server/ws/codecs/index.js';
import { protoSchema } from '../../../../../apps/server/ws/codecs/protobuf.js';
import type { Envelope } from '../../../../../apps/server/ws/envelope.js';

interface FixtureEnvelope {
  type: string;
  channel: string;
  data_text?: string;
  data_hex?: string;
  timestamp: string;
  client_id: string;
  offset?: string;
}
interface Golden {
  cases: Array<{ name: string; envelope: FixtureEnvelope } & Record<string, unknown>>;
  decode_only: Array<{ name: string; codec: string; hex: string; envelope: FixtureEnvelope }>;
}

const fixtures = new URL('../../../../fixtures/ws/', import.meta.url);
const golden = JSON.parse(readFileSync(new URL('golden.json', fixtures), 'utf8')) as Golden;

function toEnvelope(e: FixtureEnvelope): Envelope {
  const data = e.data_hex !== undefined ? Buffer.from(e.data_hex, 'hex') : Buffer.from(e.data_text ?? '');
  return {
    type: e.type,
    channel: e.channel,
    data: new Uint8Array(data),
    timestamp: BigInt(e.timestamp),
    clientId: e.client_id,
    offset: e.offset ?? '',
  };
}

function plain(m: Envelope) {
  return { ...m, data: Buffer.from(m.data).toString('hex') };
}

describe('golden byte vectors', () => {
  for (const c of golden.cases) {
    for (const codec of codecs) {
      const hex = c[codec.name] as string;
      it(`${codec.name} encodes "${c.name}" to the committed bytes`, () => {
        expect(Buffer.from(codec.marshal(toEnvelope(c.envelope))).toString('hex')).toBe(hex);
      });
      it(`${codec.name} decodes the committed bytes of "${c.name}"`, () => {
        const decoded = codec.unmarshal(new Uint8Array(Buffer.from(hex, 'hex')));
        const expected = toEnvelope(c.envelope);
        if (codec.name === 'json' && c.envelope.data_hex !== undefined) {
          // binary data travels through JSON as a base64 string, as Go writes []byte
          expected.data = new Uint8Array(
            Buffer.from(JSON.stringify(Buffer.from(expected.data).toString('base64'))),
          );
        }
        expect(plain(decoded)).toEqual(plain(expected));
      });
    }
  }
  for (const c of golden.decode_only) {
    it(`${c.codec} reads ${c.name}`, () => {
      const decoded = codecByName(c.codec)!.unmarshal(new Uint8Array(Buffer.from(c.hex, 'hex')));
      expect(plain(decoded)).toEqual(plain(toEnvelope(c.envelope)));
    });
  }
});

describe('wire layout', () => {
  it('codec indexes are json 0, protobuf 1, flatbuffers 2, msgpack 3; only json uses text frames', () => {
    expect(codecs.map((c) => [c.index, c.name, c.frame])).toEqual([
      [0, 'json', 'text'],
      [1, 'protobuf', 'binary'],
      [2, 'flatbuffers', 'binary'],
      [3, 'msgpack', 'binary'],
    ]);
  });

  it('the protobuf schema in code is the committed .proto (comments aside)', () => {
    const strip = (s: string) =>
      s
        .split('\n')
        .map((l) => l.replace(/\/\/.*$/, '').trim())
        .filter(Boolean)
        .join('\n');
    expect(strip(protoSchema)).toBe(strip(readFileSync(new URL('message.proto', fixtures), 'utf8')));
  });

  it('protobuf writes the timestamp as field 4, a plain (not zigzag) varint', () => {
    const bytes = codecByName('protobuf')!.marshal(
      toEnvelope({ type: '', channel: '', timestamp: '300', client_id: '' }),
    );
    expect(Buffer.from(bytes).toString('hex')).toBe('20ac02');
  });

  it('flatbuffers output reads back through the flatbuffers runtime: slots 0-4, no file identifier', () => {
    const c = golden.cases[0]!;
    const bb = new ByteBuffer(new Uint8Array(Buffer.from(c.flatbuffers as string, 'hex')));
    const table = bb.readInt32(bb.position()) + bb.position();
    const str = (slot: number) => bb.__string(table + bb.__offset(table, 4 + slot * 2)) as string;
    expect(str(0)).toBe('message');
    expect(str(1)).toBe('news');
    const data = bb.__offset(table, 8);
    const vec = bb.__vector(table + data);
    expect(Buffer.from(bb.bytes().subarray(vec, vec + bb.__vector_len(table + data))).toString()).toBe(
      c.envelope.data_text,
    );
    expect(bb.readInt64(table + bb.__offset(table, 10))).toBe(1700000000123456789n);
    expect(str(4)).toBe('client-7');
    expect(bb.__has_identifier('WSMS')).toBe(false);
  });

  it('msgpack carries data as bin and the timestamp as a 64-bit integer', () => {
    const hex = golden.cases[0]!.msgpack as string;
    expect(hex).toContain(Buffer.from('data').toString('hex') + 'c418');
    expect(hex).toContain(Buffer.from('timestamp').toString('hex') + 'cf');
  });

  it('JSON keeps data as raw JSON and the int64 timestamp exactly', () => {
    const text = Buffer.from(golden.cases[0]!.json as string, 'hex').toString();
    expect(text).toBe(
      '{"type":"message","channel":"news","data":{"headline":"hi","n":42},"timestamp":1700000000123456789,"client_id":"client-7"}',
    );
  });
});
