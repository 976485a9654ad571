import { randomBytes } from 'node:crypto';
import { describe, expect, it, vi } from 'vitest';
import { type KeySet, Security } from '../../../../apps/server/ws/security.js';
import { HubTestBed, json, type Served, TestClient } from './helpers.js';

const bed = new HubTestBed();
let served: Served | undefined;

const hubKeys: KeySet = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };

async function connect(
  codec: string,
  security: Security,
  headers: Record<string, string> = {},
): Promise<TestClient> {
  const c = await TestClient.connect(served!.url, codec, { security, headers });
  bed.clients.push(c);
  return c;
}

describe('hub with the security pipeline', () => {
  it('sealed frames flow both ways, binary whatever the codec', async () => {
    served = await bed.serve({ security: { keys: hubKeys } });
    const sec = new Security({ keys: hubKeys });
    const c = await connect('json', sec);
    c.subscribe('s');
    await c.nextOf('subscribed');
    c.send({ type: 'publish', channel: 's', data: Buffer.from('{"x":1}') });
    const [m] = await c.nextOf('message');
    expect(json(m!)).toEqual({ x: 1 });
    expect(c.frames.every((f) => f.binary)).toBe(true);
  });

  it('a tampered or foreign frame is never delivered: error frame, metric, and close after max_failures', async () => {
    served = await bed.serve({ security: { keys: hubKeys, maxFailures: 3 } });
    const sec = new Security({ keys: hubKeys });
    const listener = await connect('json', sec);
    listener.subscribe('s');
    await listener.nextOf('subscribed');
    const attacker = await connect('json', sec);
    const frame = Buffer.from(sec.seal(Buffer.from('{"type":"publish","channel":"s","data":1}')));
    frame[frame.length - 1]! ^= 0x01;
    attacker.ws.send(frame);
    const [err] = await attacker.nextOf('error');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_DECRYPT' });
    attacker.ws.send(
      new Security({ keys: { aesKey: randomBytes(32), hmacKey: randomBytes(32) } }).seal(Buffer.from('{}')),
    );
    attacker.ws.send(Buffer.from('plain text is not sealed'));
    await attacker.until((c) => c.closed !== undefined);
    expect(attacker.closed!.code).toBe(1008);
    expect(listener.of('message')).toEqual([]);
    const failures = await served.hub.metrics.securityFailures.get();
    expect(failures.values.reduce((n, v) => n + v.value, 0)).toBe(3);
  });

  it('per-client keys set by the authorize hook replace the hub keys for that client', async () => {
    const aliceKeys: KeySet = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
    served = await bed.serve({
      security: { keys: hubKeys },
      authorize: (req) => (req.headers['x-client-id'] === 'alice' ? { keys: aliceKeys } : true),
    });
    const alice = await connect('msgpack', new Security({ keys: aliceKeys }), { 'X-Client-ID': 'alice' });
    const bob = await connect('msgpack', new Security({ keys: hubKeys }), { 'X-Client-ID': 'bob' });
    alice.subscribe('room');
    bob.subscribe('room');
    await Promise.all([alice.nextOf('subscribed'), bob.nextOf('subscribed')]);
    bob.send({ type: 'publish', channel: 'room', data: Buffer.from('"from bob"') });
    await alice.nextOf('message');
    await bob.nextOf('message');
    expect(alice.unreadable + bob.unreadable).toBe(0);
    // a client holding only the hub keys cannot pass as alice: refused, and the error frame is sealed for alice
    const impostor = await connect('msgpack', new Security({ keys: hubKeys }), { 'X-Client-ID': 'alice' });
    impostor.subscribe('other');
    await impostor.until((c) => c.unreadable === 1);
    expect(served.hub.subscribers('other')).toBe(0);
    const failures = await served.hub.metrics.securityFailures.get();
    expect(failures.values.find((v) => v.labels.reason === 'decrypt')?.value).toBe(1);
  });

  it('a fan-out seals once per codec for hub keys and once per override key set', async () => {
    const shared: KeySet = { aesKey: randomBytes(32) };
    served = await bed.serve({
      security: { keys: hubKeys },
      authorize: (req) => (req.headers['x-group'] === 'vip' ? { keys: shared } : true),
    });
    const plain = await Promise.all(
      Array.from({ length: 4 }, () => connect('json', new Security({ keys: hubKeys }))),
    );
    const vip = await Promise.all(
      Array.from({ length: 4 }, () => connect('json', new Security({ keys: shared }), { 'X-Group': 'vip' })),
    );
    for (const c of [...plain, ...vip]) c.subscribe('f');
    await Promise.all([...plain, ...vip].map((c) => c.nextOf('subscribed')));
    const seal = vi.spyOn(Security.prototype, 'seal');
    served.hub.publish('f', { n: 1 });
    await Promise.all([...plain, ...vip].map((c) => c.nextOf('message')));
    expect(seal).toHaveBeenCalledTimes(2);
  });

  it('the replay guard refuses a frame sent twice', async () => {
    served = await bed.serve({ security: { keys: hubKeys, replayWindowMs: 30_000 } });
    const sec = new Security({ keys: hubKeys });
    const c = await connect('json', sec);
    const now = BigInt(Date.now()) * 1_000_000n;
    const sealed = sec.seal(Buffer.from(`{"type":"subscribe","data":{"channel":"r"},"timestamp":${now}}`));
    c.ws.send(sealed);
    await c.nextOf('subscribed');
    c.ws.send(sealed);
    const [err] = await c.nextOf('error');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_REPLAY' });
  });
});
