import { randomBytes } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import type { Envelope } from '../../../../apps/server/ws/envelope.js';
import type { Recovery } from '../../../../apps/server/ws/history.js';
import { createHub } from '../../../../apps/server/ws/hub.js';
import type { SharedHistory } from '../../../../apps/server/ws/redis-history.js';
import { type KeySet, Security } from '../../../../apps/server/ws/security.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { eventually, fakeLog, HubTestBed, json, type Served } from './helpers.js';

const bed = new HubTestBed();
let served: Served | undefined;

const connect = bed.connect;

type ErrorBody = { code: string; message: string; channel?: string; room_id?: string };

describe('channels and rooms per connection', () => {
  it('refuses a subscribe or join beyond maxSubscriptions with an error frame naming it, and keeps the connection', async () => {
    served = await bed.serve({ maxSubscriptions: 3 });
    const c = await connect('json', { headers: { 'X-Client-ID': 'greedy' } });
    c.subscribe('a');
    c.subscribe('b');
    c.join('r1');
    // already subscribed: not counted a second time
    c.subscribe('a');
    await c.nextOf('subscribed', 3);
    c.subscribe('c');
    c.join('r2');
    const errors = (await c.nextOf('error', 2)).map((m) => json(m) as ErrorBody);
    expect(errors[0]).toMatchObject({ code: 'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS', channel: 'c' });
    expect(errors[0]!.message).toMatch(/3/);
    expect(errors[0]!.message).toMatch(/"c"/);
    expect(errors[1]).toMatchObject({ code: 'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS', room_id: 'r2' });
    expect(c.of('error')[0]!.channel).toBe('c');
    expect(served.hub.subscribers('c')).toBe(0);
    expect(served.hub.members('r2')).toEqual([]);
    // the connection stays usable; leaving one frees a slot
    c.send({ type: 'unsubscribe', data: Buffer.from('{"channel":"b"}') });
    c.subscribe('c');
    await c.until((x) => x.of('subscribed').some((m) => m.channel === 'c'));
    expect(c.closed).toBeUndefined();
    expect(served.hub.subscribers('c')).toBe(1);
    expect(served.hub.subscribers('b')).toBe(0);
    expect(served.hub.members('r1')).toEqual(['greedy']);
  });

  it('bounds the server API too, at 1000 by default: the next subscribe or joinRoom throws the stable code', async () => {
    served = await bed.serve({ ackSubscribe: false });
    await connect('json', { headers: { 'X-Client-ID': 'many' } });
    const client = served.hub.client('many')!;
    for (let i = 0; i < 600; i++) served.hub.subscribe(client, `ch-${i}`);
    for (let i = 0; i < 400; i++) served.hub.joinRoom(client, `room-${i}`);
    // re-subscribing and re-joining is not a new subscription
    served.hub.subscribe(client, 'ch-0');
    served.hub.joinRoom(client, 'room-0');
    let thrown: unknown;
    try {
      served.hub.subscribe(client, 'one-more');
    } catch (err) {
      thrown = err;
    }
    expect(isHypError(thrown, 'HYP_E_WS_TOO_MANY_SUBSCRIPTIONS')).toBe(true);
    expect(() => served!.hub.joinRoom(client, 'one-more-room')).toThrow(/one-more-room/);
    expect(served.hub.subscribers('one-more')).toBe(0);
    expect(served.hub.members('one-more-room')).toEqual([]);
    expect(client.channels).toHaveLength(600);
    expect(client.rooms).toHaveLength(400);
  });

  it('a maxSubscriptions below 1 is refused when the hub is made', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => createHub({ maxSubscriptions: bad, pingIntervalMs: 0 })).toThrow(
        expect.objectContaining({
          code: 'HYP_E_CONFIG_INVALID',
          message: expect.stringContaining('max_subscriptions'),
        }),
      );
    }
  });
});

/** Data as a view into a much larger buffer, as a decoder returns it from a socket's read chunk. */
function viewIntoLargeBuffer(text: string): Uint8Array {
  const big = Buffer.alloc(64 * 1024);
  big.write(text, 1000);
  return big.subarray(1000, 1000 + Buffer.byteLength(text));
}

describe('retained message data does not pin the buffer it was decoded from', () => {
  for (const codec of ['json', 'msgpack', 'protobuf', 'flatbuffers']) {
    it(`${codec}: a client publish kept in history owns its bytes`, async () => {
      served = await bed.serve();
      const c = await connect(codec);
      const head = served.hub.history.head('kept');
      c.send({ type: 'publish', channel: 'kept', data: Buffer.from('"small"') });
      let recovery: Recovery | undefined;
      await eventually(() => {
        recovery = served!.hub.history.since('kept', head);
        return recovery.ok && recovery.messages.length === 1;
      });
      const data = (recovery as { messages: Envelope[] }).messages[0]!.data;
      expect(Buffer.from(data).toString()).toBe('"small"');
      expect(data.buffer.byteLength).toBeLessThanOrEqual(data.byteLength);
    });
  }

  it('a server publish of a view is kept as a copy; the delivery is unchanged', async () => {
    served = await bed.serve();
    const c = await connect('json');
    c.subscribe('kept');
    await c.nextOf('subscribed');
    const head = served.hub.history.head('kept');
    served.hub.publish('kept', viewIntoLargeBuffer('"x"'));
    const [m] = await c.nextOf('message');
    expect(json(m!)).toBe('x');
    const r = served.hub.history.since('kept', head);
    const data = (r as { messages: Envelope[] }).messages[0]!.data;
    expect(data.buffer.byteLength).toBe(data.byteLength);
  });

  it('deliveries held back during a shared-history recovery own their bytes', async () => {
    const shared = new ViewSharedHistory();
    served = await bed.serve({ sharedHistory: shared });
    const c = await connect('json', { headers: { 'X-Client-ID': 'recovering' } });
    c.subscribe('ch', '1-0');
    await eventually(() => shared.pending.length === 1);
    shared.announce('ch', viewIntoLargeBuffer('"held"'));
    const client = served.hub.client('recovering')!;
    const held = client.recovering?.get('ch')?.held ?? [];
    expect(held).toHaveLength(1);
    expect(Buffer.from(held[0]!.data).toString()).toBe('"held"');
    expect(held[0]!.data.buffer.byteLength).toBe(held[0]!.data.byteLength);
    shared.pending[0]!();
    await c.until((x) => x.of('message').length === 1);
    expect(json(c.of('message')[0]!)).toBe('held');
  });
});

/** A shared history whose deliveries carry data views into large buffers, and whose recoveries wait. */
class ViewSharedHistory implements SharedHistory {
  private readonly handlers = new Set<(channel: string, message: Envelope) => void>();
  private seq = 0;
  readonly pending: Array<() => void> = [];

  publish(): void {}

  announce(channel: string, data: Uint8Array): void {
    const m: Envelope = {
      type: 'message',
      channel,
      data,
      timestamp: 1n,
      clientId: '',
      offset: `1-${++this.seq}`,
    };
    for (const h of this.handlers) h(channel, m);
  }

  onDelivery(handler: (channel: string, message: Envelope) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  recover(): Promise<{ head: string; recovery: Recovery }> {
    return new Promise((resolve) => {
      this.pending.push(() => resolve({ head: '1-0', recovery: { ok: true, messages: [] } }));
    });
  }

  async ready(): Promise<void> {}
  async close(): Promise<void> {}
}

const hubKeys: KeySet = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };

describe('per-client keys fail closed', () => {
  it('an authorize hook returning an empty key set refuses the upgrade, naming the client', async () => {
    const log = fakeLog();
    served = await bed.serve({ security: { keys: hubKeys }, authorize: () => ({ keys: {} }), log });
    await expect(connect('json', { headers: { 'X-Client-ID': 'eve' } })).rejects.toThrow(/HTTP 500/);
    expect(served.hub.clients()).toBe(0);
    expect(log.error).toHaveBeenCalledTimes(1);
    const err = (log.error.mock.calls[0]![0] as { err: unknown }).err;
    expect(isHypError(err, 'HYP_E_WS_KEY')).toBe(true);
    expect((err as Error).message).toMatch(/client eve/);
    expect((err as Error).message).toMatch(/plaintext/);
  });

  it('an empty key set is refused on a hub without security too', async () => {
    const log = fakeLog();
    served = await bed.serve({ authorize: () => ({ keys: {} }), log });
    await expect(connect('json', { headers: { 'X-Client-ID': 'eve' } })).rejects.toThrow(/HTTP 500/);
    expect(served.hub.clients()).toBe(0);
  });

  it('per-client keys on a hub without the security pipeline refuse the upgrade instead of being ignored', async () => {
    const log = fakeLog();
    served = await bed.serve({ authorize: () => ({ keys: { aesKey: randomBytes(32) } }), log });
    await expect(connect('json', { headers: { 'X-Client-ID': 'bob' } })).rejects.toThrow(/HTTP 500/);
    expect(served.hub.clients()).toBe(0);
    const err = (log.error.mock.calls[0]![0] as { err: unknown }).err;
    expect(isHypError(err, 'HYP_E_WS_KEY')).toBe(true);
    expect((err as Error).message).toMatch(/client bob/);
  });

  it('setKeys with an empty key set throws HYP_E_WS_KEY naming the client and keeps the old keys', async () => {
    served = await bed.serve({ security: { keys: hubKeys } });
    const sec = new Security({ keys: hubKeys });
    await connect('json', { security: sec, headers: { 'X-Client-ID': 'carol' } });
    const client = served.hub.client('carol')!;
    const own: KeySet = { hmacKey: randomBytes(32) };
    client.setKeys(own);
    let thrown: unknown;
    try {
      client.setKeys({});
    } catch (err) {
      thrown = err;
    }
    expect(isHypError(thrown, 'HYP_E_WS_KEY')).toBe(true);
    expect((thrown as Error).message).toMatch(/client carol/);
    expect(client.keys).toBe(own);
    // keys that are present but null, or not bytes, are no keys either
    expect(() => client.setKeys({ aesKey: null } as unknown as KeySet)).toThrow(/client carol/);
    expect(() => client.setKeys({ hmacKey: 'secret' } as unknown as KeySet)).toThrow(/must be bytes/);
    expect(() => client.setKeys(null as unknown as KeySet)).toThrow(/client carol/);
    expect(client.keys).toBe(own);
    client.setKeys(undefined);
    expect(client.keys).toBeUndefined();
  });

  it('setKeys on a hub without the security pipeline throws instead of being ignored', async () => {
    served = await bed.serve();
    await connect('json', { headers: { 'X-Client-ID': 'dave' } });
    const client = served.hub.client('dave')!;
    expect(() => client.setKeys({ aesKey: randomBytes(32) })).toThrow(/client dave/);
    expect(client.keys).toBeUndefined();
  });
});
