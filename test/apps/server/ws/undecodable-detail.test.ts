/**
 * A frame the hub cannot take is answered with an `error` frame that says
 * what and where: `HYP_E_WS_DECODE` with the byte where the codec gave up
 * (`offset`) on every codec; for a frame that parses but holds a field of the
 * wrong shape, the field's key path (`path`) too, and the request's `id`,
 * `channel` and room request (`request`, `room_id`) when those fields were
 * readable, so the client can tell which of its requests was refused. Invalid
 * control data (`HYP_E_WS_CONTROL`) names its key path (`data.room_id`) and,
 * for data that does not parse, the byte of the data. None of it stops the
 * worker or loses the connection's accepted, in-order data; the fifth decode
 * failure closes the connection with 1008 (`max_failures`), after what came
 * before it was handled.
 *
 * A real worker (`dist/apps/server/worker.js`, standalone) serving the
 * ws-relay fixture app's hub on 127.0.0.1, and raw `ws` clients.
 */
import type { Socket } from 'node:net';
import { encode as msgpackEncode } from '@msgpack/msgpack';
import protobuf from 'protobufjs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type CodecName, codecByName } from '../../../../apps/server/ws/codecs/index.js';
import { type Envelope, envelope } from '../../../../apps/server/ws/envelope.js';
import { fixtureApp, type StandaloneWorker, startStandaloneWorker } from '../../../helpers/supervisor.js';
import { json, serveHub, TestClient } from './helpers.js';

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

/** The error frames `c` received, once there are `count`. */
async function refusals(c: TestClient, count: number): Promise<Envelope[]> {
  await c.until((x) => x.of('error').length >= count);
  return c.of('error');
}

/** Sends raw bytes (or text) as a text or binary frame. */
function sendRaw(c: TestClient, frame: Uint8Array | string, binary = c.codec.frame === 'binary'): void {
  c.ws.send(frame, { binary });
}

/** Index of `needle` in `haystack` (for the expected offset of a value in a hand-built frame). */
function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  return Buffer.from(haystack).indexOf(Buffer.from(needle));
}

// protobuf messages with fields of the wrong wire type: `timestamp` as bytes, `client_id` as a varint
const pbRoot = protobuf.parse(
  `syntax = "proto3";
message BadTimestamp { string type = 1; string channel = 2; bytes data = 3; string timestamp = 4; string id = 7; }
message BadClientId { string type = 1; bytes data = 3; uint64 client_id = 5; }
message BadRoomRequest { uint64 room_id = 1; }
`,
  { keepCase: true },
).root;
const BadTimestamp = pbRoot.lookupType('BadTimestamp');
const BadClientId = pbRoot.lookupType('BadClientId');
const BadRoomRequest = pbRoot.lookupType('BadRoomRequest');

/** The byte where the FlatBuffers vtable entry of `slot` sits. */
function flatEntry(b: Uint8Array, slot: number): number {
  const view = new DataView(b.buffer, b.byteOffset, b.byteLength);
  const table = view.getUint32(0, true);
  return table - view.getInt32(table, true) + 4 + slot * 2;
}

/** A FlatBuffers frame of `fields` whose vtable entry for `slot` points far beyond the buffer. */
function flatWithBadSlot(fields: Partial<Envelope>, slot: number): { frame: Uint8Array; offset: number } {
  const frame = codecByName('flatbuffers')!.marshal(envelope(fields)).slice();
  const offset = flatEntry(frame, slot);
  new DataView(frame.buffer).setUint16(offset, 0xfff0, true);
  return { frame, offset };
}

interface Shape {
  frame: Uint8Array | string;
  path: string;
  offset: number;
}

interface CodecCases {
  /** Frames that do not parse, with the byte where the codec gives up. */
  unparsable: Array<{
    what: string;
    frame: Uint8Array | string;
    offset: number;
    binary?: boolean;
    /** The channel read before the codec gave up (JSON reads in order). */
    channel?: string;
  }>;
  /** A publish on `channel` with publish id `id` whose `timestamp` is of the wrong type. */
  badTimestamp(channel: string, id: string): Shape;
  /** A join_room of `room` whose `client_id` is of the wrong type. */
  badClientId(room: string): Shape;
  /** A publish with `id` cut off after the id: it does not parse, but its id was read whole (JSON only). */
  truncatedAfterId?(channel: string, id: string): { frame: string; offset: number };
  /** join_room data with `room_id` a number; data that does not parse and the byte where. */
  badRoomData: Uint8Array;
  unparsableRoomData?: { data: Uint8Array; offset: number };
}

const roomJson = (room: string) => te.encode(JSON.stringify({ room_id: room }));

const cases: Record<CodecName, CodecCases> = {
  json: {
    unparsable: [
      { what: 'garbage', frame: 'hello', offset: 0 },
      { what: 'cut off', frame: '{"type":"publish","channel":"news"', offset: 34, channel: 'news' },
      { what: 'a key missing', frame: '{"type":"publish",}', offset: 18 },
      {
        what: 'not UTF-8, in a binary frame',
        frame: Uint8Array.from([0x7b, 0x22, 0xff]),
        offset: 2,
        binary: true,
      },
    ],
    badTimestamp(channel, id) {
      const head = `{"type":"publish","channel":"${channel}","id":"${id}","timestamp":`;
      return { frame: `${head}"soon","data":{"n":1}}`, path: 'timestamp', offset: head.length };
    },
    badClientId(room) {
      const head = `{"type":"join_room","data":{"room_id":"${room}"},"client_id":`;
      return { frame: `${head}7}`, path: 'client_id', offset: head.length };
    },
    truncatedAfterId(channel, id) {
      const frame = `{"type":"publish","channel":"${channel}","id":"${id}","data":{"n":`;
      return { frame, offset: frame.length };
    },
    badRoomData: te.encode('{"room_id":5}'),
  },
  msgpack: {
    unparsable: [
      { what: 'a type byte never used', frame: Uint8Array.from([0xc1]), offset: 0 },
      { what: 'a type byte never used, after a map header', frame: Uint8Array.from([0x81, 0xc1]), offset: 1 },
      {
        what: 'bytes after the message',
        frame: Uint8Array.from([...msgpackEncode({ type: 'publish' }), 0x00]),
        offset: msgpackEncode({ type: 'publish' }).length,
      },
      { what: 'text', frame: 'hello', offset: 1, binary: false },
    ],
    badTimestamp(channel, id) {
      const frame = msgpackEncode({
        type: 'publish',
        channel,
        id,
        timestamp: 'soon',
        data: te.encode('{"n":1}'),
      });
      return {
        frame,
        path: 'timestamp',
        offset: indexOf(frame, Uint8Array.from([0xa4, ...te.encode('soon')])),
      };
    },
    badClientId(room) {
      const frame = msgpackEncode({ type: 'join_room', data: roomJson(room), client_id: [7] });
      return { frame, path: 'client_id', offset: frame.length - 2 };
    },
    badRoomData: te.encode('{"room_id":5}'),
    unparsableRoomData: { data: te.encode('{"room_id":'), offset: 11 },
  },
  protobuf: {
    unparsable: [
      { what: 'a tag cut off', frame: Uint8Array.from([0xff, 0xff, 0xff]), offset: 3 },
      { what: 'wire type 4', frame: 'hello', offset: 3, binary: false },
    ],
    badTimestamp(channel, id) {
      const frame = BadTimestamp.encode({
        type: 'publish',
        channel,
        id,
        timestamp: 'soon',
        data: te.encode('{"n":1}'),
      })
        .finish()
        .slice();
      // field 4, wire type 2: tag 0x22, then the length
      return {
        frame,
        path: 'timestamp',
        offset: indexOf(frame, Uint8Array.from([0x22, 4, ...te.encode('soon')])),
      };
    },
    badClientId(room) {
      const data = codecByName('protobuf')!.encodeRoomRequest({ roomId: room });
      const frame = BadClientId.encode({ type: 'join_room', data, client_id: 7 }).finish().slice();
      // field 5, wire type 0: tag 0x28, the last field written
      return { frame, path: 'client_id', offset: frame.length - 2 };
    },
    badRoomData: BadRoomRequest.encode({ room_id: 5 }).finish().slice(),
    // RoomRequest field 1, 5 bytes announced, one there
    unparsableRoomData: { data: Uint8Array.from([0x0a, 0x05, 0x61]), offset: 2 },
  },
  flatbuffers: {
    unparsable: [
      { what: 'shorter than its root offset', frame: Uint8Array.from([0xff, 0xff]), offset: 0 },
      { what: 'text', frame: 'hello', offset: 0, binary: false },
    ],
    badTimestamp(channel, id) {
      const { frame, offset } = flatWithBadSlot(
        { type: 'publish', channel, id, timestamp: 7n, data: te.encode('{"n":1}') },
        3,
      );
      return { frame, path: 'timestamp', offset };
    },
    badClientId(room) {
      const { frame, offset } = flatWithBadSlot(
        { type: 'join_room', data: roomJson(room), clientId: 'x' },
        4,
      );
      return { frame, path: 'client_id', offset };
    },
    badRoomData: te.encode('{"room_id":5}'),
    unparsableRoomData: { data: te.encode('{"room_id":'), offset: 11 },
  },
};

const codecNames = Object.keys(cases) as CodecName[];

describe.each(codecNames)('%s: a frame the hub cannot take, on a real worker', (codecName) => {
  const spec = cases[codecName];

  it('a frame that does not parse: HYP_E_WS_DECODE with the byte where the codec gave up', async () => {
    const c = await connect(codecName);
    for (const u of spec.unparsable) sendRaw(c, u.frame, u.binary);
    const got = await refusals(c, spec.unparsable.length);
    expect(got.map((m) => json(m))).toEqual(
      spec.unparsable.map((u) => ({
        code: 'HYP_E_WS_DECODE',
        message: expect.stringContaining(`at byte ${u.offset}`),
        offset: u.offset,
      })),
    );
    // no publish id could be read; a channel only where it was read whole before the codec gave up
    expect(got.map((m) => [m.channel, m.id])).toEqual(
      spec.unparsable.map((u) => [u.channel ?? '', undefined]),
    );
    expect(c.closed).toBeUndefined();
  });

  it('a publish with a field of the wrong type: the key path, the byte, and the publish id and channel echoed', async () => {
    const c = await connect(codecName);
    const bad = spec.badTimestamp(`news-${codecName}`, `p-${codecName}`);
    sendRaw(c, bad.frame);
    const [m] = await refusals(c, 1);
    expect(m!.id).toBe(`p-${codecName}`);
    expect(m!.channel).toBe(`news-${codecName}`);
    expect(json(m!)).toEqual({
      code: 'HYP_E_WS_DECODE',
      message: expect.stringContaining(`at byte ${bad.offset}`),
      offset: bad.offset,
      path: bad.path,
      id: `p-${codecName}`,
    });
  });

  it('a room request with a field of the wrong type: the key path, the request and its room', async () => {
    const c = await connect(codecName);
    const bad = spec.badClientId(`lobby-${codecName}`);
    sendRaw(c, bad.frame);
    const [m] = await refusals(c, 1);
    expect(json(m!)).toEqual({
      code: 'HYP_E_WS_DECODE',
      message: expect.stringContaining(`at byte ${bad.offset}`),
      offset: bad.offset,
      path: bad.path,
      request: 'join_room',
      room_id: `lobby-${codecName}`,
    });
  });

  it('invalid control data: HYP_E_WS_CONTROL names the key path in the data (and the byte where it stops parsing)', async () => {
    const c = await connect(codecName);
    c.send({ type: 'join_room', data: spec.badRoomData });
    c.send({ type: 'subscribe', data: c.codec.encodeChannelRequest({ channel: '', offset: '' }) });
    const expected: unknown[] = [
      {
        code: 'HYP_E_WS_CONTROL',
        message: expect.any(String),
        path: 'data.room_id',
        request: 'join_room',
        ...(codecName === 'protobuf' ? { offset: 0 } : {}),
      },
      { code: 'HYP_E_WS_CONTROL', message: expect.any(String), path: 'data.channel' },
    ];
    if (spec.unparsableRoomData) {
      c.send({ type: 'leave_room', data: spec.unparsableRoomData.data });
      expected.push({
        code: 'HYP_E_WS_CONTROL',
        message: expect.stringContaining(`byte ${spec.unparsableRoomData.offset}`),
        offset: spec.unparsableRoomData.offset,
        path: 'data',
        request: 'leave_room',
      });
    }
    const got = await refusals(c, expected.length);
    expect(got.map((m) => json(m))).toEqual(expected);
  });

  if (spec.truncatedAfterId) {
    it('a publish cut off after its id: the byte where it ends, and the id and channel read before it', async () => {
      const c = await connect(codecName);
      const cut = spec.truncatedAfterId!(`news-${codecName}`, `p-cut-${codecName}`);
      sendRaw(c, cut.frame);
      const [m] = await refusals(c, 1);
      expect([m!.channel, m!.id]).toEqual([`news-${codecName}`, `p-cut-${codecName}`]);
      expect(json(m!)).toEqual({
        code: 'HYP_E_WS_DECODE',
        message: expect.stringContaining(`at byte ${cut.offset}`),
        offset: cut.offset,
        id: `p-cut-${codecName}`,
      });
    });
  }

  it('refusals between accepted publishes lose none of them, in order; the fifth decode failure closes with 1008', async () => {
    const channel = `order-${codecName}`;
    const sub = await connect(codecName);
    sub.subscribe(channel);
    await sub.until((x) => x.of('subscribed').length >= 1);
    const c = await connect(codecName);
    const publish = (n: number) =>
      c.send({ type: 'publish', channel, id: `g${n}`, data: te.encode(JSON.stringify({ n })) });
    // four decode failures (max_failures is 5) and control errors, which do not count, between five publishes
    for (let n = 1; n <= 4; n++) {
      publish(n);
      sendRaw(c, spec.badTimestamp(channel, `b${n}`).frame);
      c.send({ type: 'join_room', data: spec.badRoomData });
    }
    publish(5);
    await c.until((x) => x.of('published').length >= 5 && x.of('error').length >= 8);
    expect(c.closed).toBeUndefined();
    expect(c.of('published').map((m) => m.id)).toEqual(['g1', 'g2', 'g3', 'g4', 'g5']);
    // each refusal in the order its frame came, a decode failure naming its publish id
    const code = (m: Envelope) => (json(m) as { code: string }).code;
    expect(c.of('error').map((m) => `${code(m)} ${m.id ?? ''}`)).toEqual([
      'HYP_E_WS_DECODE b1',
      'HYP_E_WS_CONTROL ',
      'HYP_E_WS_DECODE b2',
      'HYP_E_WS_CONTROL ',
      'HYP_E_WS_DECODE b3',
      'HYP_E_WS_CONTROL ',
      'HYP_E_WS_DECODE b4',
      'HYP_E_WS_CONTROL ',
    ]);
    // the fifth: refused, then the connection is closed; the publish before it is delivered
    publish(6);
    sendRaw(c, spec.badTimestamp(channel, 'b5').frame);
    await c.until((x) => x.closed !== undefined);
    expect(c.closed).toEqual({ code: 1008, reason: 'too many invalid messages' });
    expect(c.of('error').at(-1)!.id).toBe('b5');
    const delivered = () => sub.of('message').filter((m) => m.channel === channel);
    await sub.until(() => delivered().length >= 6);
    expect(delivered().map((m) => [m.id, json(m)])).toEqual([1, 2, 3, 4, 5, 6].map((n) => [`g${n}`, { n }]));
  });
});

describe('the worker through all of it', () => {
  it('a text frame that is not UTF-8 is closed by ws with 1007 (before the hub sees it); the worker serves on', async () => {
    const c = await connect('protobuf');
    // `ws` sends a string as UTF-8: the frame (FIN, text, masked, 2 bytes 0xff 0xfe) goes on its socket as is
    const socket = (c.ws as unknown as { _socket: Socket })._socket;
    const mask = [1, 2, 3, 4];
    socket.write(Buffer.from([0x81, 0x82, ...mask, 0xff ^ mask[0]!, 0xfe ^ mask[1]!]));
    await c.until((x) => x.closed !== undefined);
    expect(c.closed!.code).toBe(1007);
    const after = await connect('json');
    expect(after.received[0]!.type).toBe('message');
  });

  it('is still the same process, logged nothing at error or fatal level and did not exit', async () => {
    const c = await connect('json');
    const pid = (json(c.received[0]!) as { pid: number }).pid;
    expect(pid).toBe(worker.proc.pid);
    expect(worker.exited()).toBeUndefined();
    expect(
      worker.logs.filter((l) => l.level === 'error' || l.level === 'fatal' || l.level === 'stderr'),
    ).toEqual([]);
  });
});

describe('what is counted', () => {
  it('decode failures count in hyp_ws_security_failures_total{reason="decode"}; invalid control data does not', async () => {
    const served = await serveHub();
    try {
      const c = await TestClient.connect(served.url, 'msgpack');
      clients.push(c);
      sendRaw(c, Uint8Array.from([0xc1]));
      sendRaw(c, cases.msgpack.badTimestamp('news', 'p1').frame);
      c.send({ type: 'join_room', data: cases.msgpack.badRoomData });
      await refusals(c, 3);
      const text = await served.hub.metrics.registry.metrics();
      expect(text).toMatch(/hyp_ws_security_failures_total\{reason="decode"\} 2\n/);
    } finally {
      await served.close();
    }
  });
});
