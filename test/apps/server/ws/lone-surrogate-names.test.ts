import { describe, expect, it } from 'vitest';
import { codecByName, jsonCodec } from '../../../../apps/server/ws/codecs/index.js';
import { HubTestBed, json, thrownHypError } from './helpers.js';

/**
 * A JSON `\uD800`-style escape can spell a lone surrogate, which has no
 * UTF-8 form: wherever the hub writes a name as UTF-8 (Redis stream keys,
 * msgpack bus events, binary subscribers) "\ud800", "\udfff" and "\ufffd"
 * become one name, and one channel's history replays on another. Names
 * holding one are refused where they are decoded, with the escape's byte.
 */

const bed = new HubTestBed();

const utf8 = (s: string) => new TextEncoder().encode(s);

describe('lone surrogates in names', () => {
  it('JSON envelope: type, channel, client_id, offset and id holding a lone surrogate escape are HYP_E_WS_DECODE at the escape', () => {
    for (const key of ['type', 'channel', 'client_id', 'offset', 'id']) {
      for (const spelled of ['\\ud800', '\\uDFFF', '\\ud800\\u0041', '\\udc00\\ud800']) {
        const text = `{"data":1,"${key}":"ab${spelled}"}`;
        const err = thrownHypError(() => jsonCodec.unmarshal(utf8(text)));
        expect(err.code).toBe('HYP_E_WS_DECODE');
        expect(err.params.offset).toBe(text.indexOf('\\u'));
        expect(err.message).toContain(`"${key}"`);
        expect(err.message).toMatch(/lone surrogate/);
      }
    }
    // a high surrogate followed by a high one: the first is lone
    const text = '{"channel":"\\ud800\\ud800\\udc00"}';
    expect(thrownHypError(() => jsonCodec.unmarshal(utf8(text))).params.offset).toBe(text.indexOf('\\u'));
  });

  it('JSON envelope: pairs, escaped backslashes and surrogates inside data are still taken', () => {
    const m = jsonCodec.unmarshal(
      utf8('{"type":"publish","channel":"\\ud83d\\ude00 \\\\ud800 \\u00e9","data":{"x":"\\ud800"}}'),
    );
    expect(m.channel).toBe('😀 \\ud800 é');
    // data is the application's payload, kept byte for byte
    expect(new TextDecoder().decode(m.data)).toBe('{"x":"\\ud800"}');
  });

  it('control data (JSON for json, msgpack, flatbuffers): a lone surrogate in channel, offset or room_id is HYP_E_WS_CONTROL naming the byte', () => {
    for (const name of ['json', 'msgpack', 'flatbuffers']) {
      const codec = codecByName(name)!;
      for (const [body, at] of [
        ['{"channel":"\\ud800"}', 12],
        ['{"channel":"a","offset":"1-\\udfff"}', 27],
      ] as const) {
        const err = thrownHypError(() => codec.decodeChannelRequest(utf8(body)));
        expect(err.code).toBe('HYP_E_WS_CONTROL');
        expect(err.message).toMatch(new RegExp(`lone surrogate .* at byte ${at}`));
      }
      const err = thrownHypError(() => codec.decodeRoomRequest(utf8('{"room_id":"r\\udbff"}')));
      expect(err.code).toBe('HYP_E_WS_CONTROL');
      expect(err.message).toMatch(/lone surrogate .* at byte 13/);
      expect(codec.decodeRoomRequest(utf8('{"room_id":"\\ud83d\\ude00"}'))).toEqual({ roomId: '😀' });
    }
  });

  it('control data of the binary codecs that is not UTF-8 is refused, not read as U+FFFD (which would alias names too)', () => {
    for (const name of ['msgpack', 'flatbuffers']) {
      const codec = codecByName(name)!;
      const body = Buffer.concat([
        Buffer.from('{"channel":"a'),
        Buffer.from([0xed, 0xa0, 0x80]),
        Buffer.from('"}'),
      ]);
      const err = thrownHypError(() => codec.decodeChannelRequest(body));
      expect(err.code).toBe('HYP_E_WS_CONTROL');
      expect(err.message).toMatch(/not UTF-8 at byte 13/);
      expect(thrownHypError(() => codec.decodeRoomRequest(Buffer.from([0x7b, 0xff, 0x7d]))).message).toMatch(
        /not UTF-8 at byte 1/,
      );
    }
  });

  for (const codecName of ['json', 'msgpack', 'flatbuffers']) {
    it(`${codecName}: subscribe, join_room and publish naming a lone surrogate are refused over the wire; nothing is kept and the connection stays`, async () => {
      const served = await bed.serve();
      const c = await bed.connect(codecName);
      const lone = '\\ud800';
      c.send({ type: 'subscribe', data: utf8(`{"channel":"${lone}"}`) });
      c.send({ type: 'join_room', data: utf8(`{"room_id":"${lone}"}`) });
      if (codecName === 'json') c.ws.send(`{"type":"publish","channel":"${lone}","data":1}`);
      const expected = codecName === 'json' ? 3 : 2;
      await c.until((x) => x.of('error').length === expected);
      const codes = c.of('error').map((m) => (json(m) as { code: string }).code);
      expect(codes).toEqual(
        codecName === 'json'
          ? ['HYP_E_WS_CONTROL', 'HYP_E_WS_CONTROL', 'HYP_E_WS_DECODE']
          : ['HYP_E_WS_CONTROL', 'HYP_E_WS_CONTROL'],
      );
      expect(served.hub.subscribers('\ud800')).toBe(0);
      expect(served.hub.members('\ud800')).toEqual([]);
      c.subscribe('ok', '');
      await c.until((x) => x.of('subscribed').length === 1);
      expect(c.closed).toBeUndefined();
    });
  }
});
