/**
 * `send(type, data, channel?)` is for application messages. A type the hub
 * takes as its own request, which the client makes with a method and keeps
 * track of (`subscribe`, `unsubscribe`, `join_room`, `leave_room`,
 * `presence`), throws HYP_E_WS_TYPE_RESERVED naming that method, and a type
 * holding a lone surrogate throws HYP_E_WS_NAME_INVALID: nothing is sent or
 * queued. Before, a `join_room` sent this way joined the room on the hub
 * (json, msgpack, flatbuffers) with the client knowing nothing of it — no
 * member list, no rejoin after a reconnect — and protobuf hubs refused its
 * JSON data; a lone surrogate type was refused as undecodable by json,
 * msgpack and protobuf hubs (a failure towards `maxFailures`) and reached a
 * FlatBuffers hub's `onMessage` as U+FFFD. `publish` and `broadcast` through
 * `send` still work, and '' is a type every hub hands on. Real hubs
 * in-process (./delivery.ts), loopback only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HypError } from '../../../apps/client/index.js';
import type { CodecName } from '../../../apps/server/ws/codecs/index.js';
import type { Envelope } from '../../../apps/server/ws/envelope.js';
import { eventually, thrownHypError } from '../server/ws/helpers.js';
import { client, closeAll, hub, recordingSocket } from './delivery.js';

afterEach(closeAll);

const codecs: CodecName[] = ['json', 'msgpack', 'protobuf', 'flatbuffers'];

/** The hub's requests `send` refuses, each with the method to use instead and the data it would carry. */
const reserved = [
  { type: 'subscribe', method: 'subscribe', data: { channel: 'news' } },
  { type: 'unsubscribe', method: 'unsubscribe', data: { channel: 'news' } },
  { type: 'join_room', method: 'joinRoom', data: { room_id: 'lobby' } },
  { type: 'leave_room', method: 'leaveRoom', data: { room_id: 'lobby' } },
  { type: 'presence', method: 'presence', data: { room_id: 'lobby' } },
];

/** A hub recording the type, channel and data text of every message that reaches `onMessage`. */
async function recordingHub() {
  const served = await hub();
  const seen: Array<[string, string, string]> = [];
  served.hub.onMessage((_c, m) => seen.push([m.type, m.channel, new TextDecoder().decode(m.data)]));
  return { served, seen };
}

function expectReserved(send: (type: string, data: unknown, channel?: string) => unknown): void {
  for (const { type, method, data } of reserved) {
    for (const channel of ['', 'news']) {
      const err = thrownHypError(() => send(type, data, channel));
      expect(err).toBeInstanceOf(HypError);
      expect(err.code, type).toBe('HYP_E_WS_TYPE_RESERVED');
      expect(err.params).toEqual({ call: 'send', type, method });
      expect(err.message).toBe(`send: the type "${type}" is the hub's; use ${method}()`);
    }
  }
}

describe('send() refuses the types the hub takes as its own requests', () => {
  for (const codec of codecs) {
    it(`${codec}: subscribe, unsubscribe, join_room, leave_room and presence throw HYP_E_WS_TYPE_RESERVED; nothing reaches the hub`, async () => {
      const { served, seen } = await recordingHub();
      const sent: Envelope[] = [];
      const c = client(served.url, { codec, clientId: 'alice', WebSocket: recordingSocket(codec, sent) });
      const send = (type: string, data: unknown, channel = '') => c.ws.send(type, data, channel);

      // while disconnected: nothing is queued either
      expectReserved(send);
      await c.ws.connect();
      expectReserved(send);
      c.ws.send('end', 'end');
      await eventually(() => seen.length === 1);

      expect(seen).toEqual([['end', '', '"end"']]);
      expect(sent.map((m) => m.type)).toEqual(['end']);
      expect(served.hub.members('lobby')).toEqual([]);
      expect(served.hub.subscribers('news')).toBe(0);
      expect(c.errors).toEqual([]);

      // the methods do what the types asked for, and the client keeps track of it
      c.ws.joinRoom('lobby');
      c.subscribe('news');
      await eventually(() => c.ws.members('lobby').includes('alice') && c.ws.offset('news') !== undefined);
      expect(served.hub.members('lobby')).toEqual(['alice']);
      expect(served.hub.subscribers('news')).toBe(1);
    });
  }
});

describe('send() types the hub cannot take are refused at the call', () => {
  const lone = [
    { type: '\ud800', detail: 'holds a lone surrogate (\\ud800 at index 0, which has no UTF-8 form)' },
    { type: 'a\udfffb', detail: 'holds a lone surrogate (\\udfff at index 1, which has no UTF-8 form)' },
  ];

  for (const codec of codecs) {
    it(`${codec}: a type holding a lone surrogate throws HYP_E_WS_NAME_INVALID; '', publish and broadcast still go`, async () => {
      const { served, seen } = await recordingHub();
      const sent: Envelope[] = [];
      const c = client(served.url, { codec, clientId: 'bob', WebSocket: recordingSocket(codec, sent) });
      const news = c.subscribe('news');
      const all: unknown[] = [];
      c.ws.on('message', (m) => {
        if (m.channel === '') all.push(m.json());
      });
      await c.ws.connect();
      await eventually(() => c.ws.offset('news') !== undefined);
      // the hub's onMessage sees the client's subscribe too
      seen.length = 0;

      for (const { type, detail } of lone) {
        for (const channel of ['', 'news']) {
          const err = thrownHypError(() => c.ws.send(type, 'x', channel));
          expect(err.code).toBe('HYP_E_WS_NAME_INVALID');
          expect(err.params).toEqual({ call: 'send', kind: 'type', name: JSON.stringify(type), detail });
          expect(err.message).toBe(`send: the type ${JSON.stringify(type)} ${detail}`);
        }
      }
      expect(() => c.ws.send(7 as unknown as string, 'x')).toThrow(TypeError);

      // '' is a type every codec's hub hands on as ''; U+FFFD and a surrogate pair are types like any other
      c.ws.send('', 'empty');
      c.ws.send('\ufffd', 'replacement');
      c.ws.send('\u{1f600}', 'pair', 'news');
      // publish and broadcast through send are what publish() and broadcast() send
      c.ws.send('publish', 'published', 'news');
      c.ws.send('broadcast', 'broadcast');
      await eventually(() => seen.length === 5 && c.got('news').length === 1 && all.length === 1);
      expect(seen).toEqual([
        ['', '', '"empty"'],
        ['\ufffd', '', '"replacement"'],
        ['\u{1f600}', 'news', '"pair"'],
        ['publish', 'news', '"published"'],
        ['broadcast', '', '"broadcast"'],
      ]);
      expect(c.got('news')).toEqual(['published']);
      expect(all).toEqual(['broadcast']);
      expect(sent.some((m) => /\p{Surrogate}/u.test(m.type))).toBe(false);
      expect(c.errors).toEqual([]);
      news();
    });
  }
});
