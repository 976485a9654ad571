import { describe, expect, it } from 'vitest';
import { codecByName, negotiate } from '../../../../../apps/server/ws/codecs/index.js';
import { envelope } from '../../../../../apps/server/ws/envelope.js';
import { isHypError } from '../../../../../supervisor/errors.js';

describe('subprotocol negotiation', () => {
  it('picks the first offered codec the hub enables', () => {
    expect(negotiate(['msgpack', 'protobuf'])?.name).toBe('msgpack');
    expect(negotiate(['bogus', ' protobuf'])?.name).toBe('protobuf');
    expect(negotiate(['msgpack', 'json'], ['json', 'protobuf'])?.name).toBe('json');
  });

  it('answers no subprotocol (JSON) when none or only unknown names are offered', () => {
    expect(negotiate([])).toBeUndefined();
    expect(negotiate(['soap', 'wamp'])).toBeUndefined();
  });
});

describe('control data', () => {
  it('protobuf carries ChannelRequest / RoomRequest; the others carry JSON', () => {
    const pb = codecByName('protobuf')!;
    expect(Buffer.from(pb.encodeChannelRequest({ channel: 'news', offset: '' })).toString('hex')).toBe(
      '0a046e657773',
    );
    expect(pb.decodeChannelRequest(new Uint8Array([0x0a, 1, 0x61]))).toEqual({ channel: 'a', offset: '' });
    expect(pb.decodeRoomRequest(new Uint8Array([0x0a, 1, 0x72]))).toEqual({ roomId: 'r' });
    for (const name of ['json', 'flatbuffers', 'msgpack']) {
      const c = codecByName(name)!;
      expect(Buffer.from(c.encodeChannelRequest({ channel: 'news', offset: '' })).toString()).toBe(
        '{"channel":"news"}',
      );
      expect(c.decodeRoomRequest(Buffer.from('{"room_id":"lobby"}'))).toEqual({ roomId: 'lobby' });
      expect(c.decodeChannelRequest(Buffer.from('{"channel":"x","offset":"e:1"}'))).toEqual({
        channel: 'x',
        offset: 'e:1',
      });
    }
  });

  it('a control request without its channel or room is a HYP_E_WS_CONTROL error', () => {
    for (const c of ['json', 'protobuf'].map((n) => codecByName(n)!)) {
      for (const bad of [new Uint8Array(), Buffer.from('{"channel":3}'), Buffer.from('[')]) {
        try {
          c.decodeChannelRequest(bad);
          expect.unreachable();
        } catch (err) {
          expect(isHypError(err, 'HYP_E_WS_CONTROL')).toBe(true);
        }
      }
    }
  });

  it('envelope() fills absent fields with their empty values', () => {
    expect(envelope({ type: 'x' })).toEqual({
      type: 'x',
      channel: '',
      data: new Uint8Array(),
      timestamp: 0n,
      clientId: '',
      offset: '',
    });
  });
});

describe('JSON timestamp bounds', () => {
  it('refuses a timestamp beyond int64 at its byte offset, however many digits it has', () => {
    const json = codecByName('json')!;
    const at = '{"type":"message","timestamp":'.length;
    for (const digits of [
      '9223372036854775808',
      '-9223372036854775809',
      '1'.repeat(21),
      '7'.repeat(200_000),
    ]) {
      const bytes = Buffer.from(`{"type":"message","timestamp":${digits}}`);
      let error: unknown;
      try {
        json.unmarshal(bytes);
      } catch (err) {
        error = err;
      }
      expect(isHypError(error) && error.code, digits.slice(0, 24)).toBe('HYP_E_WS_DECODE');
      expect((error as Error).message).toContain('"timestamp" overflows int64');
      expect((error as Error).message).toContain(String(at));
    }
    expect(json.unmarshal(Buffer.from('{"type":"message","timestamp":-9223372036854775808}')).timestamp).toBe(
      -9223372036854775808n,
    );
  });
});
