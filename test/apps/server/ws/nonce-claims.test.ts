/**
 * The hub's claims beyond its own replay guard (nonce-claims.ts), against the
 * supervisor's real pod window (supervisor/replay.ts) behind an in-process
 * IPC channel whose answers the test can hold back: frames wait in order for
 * their verdicts, claims are batched, an unanswered or absent supervisor
 * refuses (fail closed), and claims piling up hold the sending clients.
 * The end-to-end case (real supervisor, two workers, real replays) is in
 * test/supervisor/ws-replay-pod.test.ts.
 */
import { randomBytes } from 'node:crypto';
import { EventEmitter } from 'node:events';
import { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import type { IpcChannel } from '../../../../apps/server/ws/bus.js';
import { jsonCodec } from '../../../../apps/server/ws/codecs/index.js';
import { nowNs } from '../../../../apps/server/ws/envelope.js';
import { IpcNonceClaims, RedisNonceClaims } from '../../../../apps/server/ws/nonce-claims.js';
import { type KeySet, Security } from '../../../../apps/server/ws/security.js';
import type { NonceClaim } from '../../../../supervisor/ipc.js';
import { PodReplayWindows } from '../../../../supervisor/replay.js';
import { HubTestBed, json, type TestClient } from './helpers.js';
import { freePort, RedisProcess, redisBinary } from './redis-server.js';

const bed = new HubTestBed();
const keys: KeySet = { aesKey: randomBytes(32) };
const security = new Security({ keys });
const windowMs = 30_000;
let claims: IpcNonceClaims | RedisNonceClaims | undefined;
afterEach(async () => {
  await claims?.close();
  claims = undefined;
});

/** The supervisor's end of a worker's IPC channel: the pod window, answers held back while `holding`. */
class StandInSupervisor {
  readonly windows = new PodReplayWindows(() => 2);
  /** `nonce-claim?` messages received, answered or not. */
  readonly received: NonceClaim[] = [];
  holding = false;
  connected = true;
  private readonly held: NonceClaim[] = [];
  private readonly worker = new EventEmitter();

  readonly channel: IpcChannel = {
    send: (raw: unknown, callback?: (err: Error | null) => void) => {
      const m = raw as { type: string } & NonceClaim;
      setImmediate(() => {
        callback?.(null);
        if (m.type !== 'nonce-claim?') return;
        this.received.push(m);
        if (this.holding) this.held.push(m);
        else this.answer(m);
      });
      return true;
    },
    on: (event, listener) => this.worker.on(event, listener),
    off: (event, listener) => this.worker.off(event, listener),
  };

  constructor() {
    Object.defineProperty(this.channel, 'connected', { get: () => this.connected });
  }

  release(): void {
    this.holding = false;
    for (const m of this.held.splice(0)) this.answer(m);
  }

  get nonces(): number {
    return this.received.reduce((n, m) => n + m.nonces.length, 0);
  }

  private answer(m: NonceClaim): void {
    const reply = { type: 'nonce-claimed', ...this.windows.claim(m) };
    setImmediate(() => this.worker.emit('message', reply));
  }
}

async function serveWith(supervisor: StandInSupervisor, timeoutMs?: number) {
  claims = new IpcNonceClaims({
    topic: 'ws',
    windowMs,
    maxEntries: 1000,
    channel: supervisor.channel,
    timeoutMs,
  });
  return bed.serve({ security: { keys, replayWindowMs: windowMs, replayClaims: claims } });
}

const connect = () => bed.connect('json', { security });

/** A sealed, stamped frame as a client sends it. */
function sealed(fields: { type: string; channel?: string; data?: Uint8Array }): Buffer {
  const bytes = jsonCodec.marshal({
    type: fields.type,
    channel: fields.channel ?? '',
    data: fields.data ?? new Uint8Array(),
    timestamp: nowNs(),
    clientId: '',
    offset: '',
  });
  return Buffer.from(security.seal(bytes));
}

const publishOf = (n: number) =>
  sealed({ type: 'publish', channel: 'news', data: Buffer.from(JSON.stringify({ n })) });
const subscribeTo = (channel: string) =>
  sealed({ type: 'subscribe', data: jsonCodec.encodeChannelRequest({ channel, offset: '' }) });

async function subscriber(channel: string): Promise<TestClient> {
  const s = await connect();
  s.ws.send(subscribeTo(channel));
  await s.nextOf('subscribed');
  return s;
}

const newsOf = (c: TestClient) =>
  c
    .of('message')
    .filter((m) => m.channel === 'news')
    .map((m) => (json(m) as { n: number }).n);

describe('replay claims beyond the hub (the pod window over IPC)', () => {
  it("a connection's frames wait in order for their verdicts: nothing is handled before the answer, then publish, refusal and subscribe in the order sent", async () => {
    const supervisor = new StandInSupervisor();
    const served = await serveWith(supervisor);
    const listener = await subscriber('news');
    const c = await connect();
    supervisor.holding = true;
    c.ws.send(publishOf(1));
    c.ws.send(Buffer.from('not sealed at all'));
    c.ws.send(subscribeTo('later'));
    await until(() => supervisor.nonces >= 2);
    expect(newsOf(listener)).toEqual([]);
    // the undecodable frame waits behind the publish: no error before the publish's verdict
    expect(c.of('error')).toEqual([]);
    expect(served.hub.subscribers('later')).toBe(0);
    supervisor.release();
    await c.nextOf('subscribed');
    await listener.until(() => newsOf(listener).length === 1);
    expect(c.received.map((m) => m.type)).toEqual(['error', 'subscribed']);
    expect((json(c.of('error')[0]!) as { code: string }).code).toBe('HYP_E_WS_DECRYPT');
    expect(served.hub.subscribers('later')).toBe(1);
  });

  it('a frame another worker already claimed is refused with HYP_E_WS_REPLAY and counted, the connection kept', async () => {
    const supervisor = new StandInSupervisor();
    const served = await serveWith(supervisor);
    const listener = await subscriber('news');
    const frame = publishOf(7);
    // another worker of the pod took this frame first
    const opened = security.open(frame);
    const first = supervisor.windows.claim({
      id: 0,
      topic: 'ws',
      windowMs,
      maxEntries: 1000,
      nonces: [Uint8Array.from(opened.nonce)],
      stamps: [jsonCodec.unmarshal(opened.payload).timestamp],
    });
    expect(first.verdicts).toEqual(['']);
    const c = await connect();
    c.ws.send(frame);
    c.ws.send(publishOf(8));
    await listener.until(() => newsOf(listener).length === 1);
    expect(newsOf(listener)).toEqual([8]);
    expect(c.of('error').map((e) => json(e))).toMatchObject([
      { code: 'HYP_E_WS_REPLAY', message: expect.stringContaining('already seen') },
    ]);
    const failures = await served.hub.metrics.securityFailures.get();
    expect(failures.values.find((v) => v.labels.reason === 'replay')?.value).toBe(1);
    expect(c.closed).toBeUndefined();
  });

  it('claims made in one event-loop turn travel in one IPC message', async () => {
    const supervisor = new StandInSupervisor();
    await serveWith(supervisor);
    const listener = await subscriber('news');
    const c = await connect();
    const before = supervisor.received.length;
    // sent back to back: they arrive in a few reads, claimed in a few turns
    for (let n = 0; n < 50; n++) c.ws.send(publishOf(n));
    await listener.until(() => newsOf(listener).length === 50);
    expect(newsOf(listener)).toEqual(Array.from({ length: 50 }, (_, n) => n));
    expect(supervisor.received.length - before).toBeLessThan(50);
  });

  it('a supervisor that never answers: the frames are refused once the wait is over (fail closed), never handled', async () => {
    const supervisor = new StandInSupervisor();
    await serveWith(supervisor, 300);
    const listener = await subscriber('news');
    const c = await connect();
    supervisor.holding = true;
    c.ws.send(publishOf(1));
    await c.nextOf('error');
    expect((json(c.of('error')[0]!) as { message: string }).message).toContain(
      'did not answer the replay check',
    );
    supervisor.release();
    c.ws.send(subscribeTo('after'));
    await c.nextOf('subscribed');
    expect(newsOf(listener)).toEqual([]);
  });

  it('no supervisor (the IPC channel closed): refused at once, never taken as unchecked', async () => {
    const supervisor = new StandInSupervisor();
    await serveWith(supervisor);
    const listener = await subscriber('news');
    const c = await connect();
    supervisor.connected = false;
    c.ws.send(publishOf(1));
    await c.nextOf('error');
    expect((json(c.of('error')[0]!) as { message: string }).message).toContain('no supervisor');
    expect(newsOf(listener)).toEqual([]);
  });

  it('claims piling up past the high-water mark hold the sending client until answered; nothing lost or reordered', async () => {
    const supervisor = new StandInSupervisor();
    const served = await serveWith(supervisor);
    const listener = await subscriber('news');
    const c = await connect();
    supervisor.holding = true;
    const total = 1_500;
    for (let n = 0; n < total; n++) c.ws.send(publishOf(n));
    await until(() => supervisor.nonces > 1_000);
    await until(async () => ((await served.hub.metrics.held.get()).values[0]?.value ?? 0) >= 1);
    // held: the rest waits unread (in the socket, or in the connection's inbox), not claimed
    expect(supervisor.nonces).toBeLessThan(total);
    supervisor.release();
    // answers release the flow; what waited is claimed and answered in turn
    const answering = setInterval(() => supervisor.release(), 20);
    try {
      await listener.until(() => newsOf(listener).length === total, 30_000);
    } finally {
      clearInterval(answering);
    }
    expect(newsOf(listener)).toEqual(Array.from({ length: total }, (_, n) => n));
    expect(c.of('error')).toEqual([]);
  });
});

async function until(predicate: () => Promise<boolean> | boolean, timeoutMs = 10_000): Promise<void> {
  const end = Date.now() + timeoutMs;
  while (!(await predicate())) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 10));
  }
}

const binary = redisBinary();

describe.skipIf(!binary)('replay claims in Redis (a real redis-server)', () => {
  let redis: RedisProcess | undefined;
  afterEach(async () => {
    await redis?.stop();
    redis = undefined;
  });

  async function serveOnRedis() {
    redis = new RedisProcess(binary!, await freePort());
    await redis.start();
    claims = new RedisNonceClaims({ url: redis.url, prefix: 'hyp', windowMs });
    return bed.serve({ security: { keys, replayWindowMs: windowMs, replayClaims: claims } });
  }

  it('a frame claimed in Redis by another node is refused; the claim expires after two windows (PX)', async () => {
    await serveOnRedis();
    const listener = await subscriber('news');
    const frame = publishOf(1);
    const opened = security.open(frame);
    const other = new Redis(redis!.url);
    try {
      const key = `hyp:nonce:${Buffer.from(opened.nonce).toString('base64url')}`;
      expect(await other.set(key, '1', 'PX', 2 * windowMs, 'NX')).toBe('OK');
      const c = await connect();
      c.ws.send(frame);
      c.ws.send(publishOf(2));
      await listener.until(() => newsOf(listener).length === 1);
      expect(newsOf(listener)).toEqual([2]);
      expect(c.of('error').map((e) => (json(e) as { code: string }).code)).toEqual(['HYP_E_WS_REPLAY']);
      // the other node's claim, and the hub's claims of the listener's subscribe and of frame 2, each for two windows
      const ttls = await Promise.all((await other.keys('hyp:nonce:*')).map((k) => other.pttl(k)));
      expect(ttls).toHaveLength(3);
      for (const ttl of ttls) expect(ttl).toBeGreaterThan(windowMs);
    } finally {
      other.disconnect();
    }
  });

  it('Redis down: frames wait for it (neither refused nor handled) and are handled in order once it is back', async () => {
    await serveOnRedis();
    const listener = await subscriber('news');
    const c = await connect();
    await redis!.stop();
    for (let n = 0; n < 20; n++) c.ws.send(publishOf(n));
    await until(() => (claims as RedisNonceClaims).flow.pending === 20);
    expect(newsOf(listener)).toEqual([]);
    expect(c.of('error')).toEqual([]);
    await redis!.start();
    await listener.until(() => newsOf(listener).length === 20, 20_000);
    expect(newsOf(listener)).toEqual(Array.from({ length: 20 }, (_, n) => n));
    expect(c.of('error')).toEqual([]);
  });
});
