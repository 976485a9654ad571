/**
 * The client's outgoing bound (`maxSendSize`, default the hub's default
 * `websocket.max_message_size`, 512 KiB): a frame the hub would refuse with
 * 1009 is refused at the call instead — a plain publish throws, a publishAck
 * rejects — measured on the frame as sent (sealed when security is on), and
 * never sent or queued. Before, the hub closed the connection with 1009, the
 * client sent the publishAck again at every reconnect until its timeout, and
 * plain publishes sent meanwhile were lost without a word. A 1009 the hub
 * sends anyway (its bound below the client's) rejects the acknowledged
 * publish that caused it instead of sending it again.
 * Real hubs in-process (./delivery.ts), loopback only.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { HypWebSocket } from '../../../apps/client/index.js';
import { type CodecName, codecByName } from '../../../apps/server/ws/codecs/index.js';
import { envelope, nowNs } from '../../../apps/server/ws/envelope.js';
import { eventually } from '../server/ws/helpers.js';
import { client, closeAll, hub, range } from './delivery.js';

afterEach(closeAll);

interface Rejection {
  name: string;
  code: string;
  channel: string;
  message: string;
}

function thrown(fn: () => unknown): Rejection | undefined {
  try {
    fn();
  } catch (err) {
    return err as Rejection;
  }
  return undefined;
}

/** A client subscribed to 'small', once the hub has acknowledged it. */
async function subscribedToSmall(url: string) {
  const sub = client(url, { clientId: 'sub' });
  sub.subscribe('small');
  await sub.ws.connect();
  await eventually(() => sub.ws.offset('small') !== undefined);
  return sub;
}

/**
 * A JSON string payload whose publish frame (this codec, as the client
 * marshals it: a timestamp, an id for an acknowledged one) is `size` bytes.
 */
function payloadOfFrame(codec: CodecName, size: number, channel: string, id?: string): string {
  const c = codecByName(codec)!;
  const frameOf = (n: number) =>
    c.marshal(
      envelope({
        type: 'publish',
        channel,
        data: new TextEncoder().encode(JSON.stringify('x'.repeat(n))),
        timestamp: nowNs(),
        ...(id === undefined ? {} : { id }),
      }),
    ).length;
  // varint-length codecs grow a byte here and there: search rather than subtract
  let n = Math.max(0, size - frameOf(0));
  while (frameOf(n) > size) n--;
  while (frameOf(n + 1) <= size) n++;
  if (frameOf(n) !== size) throw new Error(`no ${codec} frame of exactly ${size} bytes`);
  return 'x'.repeat(n);
}

describe('maxSendSize: the outgoing bound', () => {
  it('by default a 600 KiB publishAck rejects at once with HYP_E_WS_TOO_LARGE; the connection stays up and the plain publishes around it arrive', async () => {
    const served = await hub(); // max_message_size: the default 512 KiB
    const sub = await subscribedToSmall(served.url);
    const pub = client(served.url, { clientId: 'pub' });
    await pub.ws.connect();
    pub.ws.publish('small', 0);
    const big = pub.ws.publishAck('big', 'x'.repeat(600 * 1024), { timeoutMs: 3_000 }).then(
      () => undefined,
      (err: Rejection) => err,
    );
    for (const i of range(1, 20)) pub.ws.publish('small', i);
    const err = await big;
    expect(err).toMatchObject({ name: 'PublishAckError', code: 'HYP_E_WS_TOO_LARGE', channel: 'big' });
    expect(err!.message).toMatch(/"big"/);
    expect(err!.message).toMatch(/524288/); // the bound
    expect(err!.message).toMatch(/61\d{4}/); // the frame's size (600 KiB and the envelope)
    await eventually(() => sub.got('small').length === 20, 5_000);
    expect(sub.got('small')).toEqual(range(0, 20));
    expect(pub.closes).toBe(0);
    expect(pub.errors).toEqual([]);
  });

  it('a plain publish over it throws at the call (HYP_E_WS_TOO_LARGE, with the channel and sizes), is not sent, and the ones after it arrive', async () => {
    const served = await hub();
    const sub = await subscribedToSmall(served.url);
    const pub = client(served.url, { clientId: 'pub' });
    await pub.ws.connect();
    const err = thrown(() => pub.ws.publish('big', 'x'.repeat(600 * 1024)));
    expect(err).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE', channel: 'big' });
    expect(err).toBeInstanceOf(RangeError);
    expect(err!.message).toMatch(/"big".*61\d{4} bytes.*524288 bytes \(maxSendSize/);
    for (const i of range(0, 10)) pub.ws.publish('small', i);
    await eventually(() => sub.got('small').length === 10, 5_000);
    expect(sub.got('small')).toEqual(range(0, 10));
    expect(pub.closes).toBe(0);
  });

  it('also while disconnected: nothing over the bound enters the queue', async () => {
    const served = await hub();
    const sub = await subscribedToSmall(served.url);
    const pub = client(served.url, { clientId: 'pub', maxSendSize: 4096 });
    expect(thrown(() => pub.ws.publish('small', 'x'.repeat(5000)))).toMatchObject({
      code: 'HYP_E_WS_TOO_LARGE',
    });
    expect(thrown(() => pub.ws.broadcast('x'.repeat(5000)))).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE' });
    expect(thrown(() => pub.ws.send('echo', 'x'.repeat(5000)))).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE' });
    const acked = pub.ws.publishAck('small', 'x'.repeat(5000)).catch((e: Rejection) => e);
    pub.ws.publish('small', 'after');
    expect(await acked).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE', channel: 'small' });
    await pub.ws.connect();
    await eventually(() => sub.got('small').length === 1, 5_000);
    expect(sub.got('small')).toEqual(['after']);
  });

  for (const codec of ['json', 'msgpack', 'protobuf', 'flatbuffers'] as CodecName[]) {
    it(`${codec}: measured on the frame as sent — exactly maxSendSize goes out and the hub takes it, one byte more is refused`, async () => {
      const limit = 4096;
      const served = await hub({ maxMessageSize: limit });
      const sub = client(served.url, { clientId: 'sub', codec });
      sub.subscribe('news');
      await sub.ws.connect();
      await eventually(() => sub.ws.offset('news') !== undefined);
      const pub = client(served.url, { clientId: 'pub', codec, maxSendSize: limit });
      await pub.ws.connect();
      const fits = payloadOfFrame(codec, limit, 'news');
      pub.ws.publish('news', fits);
      expect(thrown(() => pub.ws.publish('news', `${fits}x`))).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE' });
      const ackFits = payloadOfFrame(codec, limit, 'news', 'the-id');
      await pub.ws.publishAck('news', ackFits, { id: 'the-id' });
      await expect(pub.ws.publishAck('news', `${ackFits}x`, { id: 'the-id' })).rejects.toMatchObject({
        code: 'HYP_E_WS_TOO_LARGE',
      });
      await eventually(() => sub.got('news').length === 2, 5_000);
      expect(sub.got('news')).toEqual([fits, ackFits]);
      expect(pub.closes).toBe(0);
    });
  }

  it('with security, on the sealed frame (nonce, tag, MAC and key id added)', async () => {
    const limit = 4096;
    const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32), keyId: 3 };
    const served = await hub({ maxMessageSize: limit, security: { keys, keyIds: true } });
    const sub = client(served.url, { clientId: 'sub', security: keys });
    sub.subscribe('news');
    await sub.ws.connect();
    await eventually(() => sub.ws.offset('news') !== undefined);
    const pub = client(served.url, { clientId: 'pub', security: keys, maxSendSize: limit });
    await pub.ws.connect();
    const overhead = 12 + 16 + 32 + 1;
    const fits = payloadOfFrame('json', limit - overhead, 'news');
    pub.ws.publish('news', fits);
    const err = thrown(() => pub.ws.publish('news', `${fits}x`));
    expect(err).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE', channel: 'news' });
    expect(err!.message).toMatch(/4097 bytes/);
    await eventually(() => sub.got('news').length === 1, 5_000);
    expect(sub.got('news')).toEqual([fits]);
    expect(pub.closes).toBe(0);
    expect(pub.errors).toEqual([]);
  });

  it('an invalid maxSendSize throws from the constructor', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { maxSendSize: bad }), String(bad)).toThrow(
        RangeError,
      );
    }
  });
});

describe('a 1009 from the hub anyway (its max_message_size below maxSendSize)', () => {
  it('rejects the acknowledged publish that caused it (HYP_E_WS_TOO_LARGE) instead of sending it again at every reconnect', async () => {
    const served = await hub({ maxMessageSize: 4096 });
    const sub = await subscribedToSmall(served.url);
    const pub = client(served.url, { clientId: 'pub' }); // maxSendSize: the default 512 KiB
    const codes: number[] = [];
    pub.ws.on('close', (code) => codes.push(code));
    await pub.ws.connect();
    const err = await pub.ws
      .publishAck('big', 'x'.repeat(8000), { timeoutMs: 4_000 })
      .catch((e: Rejection) => e);
    expect(err).toMatchObject({ name: 'PublishAckError', code: 'HYP_E_WS_TOO_LARGE', channel: 'big' });
    expect(err.message).toMatch(/1009/);
    await eventually(() => pub.opens === 2, 5_000);
    for (const i of range(0, 10)) pub.ws.publish('small', i);
    await eventually(() => sub.got('small').length === 10, 5_000);
    expect(sub.got('small')).toEqual(range(0, 10));
    expect(codes).toEqual([1009]);
  });

  it('after a plain publish caused it: an error event names its channel (it is lost), nothing is sent again', async () => {
    const served = await hub({ maxMessageSize: 4096 });
    const pub = client(served.url, { clientId: 'pub' });
    const codes: number[] = [];
    pub.ws.on('close', (code) => codes.push(code));
    await pub.ws.connect();
    pub.ws.publish('big', 'x'.repeat(8000));
    await eventually(() => pub.opens === 2, 5_000);
    expect(codes).toEqual([1009]);
    expect(pub.errors).toHaveLength(1);
    expect(pub.errors[0]).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE', channel: 'big' });
    expect(pub.errors[0]!.message).toMatch(/1009/);
  });
});
