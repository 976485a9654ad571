/**
 * `publishAck` (hyp/client): resolves with the offset once the hub accepted
 * the publish, rejects with the hub's refusal, a timeout or a close for good,
 * and sends a publish not yet acknowledged again (same id) after a reconnect:
 * at least once, subscribers dedupe by (client id, id).
 */
import { afterEach, describe, expect, it } from 'vitest';
import type { HypErrorFrame, HypMessage } from '../../../apps/client/index.js';
import type { CodecName } from '../../../apps/server/ws/codecs/index.js';
import { IpcHistory } from '../../../apps/server/ws/ipc-history.js';
import { eventually, podHistoryChannels } from '../server/ws/helpers.js';
import { client, closeAll, frontOf, hub } from './delivery.js';

afterEach(closeAll);

/** What a PublishAckError carries (hyp/client exports the class's shape as these fields). */
interface Rejection {
  name: string;
  code: string;
  channel: string;
  id: string;
  message: string;
}

async function rejection(p: Promise<unknown>): Promise<Rejection> {
  return p.then(
    () => {
      throw new Error('resolved, expected a rejection');
    },
    (err: unknown) => err as Rejection,
  );
}

/** A subscriber recording every delivery (with client id and publish id) on `channel`. */
async function watcher(url: string, channel: string) {
  const w = client(url, { clientId: 'watcher' });
  const seen: HypMessage[] = [];
  w.ws.subscribe(channel, (m) => seen.push(m));
  await w.ws.connect();
  await eventually(() => w.ws.offset(channel) !== undefined);
  return seen;
}

describe('publishAck', () => {
  for (const codec of ['json', 'protobuf', 'flatbuffers', 'msgpack'] as CodecName[]) {
    it(`${codec}: resolves with the delivery's offset`, async () => {
      const served = await hub();
      const seen = await watcher(served.url, 'news');
      const a = client(served.url, { codec, clientId: 'alice' });
      await a.ws.connect();
      const ack = await a.ws.publishAck('news', { n: 1 }, { id: 'first' });
      await eventually(() => seen.length === 1);
      expect(ack.offset).toBe(seen[0]!.offset);
      expect(seen[0]).toMatchObject({ clientId: 'alice', id: 'first' });
      expect(seen[0]!.json()).toEqual({ n: 1 });
      expect(a.errors).toEqual([]);
    });
  }

  it('generated ids differ from call to call and from client to client', async () => {
    const served = await hub();
    const seen = await watcher(served.url, 'news');
    const a = client(served.url, { clientId: 'alice' });
    const b = client(served.url, { clientId: 'alice2' });
    await Promise.all([a.ws.connect(), b.ws.connect()]);
    await Promise.all([a.ws.publishAck('news', 1), a.ws.publishAck('news', 2), b.ws.publishAck('news', 3)]);
    await eventually(() => seen.length === 3);
    const ids = seen.map((m) => m.id);
    expect(new Set(ids).size).toBe(3);
    for (const id of ids) expect(id).toMatch(/^[0-9a-f]{16}\.\d+$/);
  });

  it('under the pod-wide history: resolves with the offset the supervisor gave', async () => {
    const { channels } = podHistoryChannels(1);
    const served = await hub({ sharedHistory: new IpcHistory({ topic: '/ws', channel: channels[0] }) });
    const seen = await watcher(served.url, 'news');
    const a = client(served.url, { codec: 'msgpack', clientId: 'alice' });
    await a.ws.connect();
    const ack = await a.ws.publishAck('news', 'x');
    expect(ack.offset).toMatch(/^\d+-\d+$/);
    await eventually(() => seen.length === 1);
    expect(seen[0]!.offset).toBe(ack.offset);
  });

  it("a refusal rejects with the hub's error (code, channel, id), not an error event", async () => {
    const served = await hub({ canPublish: (_c, channel) => channel !== 'staff' });
    const a = client(served.url);
    await a.ws.connect();
    const err = await rejection(a.ws.publishAck('staff', 'x', { id: 'mine' }));
    expect(err).toMatchObject({
      name: 'PublishAckError',
      code: 'HYP_E_WS_CONTROL',
      channel: 'staff',
      id: 'mine',
    });
    expect(err.message).toContain('not allowed to publish on "staff"');
    // the connection is still usable and nothing else was reported
    await a.ws.publishAck('news', 'ok');
    expect(a.errors).toEqual([]);
  });

  it('a publish whose connection dies before the hub reads it is sent again at the reconnect and delivered', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const seen = await watcher(served.url, 'news');
    const a = client(f.url, { codec: 'protobuf', clientId: 'alice' });
    await a.ws.connect();
    const acked = a.ws.publishAck('news', 'survives', { id: 'lost-1' });
    // the frame is in the front's socket, not yet read: cutting now loses it on the way to the hub
    f.cut();
    const ack = await acked;
    await eventually(() => seen.length >= 1);
    expect(a.opens).toBe(2);
    expect(seen.map((m) => [m.clientId, m.id, m.json()])).toEqual([['alice', 'lost-1', 'survives']]);
    expect(ack.offset).toBe(seen[0]!.offset);
  });

  it('a publish whose acknowledgement is lost is sent again: delivered at least once, same (client id, id)', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const seen = await watcher(served.url, 'news');
    const a = client(f.url, { codec: 'msgpack', clientId: 'alice' });
    await a.ws.connect();
    // the first acknowledgement never reaches the client: the connection is cut in its place
    let cuts = 0;
    f.tap = (frame) => {
      if (cuts === 0 && frame.payload.includes(Buffer.from('published'))) {
        cuts++;
        f.cut();
        return 'drop';
      }
      return 'pass';
    };
    const ack = await a.ws.publishAck('news', { n: 1 }, { id: 'twice' });
    await eventually(() => seen.length >= 2);
    expect(cuts).toBe(1);
    expect(seen.map((m) => [m.clientId, m.id])).toEqual([
      ['alice', 'twice'],
      ['alice', 'twice'],
    ]);
    // the acknowledgement is the second copy's
    expect(ack.offset).toBe(seen[1]!.offset);
    // a subscriber deduping by (client id, id) keeps one
    expect(new Set(seen.map((m) => `${m.clientId}\u0000${m.id}`)).size).toBe(1);
  });

  it('publishes made while disconnected go out after the reconnect, after the unacknowledged ones, in order', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const seen = await watcher(served.url, 'news');
    const a = client(f.url, { clientId: 'alice' });
    await a.ws.connect();
    const first = a.ws.publishAck('news', 1, { id: 'o-1' });
    const later: Array<Promise<unknown>> = [];
    // published the moment the client learns of the cut: queued until the reconnect
    a.ws.on('close', () => {
      if (later.length > 0) return;
      later.push(a.ws.publishAck('news', 2, { id: 'o-2' }));
      a.ws.publish('news', 3);
      later.push(a.ws.publishAck('news', 4, { id: 'o-4' }));
    });
    f.cut();
    await eventually(() => later.length === 2);
    await Promise.all([first, ...later]);
    await eventually(() => seen.some((m) => m.json() === 4));
    expect(seen.map((m) => m.json<number>())).toEqual([1, 2, 3, 4]);
    expect(seen.map((m) => m.id)).toEqual(['o-1', 'o-2', undefined, 'o-4']);
  });

  it('times out with HYP_E_WS_ACK_TIMEOUT when no acknowledgement comes, and is not sent later', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const seen = await watcher(served.url, 'news');
    f.tap = (frame) => (frame.payload.includes(Buffer.from('published')) ? 'drop' : 'pass');
    const a = client(f.url, { clientId: 'alice' });
    await a.ws.connect();
    const err = await rejection(a.ws.publishAck('news', 'slow', { id: 't-1', timeoutMs: 50 }));
    expect(err).toMatchObject({ code: 'HYP_E_WS_ACK_TIMEOUT', channel: 'news', id: 't-1' });
    expect(err.message).toContain('may still have accepted it');
    // it reached the hub (only the acknowledgement was lost); a reconnect does not send it again
    await eventually(() => seen.length === 1);
    f.tap = undefined;
    f.cut();
    await eventually(() => a.opens === 2);
    await a.ws.publishAck('news', 'after');
    await eventually(() => seen.length === 2);
    expect(seen.map((m) => m.text())).toEqual(['"slow"', '"after"']);
  });

  it('close() rejects what waits with HYP_E_WS_ACK_CLOSED; a publishAck after close() rejects at once', async () => {
    const served = await hub();
    const f = await frontOf(served);
    f.tap = (frame) => (frame.payload.includes(Buffer.from('published')) ? 'drop' : 'pass');
    const a = client(f.url);
    await a.ws.connect();
    const waiting = rejection(a.ws.publishAck('news', 'x', { id: 'c-1' }));
    a.ws.close();
    expect(await waiting).toMatchObject({ code: 'HYP_E_WS_ACK_CLOSED', id: 'c-1' });
    expect(await rejection(a.ws.publishAck('news', 'y'))).toMatchObject({ code: 'HYP_E_WS_ACK_CLOSED' });
  });

  it('at most maxQueued wait for their acknowledgement: the next one is refused with HYP_E_WS_QUEUE_FULL', async () => {
    const served = await hub();
    const a = client(served.url, { maxQueued: 2 });
    // not connected: nothing can be acknowledged yet
    const held = [a.ws.publishAck('news', 1), a.ws.publishAck('news', 2)];
    const refused = await rejection(a.ws.publishAck('news', 3, { id: 'q-3' }));
    expect(refused).toMatchObject({ code: 'HYP_E_WS_QUEUE_FULL', channel: 'news', id: 'q-3' });
    await a.ws.connect();
    await Promise.all(held);
    await a.ws.publishAck('news', 4);
    expect(a.errors).toEqual([]);
  });

  it('bad options throw at the call: an id that is not printable ASCII, a timeout that is not a positive integer', async () => {
    const served = await hub();
    const a = client(served.url);
    expect(() => a.ws.publishAck('news', 1, { id: 'a b' })).toThrow(RangeError);
    expect(() => a.ws.publishAck('news', 1, { id: 'x'.repeat(65) })).toThrow(RangeError);
    expect(() => a.ws.publishAck('news', 1, { timeoutMs: 0 })).toThrow(RangeError);
    expect(() => a.ws.publishAck('news', 1, { timeoutMs: Number.NaN })).toThrow(RangeError);
    const pending = a.ws.publishAck('news', 1, { id: 'dup' });
    expect(() => a.ws.publishAck('news', 2, { id: 'dup' })).toThrow(RangeError);
    await a.ws.connect();
    await pending;
  });
});

describe('HypErrorFrame', () => {
  it('HYP_E_WS_RECOVERY_FAILED always names its channel (the type says so: no `!` needed)', async () => {
    const served = await hub();
    const a = client(served.url);
    const channels: string[] = [];
    a.ws.on('error', (e: HypErrorFrame) => {
      if (e.code === 'HYP_E_WS_RECOVERY_FAILED') {
        const channel: string = e.channel;
        channels.push(channel);
      }
    });
    a.ws.subscribe('news', () => {}, { offset: 'elsewhere:7' });
    await a.ws.connect();
    await eventually(() => channels.length === 1);
    expect(channels).toEqual(['news']);
  });
});
