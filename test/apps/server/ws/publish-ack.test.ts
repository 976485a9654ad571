/**
 * Acknowledged publishes (hyp extension, docs/websocket.md "Control
 * messages"): a client `publish` or `broadcast` carrying an `id` is answered
 * with `published` (channel, id, offset) once the hub has accepted it, a
 * refusal's `error` frame carries the same id, and the deliveries carry it so
 * subscribers can dedupe a publish sent again after a reconnect. Without an
 * id nothing on the wire changes (HypGo peers).
 */
import { describe, expect, it } from 'vitest';
import { LocalBus, LocalBusGroup } from '../../../../apps/server/ws/bus.js';
import { codecs } from '../../../../apps/server/ws/codecs/index.js';
import { type Envelope, envelope } from '../../../../apps/server/ws/envelope.js';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';
import type { SharedHistory } from '../../../../apps/server/ws/redis-history.js';
import { eventually, HubTestBed, json, podHistoryChannels, serveHub, TestClient } from './helpers.js';

const bed = new HubTestBed();
const data = (value: unknown) => Buffer.from(JSON.stringify(value));

/** Subscribes `c` to `channel` and waits for the hub's ack (so a publish after it is delivered). */
async function subscribed(c: TestClient, channel: string): Promise<void> {
  const before = c.of('subscribed').length;
  c.subscribe(channel);
  await c.nextOf('subscribed', before + 1);
}

describe('a publish with an id', () => {
  for (const codec of codecs) {
    it(`${codec.name}: is acknowledged with its channel, id and the delivery's offset; the delivery carries the id`, async () => {
      await bed.serve();
      const c = await bed.connect(codec.name, { headers: { 'X-Client-ID': 'alice' } });
      await subscribed(c, 'news');
      c.send({ type: 'publish', channel: 'news', data: data({ n: 1 }), id: 'p-1' });
      const [ack] = await c.nextOf('published');
      const [delivery] = await c.nextOf('message');
      expect(ack).toMatchObject({ type: 'published', channel: 'news', id: 'p-1', clientId: '' });
      expect(ack!.offset).toMatch(/:\d+$/);
      expect(ack!.data.length).toBe(0);
      expect(delivery).toMatchObject({ channel: 'news', clientId: 'alice', id: 'p-1', offset: ack!.offset });
      expect(json(delivery!)).toEqual({ n: 1 });
    });
  }

  it('under the pod-wide history: acknowledged with the offset the history gave, on the publishing worker only', async () => {
    const { channels } = podHistoryChannels(2);
    await bed.serve({ sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[0] }) });
    const other = await serveHub({ sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[1] }) });
    try {
      const elsewhere = await TestClient.connect(other.url, 'msgpack', { headers: { 'X-Client-ID': 'bob' } });
      bed.clients.push(elsewhere);
      await subscribed(elsewhere, 'news');
      const c = await bed.connect('protobuf', { headers: { 'X-Client-ID': 'alice' } });
      await subscribed(c, 'news');
      c.send({ type: 'publish', channel: 'news', data: data('hi'), id: 'p-7' });
      const [ack] = await c.nextOf('published');
      const [there] = await elsewhere.nextOf('message');
      const [here] = await c.nextOf('message');
      expect(ack).toMatchObject({ channel: 'news', id: 'p-7' });
      expect(ack!.offset).toMatch(/^\d+-\d+$/);
      for (const m of [here!, there!]) {
        expect(m).toMatchObject({ clientId: 'alice', id: 'p-7', offset: ack!.offset });
      }
      expect(elsewhere.of('published')).toEqual([]);
      // a resume from before it replays it with its id and the publisher's client id
      const late = await TestClient.connect(other.url, 'json');
      bed.clients.push(late);
      late.subscribe('news', '');
      await late.nextOf('subscribed');
      const resumed = await TestClient.connect(other.url, 'flatbuffers');
      bed.clients.push(resumed);
      const head = late.of('subscribed')[0]!.offset;
      expect(head).toBe(ack!.offset);
      resumed.subscribe(
        'news',
        ack!.offset.replace(/-(\d+)$/, (_, n: string) => `-${Number(n) - 1}`),
      );
      const [replayed] = await resumed.nextOf('message');
      expect(replayed).toMatchObject({ clientId: 'alice', id: 'p-7', offset: ack!.offset });
    } finally {
      await other.close();
    }
  });

  it('crosses the bus to other nodes with its id and the publisher as client_id', async () => {
    const group = new LocalBusGroup();
    await bed.serve({ bus: new LocalBus(group) });
    const other = await serveHub({ bus: new LocalBus(group) });
    try {
      const elsewhere = await TestClient.connect(other.url, 'json');
      bed.clients.push(elsewhere);
      await subscribed(elsewhere, 'news');
      const c = await bed.connect('json', { headers: { 'X-Client-ID': 'alice' } });
      c.send({ type: 'publish', channel: 'news', data: data(1), id: 'x.1' });
      c.send({ type: 'broadcast', data: data(2), id: 'x.2' });
      await c.nextOf('published', 2);
      const got = await elsewhere.nextOf('message', 2);
      expect(got.map((m) => [m.clientId, m.id, json(m)])).toEqual([
        ['alice', 'x.1', 1],
        ['alice', 'x.2', 2],
      ]);
      // the broadcast's acknowledgement has no offset: a broadcast has no history
      expect(c.of('published').map((m) => [m.id, m.offset !== ''])).toEqual([
        ['x.1', true],
        ['x.2', false],
      ]);
    } finally {
      await other.close();
    }
  });

  it('refused by canPublish: the error frame carries the id (envelope and data) and the channel', async () => {
    await bed.serve({ canPublish: (_c, channel) => channel !== 'staff' });
    const c = await bed.connect('msgpack');
    c.send({ type: 'publish', channel: 'staff', data: data('x'), id: 'r-1' });
    const [err] = await c.nextOf('error');
    expect(err).toMatchObject({ channel: 'staff', id: 'r-1' });
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_CONTROL', id: 'r-1' });
    expect(c.of('published')).toEqual([]);
  });

  it('refused for a channel name too long: the error carries the id', async () => {
    await bed.serve({ maxNameLength: 8 });
    const c = await bed.connect('flatbuffers');
    c.send({ type: 'publish', channel: 'x'.repeat(9), data: data('x'), id: 'r-2' });
    const [err] = await c.nextOf('error');
    expect(err!.id).toBe('r-2');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_NAME_TOO_LONG', id: 'r-2' });
  });

  for (const [what, id] of [
    ['longer than 64 characters', 'a'.repeat(65)],
    ['holding a space', 'a b'],
    ['holding a control character', 'a\u0007'],
    ['holding a NUL', 'a\u0000b'],
    ['not ASCII', 'é'],
  ] as const) {
    it(`an id ${what} is refused with HYP_E_WS_PUBLISH_ID, not echoed, nothing delivered`, async () => {
      await bed.serve();
      const c = await bed.connect('protobuf', { headers: { 'X-Client-ID': 'alice' } });
      await subscribed(c, 'news');
      c.send({ type: 'publish', channel: 'news', data: data('x'), id });
      const [err] = await c.nextOf('error');
      expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_PUBLISH_ID' });
      expect(err!.id).toBeUndefined();
      expect((json(err!) as { id?: string }).id).toBeUndefined();
      // the connection stays open and a valid publish after it goes through
      c.send({ type: 'publish', channel: 'news', data: data('ok'), id: 'ok' });
      await c.nextOf('published');
      expect(c.of('message').map((m) => json(m))).toEqual(['ok']);
    });
  }

  it('an id at the bound (64 printable characters) is taken', async () => {
    await bed.serve();
    const c = await bed.connect('json');
    const id = '!~'.repeat(32);
    c.send({ type: 'publish', channel: 'news', data: data('x'), id });
    const [ack] = await c.nextOf('published');
    expect(ack!.id).toBe(id);
  });
});

/** A shared history that takes every publish and never delivers one (Redis refusing, say). */
function swallowingHistory(): SharedHistory & { published: number } {
  return {
    published: 0,
    publish() {
      this.published++;
    },
    onDelivery: () => () => {},
    recover: async () => ({ head: '', recovery: { ok: true, messages: [] } }),
    ready: async () => {},
    close: async () => {},
  };
}

describe('acknowledgements waiting for a shared history', () => {
  it('past 1024 waiting on one connection, a publish is refused with HYP_E_WS_ACK_PENDING; a new connection starts afresh', async () => {
    const shared = swallowingHistory();
    await bed.serve({ sharedHistory: shared });
    const c = await bed.connect('msgpack', { headers: { 'X-Client-ID': 'alice' } });
    for (let i = 1; i <= 1025; i++) c.send({ type: 'publish', channel: 'news', data: data(i), id: `w-${i}` });
    const [err] = await c.nextOf('error');
    expect(err!.id).toBe('w-1025');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_ACK_PENDING', id: 'w-1025' });
    expect(shared.published).toBe(1024);
    expect(c.of('error')).toHaveLength(1);
    // the waits go with the connection: its successor (same client id) may publish again
    await c.close();
    const next = await bed.connect('msgpack', { headers: { 'X-Client-ID': 'alice' } });
    next.send({ type: 'publish', channel: 'news', data: data(0), id: 'w-1025' });
    next.send({ type: 'publish', channel: 'news', data: data(0) });
    await eventually(() => shared.published === 1026);
    expect(next.of('error')).toEqual([]);
  });
});

describe('a publish without an id', () => {
  for (const codec of codecs) {
    it(`${codec.name}: frames are byte for byte those without the extension; no acknowledgement`, async () => {
      await bed.serve();
      const c = await bed.connect(codec.name, { headers: { 'X-Client-ID': 'alice' } });
      await subscribed(c, 'news');
      const before = c.frames.length;
      c.send({ type: 'publish', channel: 'news', data: data({ a: 1 }) });
      // an acknowledged publish after it marks the end of what the first one caused
      c.send({ type: 'publish', channel: 'fence', data: data(0), id: 'fence' });
      await c.nextOf('published');
      const frames = c.frames.slice(before);
      const decoded = frames.map((f) => codec.unmarshal(f.bytes));
      expect(decoded.map((m) => m.type)).toEqual(['message', 'published']);
      const delivery = decoded[0]!;
      expect('id' in delivery).toBe(false);
      // the bytes are those of the envelope's six fields, as every codec wrote them before
      const expected: Envelope = envelope({
        type: 'message',
        channel: 'news',
        data: data({ a: 1 }),
        timestamp: delivery.timestamp,
        clientId: 'alice',
        offset: delivery.offset,
      });
      expect(Buffer.from(frames[0]!.bytes).equals(Buffer.from(codec.marshal(expected)))).toBe(true);
      if (codec.name === 'json') {
        expect(frames[0]!.bytes.toString()).toBe(
          `{"type":"message","channel":"news","data":{"a":1},"timestamp":${delivery.timestamp},"client_id":"alice","offset":"${delivery.offset}"}`,
        );
      }
    });
  }

  it('a refusal without an id is the error frame it was', async () => {
    await bed.serve({ canPublish: () => false });
    const c = await bed.connect('json');
    c.send({ type: 'publish', channel: 'news', data: data('x') });
    const [err] = await c.nextOf('error');
    expect('id' in err!).toBe(false);
    expect(Object.keys(json(err!) as object)).toEqual(['code', 'message']);
    expect(c.frames.at(-1)!.bytes.toString()).not.toContain('"id"');
  });
});
