import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type KeySet, ReplayGuard, Security } from '../../../../apps/server/ws/security.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { HubTestBed, json, TestClient } from './helpers.js';

const bed = new HubTestBed();
const hubKeys: KeySet = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
const ns = (ms: number) => BigInt(ms) * 1_000_000n;

afterEach(() => {
  vi.useRealTimers();
});

function subscribeFrame(sec: Security, channel: string, timestamp: bigint): Uint8Array {
  return sec.seal(
    Buffer.from(`{"type":"subscribe","data":{"channel":"${channel}"},"timestamp":${timestamp}}`),
  );
}

describe('replay guard', () => {
  it('a frame stamped ahead of the clock cannot be replayed once its arrival is a window old', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const served = await bed.serve({ security: { keys: hubKeys, replayWindowMs: 1_000 } });
    const sec = new Security({ keys: hubKeys });
    const c = await TestClient.connect(served.url, 'json', { security: sec });
    bed.clients.push(c);
    // a sender whose clock runs 900 ms ahead: inside the window, accepted
    const ahead = subscribeFrame(sec, 'a', ns(Date.now() + 900));
    c.ws.send(ahead);
    await c.nextOf('subscribed');
    // 1.2 s later the frame's timestamp is 300 ms old: still inside the window
    vi.setSystemTime(Date.now() + 1_200);
    c.ws.send(subscribeFrame(sec, 'b', ns(Date.now())));
    await c.nextOf('subscribed', 2);
    c.ws.send(ahead);
    c.ws.send(subscribeFrame(sec, 'c', ns(Date.now())));
    await c.until((t) => t.of('subscribed').length + t.of('error').length >= 4);
    expect(c.of('error').map((e) => json(e))).toMatchObject([{ code: 'HYP_E_WS_REPLAY' }]);
    expect(c.of('subscribed').map((m) => m.channel)).toEqual(['a', 'b', 'c']);
  });

  it('a nonce dropped from a full cache cannot be replayed: older timestamps are refused meanwhile', () => {
    let now = 1_000_000;
    const guard = new ReplayGuard({ windowMs: 30_000, maxEntries: 10, now: () => now });
    const first = randomBytes(12);
    guard.check(first, ns(now));
    for (let i = 1; i <= 10; i++) {
      now += 1;
      guard.check(randomBytes(12), ns(now));
    }
    expect(guard.size).toBe(10);
    expect(() => guard.check(first, ns(1_000_000))).toThrow(/replay/i);
    // fresh frames stamped after what was forgotten still pass
    now += 1;
    guard.check(randomBytes(12), ns(now));
    // once the window has passed the forgotten frame, the timestamp check alone covers it
    now += 31_000;
    guard.check(randomBytes(12), ns(now - 29_000));
  });
});

describe('replay guard under a flood', () => {
  it('a sender stamping a window ahead cannot push the refusal line past now for everyone else', () => {
    let now = 1_000_000;
    const guard = new ReplayGuard({ windowMs: 30_000, maxEntries: 10, now: () => now });
    // a flooder with a clock 29 s ahead fills the cache; its nonces are dropped to make room
    for (let i = 0; i < 20; i++) guard.check(randomBytes(12), ns(now + 29_000 + i));
    now += 1;
    // an honest sender stamping the present is still accepted
    expect(() => guard.check(randomBytes(12), ns(now))).not.toThrow();
  });
});

describe('key ids', () => {
  it('two key sets with one key id is a HYP_E_WS_KEY error, not a previous set that never opens anything', () => {
    const old: KeySet = { aesKey: randomBytes(32) };
    const current: KeySet = { aesKey: randomBytes(32) };
    let error: unknown;
    try {
      new Security({ keys: current, previousKeys: [old], keyIds: true });
    } catch (err) {
      error = err;
    }
    expect(isHypError(error) && error.code).toBe('HYP_E_WS_KEY');
    expect((error as Error).message).toMatch(/key id 0/);
    expect(
      () =>
        new Security({ keys: { ...current, keyId: 2 }, previousKeys: [{ ...old, keyId: 2 }], keyIds: true }),
    ).toThrow(/key id 2/);
    // without key ids every set is tried in turn: no clash
    const trial = new Security({ keys: current, previousKeys: [old] });
    expect(
      Buffer.from(trial.open(new Security({ keys: old }).seal(Buffer.from('x'))).payload).toString(),
    ).toBe('x');
  });
});
