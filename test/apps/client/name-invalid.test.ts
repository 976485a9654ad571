/**
 * Channel and room names the hub cannot take are refused at the call:
 * `subscribe`, `unsubscribe`, `joinRoom`, `leaveRoom`, `presence`,
 * `publish`, `publishAck` and `send` throw HYP_E_WS_NAME_INVALID
 * synchronously, with the hub's params (`call`, `kind`, `name`, `detail`),
 * for '' and for a name holding a lone surrogate, and nothing goes on the
 * wire. Before, every codec's hub refused them (a json room request without
 * naming the room, so the member lists could not match the refusal, a
 * publishAck without its id, so it waited for its timeout) and a FlatBuffers
 * publish went out with U+FFFD in the surrogate's place, to another channel.
 * Good names around them still work. A `subscribe` offset holding a lone
 * surrogate is refused the same way (the hub refused the request without
 * naming the channel, which stayed dead). Real hubs in-process
 * (./delivery.ts), loopback only.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { HypError, type HypMessage } from '../../../apps/client/index.js';
import type { CodecName } from '../../../apps/server/ws/codecs/index.js';
import type { Envelope } from '../../../apps/server/ws/envelope.js';
import { eventually, thrownHypError } from '../server/ws/helpers.js';
import { client, closeAll, hub, recordingSocket } from './delivery.js';

afterEach(closeAll);

const codecs: CodecName[] = ['json', 'msgpack', 'protobuf', 'flatbuffers'];

/** Names every hub refuses, with the `detail` each is refused with. */
const badNames: Array<{ name: string; detail: RegExp }> = [
  { name: '', detail: /^is empty$/ },
  { name: '\ud800', detail: /^holds a lone surrogate \(\\ud800 at index 0, which has no UTF-8 form\)$/ },
  { name: 'a\udfffb', detail: /^holds a lone surrogate \(\\udfff at index 1, which has no UTF-8 form\)$/ },
];

/** Every call that takes a name, made with `name`; each must throw. */
function callsWith(ws: ReturnType<typeof client>['ws'], name: string) {
  return [
    { call: 'subscribe', kind: 'channel', make: () => ws.subscribe(name, () => {}) },
    { call: 'unsubscribe', kind: 'channel', make: () => ws.unsubscribe(name) },
    { call: 'joinRoom', kind: 'room', make: () => ws.joinRoom(name) },
    { call: 'leaveRoom', kind: 'room', make: () => ws.leaveRoom(name) },
    { call: 'presence', kind: 'room', make: () => ws.presence(name) },
    { call: 'publish', kind: 'channel', make: () => ws.publish(name, 'x') },
    { call: 'publishAck', kind: 'channel', make: () => ws.publishAck(name, 'x', { timeoutMs: 1000 }) },
    // '' is no channel for `send`, but a publish needs one
    { call: 'send', kind: 'channel', make: () => ws.send(name === '' ? 'publish' : 'chat', 'x', name) },
  ];
}

function expectRefused(ws: ReturnType<typeof client>['ws']): number {
  let refused = 0;
  for (const { name, detail } of badNames) {
    for (const { call, kind, make } of callsWith(ws, name)) {
      const err = thrownHypError(make);
      expect(err.code, `${call}(${JSON.stringify(name)})`).toBe('HYP_E_WS_NAME_INVALID');
      expect(err.params).toMatchObject({ call, kind, name: JSON.stringify(name) });
      expect(String(err.params.detail)).toMatch(detail);
      expect(err.message).toBe(`${call}: the ${kind} ${JSON.stringify(name)} ${err.params.detail}`);
      refused++;
    }
  }
  return refused;
}

describe('names the hub cannot take are refused at the call', () => {
  for (const codec of codecs) {
    it(`${codec}: every call throws HYP_E_WS_NAME_INVALID, nothing is sent, good names still work`, async () => {
      const served = await hub();
      const sent: Envelope[] = [];
      const c = client(served.url, { codec, clientId: 'alice', WebSocket: recordingSocket(codec, sent) });
      const ws = c.ws;

      // while disconnected: nothing is queued either
      expect(expectRefused(ws)).toBe(24);
      const news: HypMessage[] = [];
      ws.subscribe('news', (m) => news.push(m));
      ws.joinRoom('lobby');
      await ws.connect();
      await eventually(() => ws.offset('news') !== undefined && ws.members('lobby').includes('alice'));

      // connected
      const before = sent.length;
      expect(expectRefused(ws)).toBe(24);
      expect(sent.length).toBe(before);

      // good names around them: a publish reaches the subscription, a member list is answered
      const answers: unknown[] = [];
      ws.on('presence', (m) => {
        const body = m.json<{ members?: string[] }>();
        if (body.members) answers.push(body.members);
      });
      ws.presence('lobby');
      ws.publish('news', 'after');
      await expect(ws.publishAck('news', 'acked')).resolves.toMatchObject({ offset: expect.any(String) });
      await eventually(() => news.length === 2 && answers.length === 1);
      expect(news.map((m) => m.json())).toEqual(['after', 'acked']);
      expect(answers).toEqual([['alice']]);
      expect(ws.members('lobby')).toEqual(['alice']);

      // on the wire: only good names, and the hub refused nothing
      const names = sent.map((m) => (m.channel === '' ? new TextDecoder().decode(m.data) : m.channel));
      expect(names).toContain('news');
      expect(names.some((n) => n === '' || /\p{Surrogate}|\ufffd/u.test(n))).toBe(false);
      expect(c.errors).toEqual([]);
    });
  }

  for (const codec of codecs) {
    it(`${codec}: a subscribe offset holding a lone surrogate throws HYP_E_WS_NAME_INVALID; the channel is not taken as subscribed`, async () => {
      // before, every codec's hub refused the request without naming the channel (its data does not
      // decode) while the client took the channel as subscribed: nothing arrived, after every reconnect too
      const served = await hub({ historySize: 10 });
      const sent: Envelope[] = [];
      const c = client(served.url, { codec, clientId: 'alice', WebSocket: recordingSocket(codec, sent) });
      await c.ws.connect();
      for (const offset of ['\ud800', '1-\udfff']) {
        const err = thrownHypError(() => c.ws.subscribe('news', () => {}, { offset }));
        expect(err.code).toBe('HYP_E_WS_NAME_INVALID');
        expect(err.params).toMatchObject({ call: 'subscribe', kind: 'offset', name: JSON.stringify(offset) });
        expect(err.message).toMatch(/^subscribe: the offset ".*" holds a lone surrogate \(/);
      }
      expect(c.ws.offset('news')).toBeUndefined();
      expect(sent).toEqual([]);

      // the channel subscribed afterwards gets what is published on it
      c.subscribe('news');
      await eventually(() => served.hub.subscribers('news') === 1);
      served.hub.publish('news', 'n1');
      await eventually(() => c.got('news').length === 1);
      expect(c.got('news')).toEqual(['n1']);
      expect(c.errors).toEqual([]);
    });
  }

  it("the message is the hub's own for such a name from the app (hub.publish)", async () => {
    const served = await hub();
    const c = client(served.url);
    const name = 'a\udfffb';
    const fromHub = thrownHypError(() => served.hub.publish(name, 'x'));
    const fromClient = thrownHypError(() => c.ws.publish(name, 'x'));
    expect(fromClient).toBeInstanceOf(HypError);
    expect(fromClient.status).toBe(fromHub.status);
    expect(fromClient.message.replace(/^publish/, 'hub.publish')).toBe(fromHub.message);
    expect(fromClient.params).toEqual({ ...fromHub.params, call: 'publish' });
  });

  it('names the hub takes are not refused: U+FFFD, a surrogate pair, NUL, a space', async () => {
    const served = await hub();
    const c = client(served.url, { clientId: 'bob' });
    const names = ['\ufffd', '\u{1f600}', 'a\u0000b', ' '];
    for (const name of names) {
      c.ws.subscribe(name);
      c.ws.joinRoom(name);
    }
    await c.ws.connect();
    await eventually(() =>
      names.every((n) => c.ws.offset(n) !== undefined && c.ws.members(n).includes('bob')),
    );
    expect(c.errors).toEqual([]);
  });
});
