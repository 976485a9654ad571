import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { type HypMessage, HypWebSocket } from '../../../apps/client/index.js';
import type { CodecName } from '../../../apps/server/ws/codecs/index.js';
import { eventually, type Served, serveHub } from '../server/ws/helpers.js';

let served: Served | undefined;
const open: HypWebSocket[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  await served?.close();
  served = undefined;
});

function client(url: string, options: ConstructorParameters<typeof HypWebSocket>[1] = {}): HypWebSocket {
  const c = new HypWebSocket(url, { reconnect: { initialDelayMs: 20, maxDelayMs: 200 }, ...options });
  open.push(c);
  return c;
}

describe('HypWebSocket in Node', () => {
  for (const codec of ['json', 'protobuf', 'flatbuffers', 'msgpack'] as CodecName[]) {
    it(`${codec}: subscribes, receives server and client publishes, typed JSON access`, async () => {
      served = await serveHub();
      const sub = client(served.url, { codec, clientId: `sub-${codec}` });
      const got: HypMessage[] = [];
      sub.subscribe('news', (m) => got.push(m));
      await sub.connect();
      await eventually(() => served!.hub.subscribers('news') === 1);
      served.hub.publish('news', { n: 1 });
      const pub = client(served.url, { codec: 'json' });
      await pub.connect();
      pub.publish('news', { n: 2 });
      await eventually(() => got.length === 2);
      expect(got.map((m) => m.json<{ n: number }>().n)).toEqual([1, 2]);
      expect(got[1]!.channel).toBe('news');
      expect(got[1]!.offset).toMatch(/:2$/);
      expect(sub.offset('news')).toBe(got[1]!.offset);
      expect(served.hub.client(`sub-${codec}`)?.codecName).toBe(codec);
    });
  }

  for (const signThenEncrypt of [true, false]) {
    it(`seals with WebCrypto, interoperable with the hub's node:crypto pipeline (signThenEncrypt=${signThenEncrypt})`, async () => {
      const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
      served = await serveHub({ security: { keys, signThenEncrypt } });
      const c = client(served.url, { codec: 'msgpack', security: { ...keys, signThenEncrypt } });
      const got: string[] = [];
      c.subscribe('secret', (m) => got.push(m.text()));
      await c.connect();
      c.publish('secret', 'pssst');
      await eventually(() => got.length === 1);
      expect(got).toEqual(['"pssst"']);
      const failures = await served.hub.metrics.securityFailures.get();
      expect(failures.values.reduce((n, v) => n + v.value, 0)).toBe(0);
    });
  }

  it('reconnects after the connection drops and resumes from the last offset: nothing lost, nothing twice', async () => {
    served = await serveHub();
    const c = client(served.url, { codec: 'msgpack', clientId: 'resumer' });
    const got: number[] = [];
    c.subscribe('feed', (m) => got.push(m.json<number>()));
    await c.connect();
    await eventually(() => served!.hub.subscribers('feed') === 1);
    for (let i = 0; i < 10; i++) served.hub.publish('feed', i);
    await eventually(() => got.length === 10);
    // publish while the client is away: from its close event on, before it can reconnect
    const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
    served.hub.client('resumer')!.ws.terminate();
    await closed;
    for (let i = 10; i < 110; i++) served.hub.publish('feed', i);
    await eventually(() => got.length === 110, 15_000);
    served.hub.publish('feed', 110);
    await eventually(() => got.length === 111);
    expect(got).toEqual(Array.from({ length: 111 }, (_, i) => i));
  });

  it('queues publishes while disconnected and sends them after reconnecting', async () => {
    served = await serveHub();
    const listener = client(served.url);
    const got: string[] = [];
    listener.subscribe('q', (m) => got.push(m.json<string>()));
    await listener.connect();
    const c = client(served.url, { clientId: 'queuer' });
    await c.connect();
    const closed = new Promise<void>((resolve) => c.on('close', () => resolve()));
    served.hub.client('queuer')!.ws.terminate();
    await closed;
    expect(c.connected).toBe(false);
    c.publish('q', 'while away');
    await eventually(() => got.length === 1);
    expect(got).toEqual(['while away']);
  });

  it('backs off with full jitter and gives up after maxAttempts', async () => {
    const delays: number[] = [];
    const c = client('ws://127.0.0.1:1/ws', {
      reconnect: { initialDelayMs: 10, maxDelayMs: 40, maxAttempts: 4 },
    });
    c.on('reconnecting', (_attempt, delay) => delays.push(delay));
    await expect(c.connect()).rejects.toThrow(/gave up after 4 attempts/);
    expect(delays).toHaveLength(4);
    const ceilings = [10, 20, 40, 40];
    delays.forEach((d, i) => {
      expect(d).toBeGreaterThanOrEqual(0);
      expect(d).toBeLessThanOrEqual(ceilings[i]!);
    });
  });

  it('honours the drain hint of a 1001 close before reconnecting', async () => {
    served = await serveHub();
    const c = client(served.url);
    await c.connect();
    const closes: Array<[number, string]> = [];
    const delays: number[] = [];
    c.on('close', (code, reason) => closes.push([code, reason]));
    c.on('reconnecting', (_a, d) => delays.push(d));
    await served.hub.drain({ spreadMs: 0 });
    await eventually(() => delays.length >= 1);
    const hint = Number(/delay=(\d+)/.exec(closes[0]![1])![1]);
    expect(closes[0]![0]).toBe(1001);
    expect(delays[0]).toBeGreaterThanOrEqual(hint);
  });

  it('surfaces error frames as typed errors', async () => {
    served = await serveHub({ historySize: 1, maxNameLength: 4 });
    const c = client(served.url);
    const errors: Array<[string, string | undefined]> = [];
    c.on('error', (e) => errors.push([e.code, e.channel]));
    await c.connect();
    // (send('subscribe', ...) throws at the call now: the type is the hub's)
    c.subscribe('longer');
    await eventually(() => errors.length === 1);
    expect(errors).toEqual([['HYP_E_WS_NAME_TOO_LONG', 'longer']]);
  });
});
