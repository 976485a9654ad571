/**
 * End-to-end audit of the client's delivery guarantees against real hubs
 * (in-process, loopback): resume after cuts, kills, drains and restarts,
 * the gap signal, exactly-once in order per channel at the application
 * boundary, the offline queue's bound, and replayed frames under security.
 * A TCP front (./front.ts) stands for the network, the load balancer and a
 * man in the middle.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { ClientReplayGuard, HypWebSocket } from '../../../apps/client/index.js';
import { IpcHistory } from '../../../apps/server/ws/ipc-history.js';
import type { Gap } from '../../../apps/server/ws/redis-history.js';
import { PodHistory } from '../../../supervisor/history.js';
import { eventually, podHistoryChannels, type Served, serveHub } from '../server/ws/helpers.js';
import { cleanup, client, closeAll, frontOf, hub, range } from './delivery.js';
import { portOf } from './front.js';

afterEach(async () => {
  await closeAll();
});

/**
 * Workers of one pod: hubs sharing a stand-in for the supervisor's pod-wide
 * history (supervisor/history.ts behind in-process IPC channels, as
 * ipc-history.test.ts does). `gap(worker, gap)` makes one worker's history
 * report a lost stretch, as RedisHistory's catch-up does after a cut.
 */
async function pod(workers: number) {
  const { history, channels } = podHistoryChannels(workers, { history: new PodHistory({ size: 1000 }) });
  const gapHandlers = channels.map(() => new Set<(gap: Gap) => void>());
  const served: Served[] = [];
  for (const [i, channel] of channels.entries()) {
    const shared = new IpcHistory({ topic: '/ws', channel });
    const handlers = gapHandlers[i]!;
    Object.assign(shared, {
      onGap(handler: (gap: Gap) => void) {
        handlers.add(handler);
        return () => handlers.delete(handler);
      },
    });
    served.push(await hub({ sharedHistory: shared }));
  }
  return {
    workers: served,
    head: (channel: string) => history.head(`/ws\u0000${channel}`),
    gap(worker: number, gap: Gap) {
      for (const h of gapHandlers[worker]!) h(gap);
    },
  };
}

/** Resolves on the client's next event `name`. */
function next(ws: HypWebSocket, name: 'open' | 'close'): Promise<void> {
  return new Promise((resolve) => {
    const off = ws.on(name, () => {
      off();
      resolve();
    });
  });
}

describe('the gap signal (HYP_E_WS_RECOVERY_FAILED + subscribed)', () => {
  it('a resume past the history is reported with channel and offset; the client resumes from the new head after it, once', async () => {
    const served = await hub({ historySize: 5 });
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'gap' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => served.hub.subscribers('feed') === 1);
    for (const n of range(0, 3)) served.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 3);
    const before = c.ws.offset('feed');
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    for (const n of range(3, 13)) served.hub.publish('feed', n);
    await eventually(() => c.errors.length === 1 && c.ws.offset('feed') !== undefined);
    expect(c.errors[0]).toMatchObject({ code: 'HYP_E_WS_RECOVERY_FAILED', channel: 'feed', offset: before });
    // the resume point is the head the ack named: nothing is replayed twice later
    await eventually(() => served.hub.subscribers('feed') === 1);
    served.hub.publish('feed', 13);
    await eventually(() => c.got('feed').length === 4);
    const again = next(c.ws, 'close');
    f.cut();
    await again;
    for (const n of range(14, 16)) served.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 6);
    expect(c.got('feed')).toEqual([0, 1, 2, 13, 14, 15]);
    expect(c.errors).toHaveLength(1);
  });

  it('a cut between the error and its ack: the next resume reports the loss again instead of starting silently at the head', async () => {
    const served = await hub({ historySize: 5 });
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'gap2' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => served.hub.subscribers('feed') === 1);
    served.hub.publish('feed', 0);
    await eventually(() => c.got('feed').length === 1);
    let cuts = 0;
    f.tap = (frame) => {
      if (cuts === 0 && frame.payload.includes('HYP_E_WS_RECOVERY_FAILED')) {
        cuts++;
        return 'cut';
      }
      return 'pass';
    };
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    for (const n of range(1, 11)) served.hub.publish('feed', n);
    // the resume fails; the connection drops right after the error, before the ack
    // (at least: the next resume may already have reported the loss again by the time this looks)
    await eventually(() => c.errors.length >= 1 && c.closes >= 2);
    served.hub.publish('feed', 11); // published while the client is away the second time
    await eventually(() => c.opens === 3 && c.ws.offset('feed') !== undefined);
    await eventually(() => served.hub.subscribers('feed') === 1);
    served.hub.publish('feed', 12);
    await eventually(() => c.got('feed').includes(12));
    // 11 is lost; the application must learn it: delivered, or a second gap reported
    const told = c.got('feed').includes(11) || c.errors.length === 2;
    expect(told, JSON.stringify({ got: c.got('feed'), errors: c.errors })).toBe(true);
    expect(c.errors.every((e) => e.code === 'HYP_E_WS_RECOVERY_FAILED' && e.channel === 'feed')).toBe(true);
  });

  it("a live gap (a pod's catch-up could not fill it) reaches the application as an error event; deliveries after it and later resumes stay exactly once", async () => {
    const p = await pod(1);
    const [w] = p.workers;
    const f = await frontOf(w!);
    const c = client(f.url, { clientId: 'live-gap' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => w!.hub.subscribers('feed') === 1);
    for (const n of range(0, 3)) w!.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 3);
    const last = c.ws.offset('feed')!;
    // deliveries follow the gap: the resume point stays the last delivery before it
    p.gap(0, { channel: 'feed', offset: last, detail: 'trimmed during the outage', resume: last });
    for (const n of range(3, 6)) w!.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 6 && c.errors.length === 1);
    expect(c.errors[0]).toMatchObject({ code: 'HYP_E_WS_RECOVERY_FAILED', channel: 'feed', offset: last });
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    for (const n of range(6, 9)) w!.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 9);
    expect(c.got('feed')).toEqual(range(0, 9));
    expect(c.errors).toHaveLength(1);
  });
});

describe('resume', () => {
  it('a worker killed mid-stream: the client resumes on another worker of the pod, nothing lost or doubled', async () => {
    const p = await pod(2);
    const [w1, w2] = p.workers;
    const f = await frontOf(w1!);
    const c = client(f.url, { clientId: 'killed', codec: 'msgpack' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => w1!.hub.subscribers('feed') === 1);
    let sent = 0;
    let killed = false;
    for (let round = 0; round < 2_000 && c.got('feed').length < 300; round++) {
      if (sent < 300) for (let i = 0; i < 10; i++) w2!.hub.publish('feed', sent++);
      if (!killed && c.got('feed').length >= 100) {
        killed = true;
        f.target = portOf(w2!.url);
        f.cut(); // SIGKILL: no close frame
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(killed).toBe(true);
    expect(c.got('feed')).toEqual(range(0, 300));
    expect(c.errors).toEqual([]);
  });

  it('a drain (1001 + delay hint) while publishes continue: resumes on the other worker, exactly once', async () => {
    const p = await pod(2);
    const [w1, w2] = p.workers;
    const f = await frontOf(w1!);
    const c = client(f.url, { clientId: 'drained' });
    const codes: number[] = [];
    c.ws.on('close', (code) => codes.push(code));
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => w1!.hub.subscribers('feed') === 1);
    let sent = 0;
    let drained = false;
    for (let round = 0; round < 3_000 && c.got('feed').length < 200; round++) {
      if (sent < 200) w2!.hub.publish('feed', sent++);
      if (!drained && sent === 50) {
        drained = true;
        f.target = portOf(w2!.url);
        void w1!.hub.drain({ spreadMs: 0 });
      }
      await new Promise((r) => setTimeout(r, 2));
    }
    expect(codes[0]).toBe(1001);
    expect(c.got('feed')).toEqual(range(0, 200));
    expect(c.errors).toEqual([]);
  });

  it('a hub restarted with in-process history (another epoch): the loss is reported, then the new history resumes', async () => {
    const a = await serveHub();
    let aClosed = false;
    cleanup.push(() => (aClosed ? undefined : a.close()));
    const f = await frontOf(a);
    const c = client(f.url, { clientId: 'restart' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => a.hub.subscribers('feed') === 1);
    for (const n of range(0, 3)) a.hub.publish('feed', n);
    await eventually(() => c.got('feed').length === 3);
    const away = next(c.ws, 'close');
    aClosed = true;
    await a.close();
    await away;
    const b = await hub();
    b.hub.publish('feed', 'lost in the restart');
    f.target = portOf(b.url);
    await eventually(() => c.errors.length === 1 && b.hub.subscribers('feed') === 1);
    expect(c.errors[0]).toMatchObject({ code: 'HYP_E_WS_RECOVERY_FAILED', channel: 'feed' });
    b.hub.publish('feed', 3);
    await eventually(() => c.got('feed').length === 4);
    const again = next(c.ws, 'close');
    f.cut();
    await again;
    b.hub.publish('feed', 4);
    await eventually(() => c.got('feed').length === 5);
    expect(c.got('feed')).toEqual([0, 1, 2, 3, 4]);
    expect(c.errors).toHaveLength(1);
  });

  it('a cut during the replay itself: the next resume continues after the last message delivered', async () => {
    const p = await pod(1);
    const [w] = p.workers;
    const f = await frontOf(w!);
    const c = client(f.url, { clientId: 'replay-cut' });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => w!.hub.subscribers('feed') === 1);
    w!.hub.publish('feed', 0);
    await eventually(() => c.got('feed').length === 1);
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    for (const n of range(1, 51)) w!.hub.publish('feed', n);
    let passed = 0;
    f.tap = (frame) => {
      if (frame.opcode === 1 && frame.payload.includes('"type":"message"') && ++passed === 10) {
        f.tap = undefined;
        return 'cut';
      }
      return 'pass';
    };
    await eventually(() => c.got('feed').length === 51);
    expect(c.opens).toBe(3);
    expect(c.got('feed')).toEqual(range(0, 51));
    expect(c.errors).toEqual([]);
  });

  it('frames a proxy sends twice are delivered once', async () => {
    const served = await hub();
    const f = await frontOf(served);
    f.tap = () => 'twice';
    const c = client(f.url);
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => served.hub.subscribers('feed') === 1);
    for (const n of range(0, 20)) served.hub.publish('feed', n);
    served.hub.publish('feed', 'end');
    await eventually(() => c.got('feed').includes('end'));
    expect(c.got('feed')).toEqual([...range(0, 20), 'end']);
  });

  it('subscribe / unsubscribe / subscribe while disconnected: one subscription, no stale handler, kept channels resume', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'race' });
    const first: unknown[] = [];
    const second: unknown[] = [];
    const offA = c.ws.subscribe('a', (m) => first.push(m.json()));
    c.subscribe('b');
    await c.ws.connect();
    await eventually(() => served.hub.subscribers('a') === 1 && served.hub.subscribers('b') === 1);
    served.hub.publish('a', 'a1');
    served.hub.publish('b', 'b1');
    await eventually(() => first.length === 1 && c.got('b').length === 1);
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    offA();
    c.ws.subscribe('a', (m) => second.push(m.json()));
    const offC = c.ws.subscribe('c', () => {});
    offC();
    served.hub.publish('b', 'b2');
    await eventually(() => c.opens === 2 && served.hub.subscribers('a') === 1);
    served.hub.publish('a', 'a3');
    served.hub.publish('b', 'b3');
    await eventually(() => second.includes('a3') && c.got('b').length === 3);
    expect(first).toEqual(['a1']);
    expect(second).toEqual(['a3']);
    expect(c.got('b')).toEqual(['b1', 'b2', 'b3']);
    expect(served.hub.subscribers('c')).toBe(0);
  });

  it('many channels at once resume together, each exactly once and in order', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'many', codec: 'protobuf' });
    const names = range(0, 150).map((i) => `ch-${i}`);
    for (const name of names) c.subscribe(name);
    await c.ws.connect();
    await eventually(() => names.every((n) => served.hub.subscribers(n) === 1));
    for (const name of names) served.hub.publish(name, 0);
    await eventually(() => names.every((n) => c.got(n).length === 1));
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    for (const n of [1, 2, 3]) for (const name of names) served.hub.publish(name, n);
    await eventually(() => names.every((n) => c.got(n).length === 4));
    for (const name of names) served.hub.publish(name, 4);
    await eventually(() => names.every((n) => c.got(n).length === 5));
    for (const name of names) expect(c.got(name), name).toEqual([0, 1, 2, 3, 4]);
  });

  it('publishes queued while offline go out after the resume: the replay of what others sent comes first, then our own, in order', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'offline-publisher' });
    c.subscribe('chat');
    await c.ws.connect();
    await eventually(() => served.hub.subscribers('chat') === 1);
    served.hub.publish('chat', 'o0');
    await eventually(() => c.got('chat').length === 1);
    const away = next(c.ws, 'close');
    f.cut();
    await away;
    c.ws.publish('chat', 'q1');
    served.hub.publish('chat', 'o1');
    c.ws.publish('chat', 'q2');
    await eventually(() => c.got('chat').length === 4);
    expect(c.got('chat')).toEqual(['o0', 'o1', 'q1', 'q2']);
  });

  it('close() during the reconnect backoff: no further connection, nothing queued goes out', async () => {
    const served = await hub();
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'closer', reconnect: { initialDelayMs: 50, maxDelayMs: 50 } });
    const published: string[] = [];
    served.hub.onMessage((_client, m) => {
      if (m.type === 'publish') published.push(Buffer.from(m.data).toString());
    });
    await c.ws.connect();
    const waiting = new Promise<void>((resolve) => c.ws.on('reconnecting', () => resolve()));
    f.cut();
    await waiting;
    c.ws.publish('x', 'queued');
    c.ws.close();
    // longer than any backoff the client could have picked (50 ms cap)
    await new Promise((r) => setTimeout(r, 300));
    expect(f.accepted).toBe(1);
    expect(c.ws.connected).toBe(false);
    expect(published).toEqual([]);
  });
});

describe('the offline queue', () => {
  it('a publish dropped at the bound is reported (HYP_E_WS_QUEUE_FULL, with its channel), never silently', async () => {
    const c = client('ws://127.0.0.1:1/ws', { maxQueued: 2, reconnect: { enabled: false } });
    for (const n of range(0, 5)) c.ws.publish(`ch-${n}`, n);
    expect(c.errors.map((e) => e.code)).toEqual([
      'HYP_E_WS_QUEUE_FULL',
      'HYP_E_WS_QUEUE_FULL',
      'HYP_E_WS_QUEUE_FULL',
    ]);
    // oldest dropped first
    expect(c.errors.map((e) => e.channel)).toEqual(['ch-0', 'ch-1', 'ch-2']);
  });

  it('a maxQueued that is not a non-negative integer throws a RangeError (a negative one hung the first offline publish)', () => {
    for (const maxQueued of [-1, 1.5, Number.NaN]) {
      expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { maxQueued }), String(maxQueued)).toThrow(
        RangeError,
      );
    }
    expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { maxQueued: 0 })).not.toThrow();
  });
});

describe('replayed frames under security', () => {
  const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };

  it('with replayWindowMs, a broadcast a man in the middle sends twice is delivered once and reported as HYP_E_WS_REPLAY', async () => {
    const served = await hub({ security: { keys } });
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'guarded', security: { ...keys, replayWindowMs: 30_000 } });
    const broadcasts: string[] = [];
    c.ws.on('message', (m) => {
      if (!m.channel) broadcasts.push(m.json<string>());
    });
    c.subscribe('feed');
    await c.ws.connect();
    await eventually(() => served.hub.subscribers('feed') === 1);
    f.tap = () => 'twice';
    served.hub.broadcast('b1');
    served.hub.publish('feed', 1);
    served.hub.broadcast('b2');
    await eventually(() => broadcasts.length >= 2 && c.got('feed').length >= 1);
    served.hub.publish('feed', 'end');
    await eventually(() => c.got('feed').includes('end'));
    expect(broadcasts).toEqual(['b1', 'b2']);
    expect(c.got('feed')).toEqual([1, 'end']);
    // b1's and b2's copies at least (other sealed frames the tap doubled meanwhile are refused too)
    expect(c.errors.filter((e) => e.code === 'HYP_E_WS_REPLAY').length).toBeGreaterThanOrEqual(2);
    expect(c.errors.filter((e) => e.code !== 'HYP_E_WS_REPLAY')).toEqual([]);
  });

  it('without replayWindowMs, nothing changes: the duplicated broadcast is delivered twice (the limitation the option lifts)', async () => {
    const served = await hub({ security: { keys } });
    const f = await frontOf(served);
    const c = client(f.url, { clientId: 'plain', security: keys });
    const broadcasts: string[] = [];
    c.ws.on('message', (m) => broadcasts.push(m.json<string>()));
    await c.ws.connect();
    await eventually(() => served.hub.client('plain') !== undefined);
    f.tap = () => 'twice';
    served.hub.broadcast('b1');
    await eventually(() => broadcasts.length === 2);
    expect(broadcasts).toEqual(['b1', 'b1']);
  });

  it('the guard refuses a stamp outside the window and a nonce seen before, forgets after two windows, and fails closed when full', () => {
    let now = 1_000_000;
    const ns = (ms: number) => BigInt(ms) * 1_000_000n;
    const guard = new ClientReplayGuard({ windowMs: 1_000, maxEntries: 2, now: () => now });
    const nonce = (n: number) => new Uint8Array(12).fill(n);
    expect(() => guard.check(nonce(1), ns(now - 1_001))).toThrow(/outside the replay window/);
    expect(() => guard.check(nonce(1), ns(now + 1_001))).toThrow(/outside the replay window/);
    expect(() => guard.check(nonce(1), 0n)).toThrow(/no timestamp/);
    guard.check(nonce(1), ns(now));
    expect(() => guard.check(nonce(1), ns(now))).toThrow(/seen before/);
    now += 2_001;
    guard.check(nonce(1), ns(now)); // forgotten after two windows: its stamp is out of the window anyway
    guard.check(nonce(2), ns(now));
    guard.check(nonce(3), ns(now + 1)); // full: nonce 1 forgotten early
    expect(guard.size).toBe(2);
    expect(() => guard.check(nonce(4), ns(now))).toThrow(/cache is full/);
    guard.check(nonce(5), ns(now + 2));
  });

  it('replayWindowMs and replayCacheSize must be positive integers (RangeError)', () => {
    for (const security of [
      { ...keys, replayWindowMs: 0 },
      { ...keys, replayWindowMs: -5 },
      { ...keys, replayWindowMs: 1_000, replayCacheSize: 0 },
    ]) {
      expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { security })).toThrow(RangeError);
    }
  });
});
