import { encode } from '@msgpack/msgpack';
import { describe, expect, it } from 'vitest';
import { flatbuffersCodec, jsonCodec, msgpackCodec } from '../../../../apps/server/ws/codecs/index.js';
import { envelope } from '../../../../apps/server/ws/envelope.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { HubTestBed, json, text } from './helpers.js';

const bed = new HubTestBed();

function decodeFailure(f: () => unknown): { code: string; offset: unknown } {
  try {
    f();
  } catch (err) {
    if (!isHypError(err)) throw err;
    return { code: err.code, offset: err.params.offset };
  }
  throw new Error('decoded');
}

describe('JSON text is valid UTF-8', () => {
  it('a JSON subscriber stays connected when a binary publisher sends data that is not UTF-8', async () => {
    await bed.serve();
    const subscriber = await bed.connect('json');
    subscriber.subscribe('s');
    await subscriber.nextOf('subscribed');
    const publisher = await bed.connect('protobuf');
    // a quoted byte 0xff: JSON-shaped, but not UTF-8, so not JSON text
    publisher.send({ type: 'publish', channel: 's', data: new Uint8Array([0x22, 0xff, 0x22]) });
    publisher.send({ type: 'publish', channel: 's', data: Buffer.from('"after"') });
    await subscriber.until((c) => c.of('message').length === 2 || c.closed !== undefined);
    expect(subscriber.closed).toBeUndefined();
    const [first, second] = subscriber.of('message');
    // not JSON text: written as a base64 string, as Go writes []byte
    expect(json(first!)).toBe(Buffer.from([0x22, 0xff, 0x22]).toString('base64'));
    expect(text(second!)).toBe('"after"');
  });

  it('marshal writes data with an overlong or surrogate UTF-8 sequence as base64', () => {
    for (const bad of [
      [0x22, 0xc0, 0xaf, 0x22], // overlong '/'
      [0x22, 0xed, 0xa0, 0x80, 0x22], // UTF-16 surrogate half
      [0x22, 0xf4, 0x90, 0x80, 0x80, 0x22], // above U+10FFFF
      [0x22, 0xe2, 0x82, 0x22], // truncated sequence
    ]) {
      const data = new Uint8Array(bad);
      const out = jsonCodec.marshal(envelope({ type: 'message', data }));
      expect(new TextDecoder('utf-8', { fatal: true }).decode(out)).toContain(
        Buffer.from(data).toString('base64'),
      );
    }
    const good = Buffer.from('"h\u00e9llo \u20ac \u{1f600}"');
    expect(Buffer.from(jsonCodec.marshal(envelope({ type: 'message', data: good }))).toString()).toBe(
      `{"type":"message","data":${good.toString()}}`,
    );
  });

  it('a JSON message whose strings are not UTF-8 is a decode error at the bad byte', () => {
    const bytes = Buffer.concat([
      Buffer.from('{"type":"a","channel":"x'),
      Buffer.from([0xff]),
      Buffer.from('"}'),
    ]);
    expect(decodeFailure(() => jsonCodec.unmarshal(bytes))).toEqual({ code: 'HYP_E_WS_DECODE', offset: 24 });
  });
});

describe('msgpack timestamps are int64', () => {
  it('a float timestamp beyond int64 is refused, not delivered with a timestamp no codec can carry', async () => {
    await bed.serve();
    const subscriber = await bed.connect('json');
    subscriber.subscribe('s');
    await subscriber.nextOf('subscribed');
    const publisher = await bed.connect('msgpack');
    publisher.ws.send(encode({ type: 'publish', channel: 's', data: Buffer.from('1'), timestamp: 1e300 }));
    const [err] = await publisher.nextOf('error');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_DECODE' });
    publisher.send({ type: 'publish', channel: 's', data: Buffer.from('2') });
    const [m] = await subscriber.nextOf('message');
    expect(text(m!)).toBe('2');
    expect(subscriber.unreadable).toBe(0);
  });

  it('decodes float timestamps only within int64', () => {
    expect(decodeFailure(() => msgpackCodec.unmarshal(encode({ timestamp: -1e19 })))).toMatchObject({
      code: 'HYP_E_WS_DECODE',
    });
    expect(decodeFailure(() => msgpackCodec.unmarshal(encode({ timestamp: 2 ** 63 })))).toMatchObject({
      code: 'HYP_E_WS_DECODE',
    });
    expect(msgpackCodec.unmarshal(encode({ timestamp: -(2 ** 63) })).timestamp).toBe(-(2n ** 63n));
    expect(msgpackCodec.unmarshal(encode({ timestamp: 1.7e18 })).timestamp).toBe(1_700_000_000_000_000_000n);
  });
});

describe('msgpack nesting', () => {
  it('a value nested deeper than 64 levels is refused at the level that exceeds it, before the decoder builds it', () => {
    // {"x": [[[[ … nil ]]]]}: 100,000 levels in 100 KB (the decoder kept a state per level, for good)
    const depth = 100_000;
    const bytes = new Uint8Array(3 + depth + 1);
    bytes.set([0x81, 0xa1, 0x78], 0);
    bytes.fill(0x91, 3, 3 + depth);
    bytes[3 + depth] = 0xc0;
    const failure = decodeFailure(() => msgpackCodec.unmarshal(bytes));
    expect(failure).toEqual({ code: 'HYP_E_WS_DECODE', offset: 3 + 63 });
    // 63 levels inside the envelope's map are fine (an unknown key is ignored)
    const ok = new Uint8Array(3 + 63 + 1);
    ok.set([0x81, 0xa1, 0x78], 0);
    ok.fill(0x91, 3, 3 + 63);
    ok[3 + 63] = 0xc0;
    expect(msgpackCodec.unmarshal(ok).type).toBe('');
  });

  it('the depth check reads every msgpack type: it finds deep nesting after values of each kind', () => {
    const everyKind = [
      [1, -1, 200, -200, 70_000, -70_000, 2 ** 40, -(2 ** 40), 1.5, Math.fround(0.5), true, false, null],
      ['', 'y'.repeat(31), 'y'.repeat(300), 'z'.repeat(70_000)],
      [new Uint8Array(3), new Uint8Array(300), new Uint8Array(70_000)],
      [new Date(0), new Date(1_500), new Date(2 ** 35 * 1000)],
      {
        d: { e: [[[]]] },
        f: {},
        g: new Array(20).fill(0),
        h: Object.fromEntries(new Array(20).fill(0).map((_, i) => [`k${i}`, i])),
      },
    ];
    const head = encode({ a: everyKind, x: null }, { useBigInt64: true });
    // replace the trailing nil of "x" with 100 nested arrays
    const bytes = new Uint8Array(head.length - 1 + 100 + 1);
    bytes.set(head.subarray(0, head.length - 1), 0);
    bytes.fill(0x91, head.length - 1, head.length - 1 + 100);
    bytes[bytes.length - 1] = 0xc0;
    expect(decodeFailure(() => msgpackCodec.unmarshal(bytes))).toEqual({
      code: 'HYP_E_WS_DECODE',
      offset: head.length - 1 + 63,
    });
    const m = msgpackCodec.unmarshal(encode({ type: 'message', data: new Uint8Array(300), a: everyKind }));
    expect(m.type).toBe('message');
    expect(m.data.length).toBe(300);
  });
});

describe('msgpack size of structure', () => {
  it('a message of more than 10,000 values is refused at the value past the bound, before the decoder builds it', () => {
    // {"x": [[], [], … 65,535 times]}: the decoder built every array for a key it ignores (~20 ms per 100 KB)
    const bytes = new Uint8Array(6 + 0xffff);
    bytes.set([0x81, 0xa1, 0x78, 0xdc, 0xff, 0xff], 0);
    bytes.fill(0x90, 6);
    // values: the map (1), "x" (2), the array (3), then its items from byte 6
    expect(decodeFailure(() => msgpackCodec.unmarshal(bytes))).toEqual({
      code: 'HYP_E_WS_DECODE',
      offset: 6 + 10_000 - 3,
    });
    const fits = encode({ type: 'message', x: new Array(9_990).fill(0) });
    expect(msgpackCodec.unmarshal(fits).type).toBe('message');
  });
});

describe('strings and bytes as sent', () => {
  // msgpack before the bin type (and encoders in compatibility mode, e.g. msgpack-python < 1.0) write bytes as str
  it('msgpack data sent as str keeps its exact bytes, also when they are not UTF-8', () => {
    for (const length of [3, 300]) {
      const data = new Uint8Array(length).map((_, i) => [0xff, 0x00, 0x80][i % 3]!);
      const head = Buffer.from([0x81, 0xa4, ...Buffer.from('data')]);
      const str = length < 32 ? [0xa0 | length] : [0xda, length >> 8, length & 0xff];
      const m = msgpackCodec.unmarshal(Buffer.concat([head, Buffer.from(str), data]));
      expect(Array.from(m.data)).toEqual(Array.from(data));
    }
  });

  it('a msgpack or FlatBuffers string field that is not UTF-8 is a decode error at the string', () => {
    // {"channel": "a\xff"}: "a\xff" starts at byte 10
    const mp = Buffer.from([0x81, 0xa7, ...Buffer.from('channel'), 0xa2, 0x61, 0xff]);
    expect(decodeFailure(() => msgpackCodec.unmarshal(mp))).toEqual({ code: 'HYP_E_WS_DECODE', offset: 10 });
    const fb = Buffer.from(flatbuffersCodec.marshal(envelope({ channel: 'ab' })));
    const at = fb.indexOf(Buffer.from('ab'));
    fb[at + 1] = 0xff;
    expect(decodeFailure(() => flatbuffersCodec.unmarshal(fb))).toEqual({
      code: 'HYP_E_WS_DECODE',
      offset: at,
    });
    // a leading U+FEFF is part of the name, not a byte-order mark to drop
    const bom = '\ufeffnews';
    for (const codec of [jsonCodec, msgpackCodec, flatbuffersCodec]) {
      expect(codec.unmarshal(codec.marshal(envelope({ channel: bom }))).channel, codec.name).toBe(bom);
    }
    // valid strings of every length still decode
    const long = 'é'.repeat(200);
    expect(msgpackCodec.unmarshal(msgpackCodec.marshal(envelope({ channel: long }))).channel).toBe(long);
    expect(flatbuffersCodec.unmarshal(flatbuffersCodec.marshal(envelope({ channel: long }))).channel).toBe(
      long,
    );
  });
});
