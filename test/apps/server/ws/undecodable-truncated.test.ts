/**
 * A msgpack or protobuf frame that does not parse at all — cut off, or with
 * garbage after its fields — is refused with `HYP_E_WS_DECODE` at the byte
 * where the library gave up, as before, and the refusal now names the
 * request by the fields read whole before that byte: its `channel`, its
 * publish `id`, its room request (`request`, `room_id`), as the JSON codec
 * already did for a frame cut off after its `id`. A field cut in half, a
 * field at fault and a field whose later occurrence is cut are never echoed.
 * The connection stays usable: a good publish after the refusal is delivered
 * and acknowledged.
 *
 * A real worker (`dist/apps/server/worker.js`, standalone) serving the
 * ws-relay fixture app's hub on 127.0.0.1, and raw `ws` clients sending
 * hand-built frames.
 */
import { encode as msgpackEncode } from '@msgpack/msgpack';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CodecName } from '../../../../apps/server/ws/codecs/index.js';
import type { Envelope } from '../../../../apps/server/ws/envelope.js';
import { fixtureApp, type StandaloneWorker, startStandaloneWorker } from '../../../helpers/supervisor.js';
import { json, TestClient } from './helpers.js';

const te = new TextEncoder();

let worker: StandaloneWorker;
let url: string;

beforeAll(async () => {
  worker = await startStandaloneWorker(fixtureApp('ws-relay'), { HYP_LOG_LEVEL: 'debug' });
  url = `ws://127.0.0.1:${worker.port}/ws`;
}, 60_000);

const clients: TestClient[] = [];
afterAll(async () => {
  await Promise.all(clients.map((c) => c.close().catch(() => {})));
  await worker.stop();
});

async function connect(codec: CodecName): Promise<TestClient> {
  const c = await TestClient.connect(url, codec);
  clients.push(c);
  // the fixture app greets every client with the worker's pid
  await c.until((x) => x.received.length >= 1);
  return c;
}

const concat = (...parts: ArrayLike<number>[]) => Uint8Array.from(parts.flatMap((p) => Array.from(p)));

/** A msgpack map header for `pairs` pairs (fixmap, or map 16 when `map16`) and its pairs, each encoded by the library. */
function msgpackMap(pairs: Array<[string, unknown]>, map16 = false): Uint8Array {
  const head = map16 ? [0xde, pairs.length >> 8, pairs.length & 0xff] : [0x80 | pairs.length];
  return concat(head, ...pairs.flatMap(([k, v]) => [msgpackEncode(k), msgpackEncode(v)]));
}

/** A length-delimited protobuf field (wire type 2), written by protobufjs. */
function pbField(number: number, value: string | Uint8Array): Uint8Array {
  const w = protobuf.Writer.create().uint32((number << 3) | 2);
  return (typeof value === 'string' ? w.string(value) : w.bytes(value)).finish();
}

/** The frame's refusal, once it came. */
async function refusalOf(c: TestClient, frame: Uint8Array): Promise<Envelope> {
  const before = c.of('error').length;
  c.ws.send(frame, { binary: true });
  await c.until((x) => x.of('error').length > before);
  return c.of('error')[before]!;
}

interface Case {
  what: string;
  frame: Uint8Array;
  /** Where the library gives up (the refusal's `offset`, unchanged by the partial read). */
  offset: number;
  /** What the refusal echoes: the envelope's channel and id, and the data's extra keys. */
  channel: string;
  id?: string;
  room?: { request: string; room_id?: string };
}

/** The cases of `codec`, for a publish on `channel` with id `id` and a join of `room`. */
type Cases = (channel: string, id: string, room: string) => Case[];

const msgpackCases: Cases = (channel, id, room) => {
  const data = te.encode('{"n":1}');
  const head = msgpackMap([
    ['type', 'publish'],
    ['channel', channel],
    ['id', id],
  ]);
  const whole = msgpackMap([
    ['type', 'publish'],
    ['channel', channel],
    ['id', id],
    ['data', data],
  ]);
  // the pairs of map `b` under a header announcing `n` pairs, more than there are: cut off after them
  const announcing = (n: number, b: Uint8Array) => concat([0x80 | n], b.subarray(1));
  // the last two bytes of the id string missing
  const cutInId = announcing(4, head).subarray(0, head.length - 2);
  const badChannel = msgpackMap([
    ['type', 'publish'],
    ['channel', 7],
    ['id', id],
    ['data', data],
  ]);
  const roomData = te.encode(JSON.stringify({ room_id: room }));
  const join = msgpackMap([
    ['type', 'join_room'],
    ['data', roomData],
  ]);
  return [
    {
      what: 'cut off after its id and channel pairs',
      frame: announcing(4, head),
      offset: head.length,
      channel,
      id,
    },
    {
      what: 'cut off inside the value after them',
      frame: whole.subarray(0, whole.length - 3),
      // the decoder stops after the type byte of a str or bin whose bytes are missing (bin 8: 2 + 7 bytes)
      offset: whole.length - (2 + data.length) + 1,
      channel,
      id,
    },
    {
      what: 'cut off inside its id string: no id',
      frame: cutInId,
      // after the type byte of the id string (fixstr: one byte, then the text)
      offset: head.length - id.length,
      channel,
    },
    {
      what: 'a whole id, then a second id cut off (that one would have won): no id',
      frame: concat(
        [0x85],
        head.subarray(1),
        msgpackEncode('id'),
        msgpackEncode(`${id}-later`).subarray(0, 3),
      ),
      offset: head.length + msgpackEncode('id').length + 1,
      channel,
    },
    {
      what: 'a garbage byte after the map',
      frame: concat(whole, [0x00]),
      offset: whole.length,
      channel,
      id,
    },
    {
      what: 'a type byte never used after its fields, inside the map (map 16)',
      frame: concat(
        msgpackMap(
          [
            ['type', 'publish'],
            ['channel', channel],
            ['id', id],
            ['data', data],
            ['x', 0],
          ],
          true,
        ).subarray(0, 3),
        whole.subarray(1),
        [0xc1],
      ),
      offset: 3 + whole.length - 1,
      channel,
      id,
    },
    {
      what: 'a channel of the wrong type (at fault), then cut off: the id, not the channel',
      frame: announcing(5, badChannel),
      offset: badChannel.length,
      channel: '',
      id,
    },
    {
      what: 'a join_room cut off after its data: the request and its room',
      frame: announcing(3, join),
      offset: join.length,
      channel: '',
      room: { request: 'join_room', room_id: room },
    },
  ];
};

const protobufCases: Cases = (channel, id, room) => {
  const fields = concat(pbField(1, 'publish'), pbField(2, channel), pbField(7, id));
  const data = pbField(3, te.encode('{"n":1}'));
  // field 3 (data) announcing 10 bytes, 3 there: protobufjs stops after the length
  const cutData = concat([0x1a, 10], te.encode('{"n'));
  // field 7 (id) announcing 20 bytes, 3 there
  const cutId = concat([0x3a, 20], te.encode('p-x'));
  // RoomRequest{room_id = 1} as the data
  const join = concat(pbField(1, 'join_room'), pbField(3, pbField(1, room)));
  return [
    {
      what: 'its last field cut off: the fields before it',
      frame: concat(fields, cutData),
      offset: fields.length + 2,
      channel,
      id,
    },
    {
      what: 'an id whose length runs past the end: no id',
      frame: concat(pbField(1, 'publish'), pbField(2, channel), data, cutId),
      offset: pbField(1, 'publish').length + pbField(2, channel).length + data.length + 2,
      channel,
    },
    {
      what: 'a whole id, then a second id cut off (that one would have won): no id',
      frame: concat(fields, data, cutId),
      offset: fields.length + data.length + 2,
      channel,
    },
    {
      what: 'garbage after its fields (an unknown field of wire type 7)',
      frame: concat(fields, data, [(9 << 3) | 7]),
      offset: fields.length + data.length + 1,
      channel,
      id,
    },
    {
      what: 'a join_room with a field cut off after its data: the request and its room',
      frame: concat(join, cutId),
      offset: join.length + 2,
      channel: '',
      room: { request: 'join_room', room_id: room },
    },
  ];
};

const cases: Array<[CodecName, Cases]> = [
  ['msgpack', msgpackCases],
  ['protobuf', protobufCases],
];

describe.each(cases)('%s: a frame that does not parse, on a real worker', (codecName, casesOf) => {
  const all = casesOf(`news-${codecName}`, `p-${codecName}`, `lobby-${codecName}`);

  it.each(all.map((c) => [c.what, c] as const))(
    '%s: HYP_E_WS_DECODE at the byte where it gave up, echoing what was read whole',
    async (_what, spec) => {
      const c = await connect(codecName);
      const m = await refusalOf(c, spec.frame);
      expect({ channel: m.channel, id: m.id, data: json(m) }).toEqual({
        channel: spec.channel,
        id: spec.id,
        data: {
          code: 'HYP_E_WS_DECODE',
          message: expect.stringContaining(`at byte ${spec.offset}`),
          offset: spec.offset,
          ...(spec.id ? { id: spec.id } : {}),
          ...spec.room,
        },
      });
    },
  );

  it('after such refusals, a good publish on the same connection is delivered and acknowledged', async () => {
    const channel = `after-${codecName}`;
    const sub = await connect(codecName);
    sub.subscribe(channel);
    await sub.until((x) => x.of('subscribed').length >= 1);
    const c = await connect(codecName);
    // four refusals: max_failures (5) is not reached
    const refused = casesOf(channel, 'cut', 'lobby')
      .filter((x) => x.id === 'cut')
      .slice(0, 4);
    for (const r of refused) expect((await refusalOf(c, r.frame)).id).toBe('cut');
    c.send({ type: 'publish', channel, id: 'good', data: te.encode('{"n":2}') });
    await c.until((x) => x.of('published').length >= 1);
    expect(c.of('published').map((m) => m.id)).toEqual(['good']);
    await sub.until((x) => x.of('message').some((m) => m.channel === channel));
    expect(
      sub
        .of('message')
        .filter((m) => m.channel === channel)
        .map((m) => [m.id, json(m)]),
    ).toEqual([['good', { n: 2 }]]);
    expect(c.closed).toBeUndefined();
  });
});

describe('the worker through all of it', () => {
  it('did not exit and logged nothing at error or fatal level', () => {
    expect(worker.exited()).toBeUndefined();
    expect(
      worker.logs.filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'stderr'),
    ).toEqual([]);
  });
});
