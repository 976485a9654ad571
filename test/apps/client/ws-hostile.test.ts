/**
 * The client against a misbehaving server (or proxy): a raw `ws` server that
 * speaks the wire format and does what a hub never should.
 */
import { afterEach, describe, expect, it, vi } from 'vitest';
import { HypWebSocket } from '../../../apps/client/index.js';
import { eventually, type Served, serveHub } from '../server/ws/helpers.js';
import { frame, type RawServer, rawServer } from './raw-server.js';

let raw: RawServer | undefined;
let served: Served | undefined;
const open: HypWebSocket[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  await raw?.close();
  raw = undefined;
  await served?.close();
  served = undefined;
});

function client(url: string, options: ConstructorParameters<typeof HypWebSocket>[1] = {}): HypWebSocket {
  const c = new HypWebSocket(url, options);
  open.push(c);
  return c;
}

/** Lets everything already queued (events, timers due now) run. */
function tick(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

describe('drain hints from a hostile close reason', () => {
  for (const reason of [
    'reconnect;delay=99999999999',
    `reconnect;delay=${'9'.repeat(100)}`,
    'reconnect;delay=2147483648',
  ]) {
    it(`${reason.slice(0, 40)}: the wait is capped (a timer over 2^31-1 ms would fire at once)`, async () => {
      raw = await rawServer((ws) => ws.close(1001, reason));
      const c = client(raw.url, { reconnect: { initialDelayMs: 10, maxDelayMs: 10 } });
      const delays: number[] = [];
      c.on('reconnecting', (_a, d) => {
        delays.push(d);
        c.close();
      });
      await c.connect();
      await eventually(() => delays.length === 1);
      expect(Number.isFinite(delays[0])).toBe(true);
      expect(delays[0]).toBeLessThanOrEqual(60_000 + 10);
      expect(delays[0]).toBeGreaterThanOrEqual(60_000);
    });
  }

  it('a hint with extra fields after the delay is still honoured', async () => {
    raw = await rawServer((ws) => ws.close(1001, 'reconnect;delay=500;region=eu'));
    const c = client(raw.url, { reconnect: { initialDelayMs: 10, maxDelayMs: 10 } });
    const delays: number[] = [];
    c.on('reconnecting', (_a, d) => {
      delays.push(d);
      c.close();
    });
    await c.connect();
    await eventually(() => delays.length === 1);
    expect(delays[0]).toBeGreaterThanOrEqual(500);
  });

  it('garbage, negative and NaN hints are ignored (plain backoff)', async () => {
    const reasons = [
      'reconnect;delay=-5',
      'reconnect;delay=NaN',
      'reconnect;delay=1e309',
      'reconnect;delay=',
    ];
    raw = await rawServer((ws, i) => ws.close(1001, reasons[i] ?? 'bye'));
    const c = client(raw.url, { reconnect: { initialDelayMs: 1, maxDelayMs: 1 } });
    const delays: number[] = [];
    c.on('reconnecting', (_a, d) => {
      delays.push(d);
      if (delays.length === reasons.length) c.close();
    });
    await c.connect();
    await eventually(() => delays.length === reasons.length);
    for (const d of delays) expect(d).toBeLessThanOrEqual(1);
  });
});

describe('a server that accepts and then closes at once, every time', () => {
  it('the backoff keeps growing (a connection that dies at once is a failed attempt): no reconnect storm', async () => {
    raw = await rawServer((ws) => ws.close(1011, 'boom'));
    const c = client(raw.url, { reconnect: { initialDelayMs: 1, maxDelayMs: 4 } });
    const attempts: number[] = [];
    c.on('reconnecting', (a) => {
      attempts.push(a);
      if (attempts.length === 5) c.close();
    });
    await c.connect();
    await eventually(() => attempts.length === 5);
    expect(attempts).toEqual([1, 2, 3, 4, 5]);
  });

  it('a connection that lived long enough resets the backoff', async () => {
    raw = await rawServer((ws, i) => {
      if (i !== 2) ws.close(1011, 'boom');
    });
    const c = client(raw.url, { reconnect: { initialDelayMs: 1, maxDelayMs: 4 } });
    const attempts: number[] = [];
    c.on('reconnecting', (a) => {
      attempts.push(a);
      if (attempts.length === 4) c.close();
    });
    await c.connect();
    await eventually(() => raw!.connections.length === 3 && c.connected);
    // only the monotonic clock is faked: the third connection "lasts" an hour
    const now = performance.now.bind(performance);
    const fake = vi.spyOn(performance, 'now').mockImplementation(() => now() + 3_600_000);
    try {
      raw.connections[2]!.close(1011, 'boom');
      for (let i = 0; i < 500 && attempts.length < 4; i++) await new Promise((r) => setTimeout(r, 10));
    } finally {
      fake.mockRestore();
    }
    expect(attempts).toEqual([1, 2, 1, 2]);
  });
});

describe('close code 4000 (replaced by a newer connection with the same client id)', () => {
  it('the replaced client stops reconnecting, so two clients with one id do not evict each other forever', async () => {
    served = await serveHub();
    const first = client(served.url, { clientId: 'twin', reconnect: { initialDelayMs: 1, maxDelayMs: 4 } });
    const closes: number[] = [];
    let reconnects = 0;
    first.on('close', (code) => closes.push(code));
    first.on('reconnecting', () => reconnects++);
    await first.connect();
    const second = client(served.url, { clientId: 'twin', reconnect: { initialDelayMs: 1, maxDelayMs: 4 } });
    await second.connect();
    await eventually(() => closes.length >= 1);
    await tick();
    expect(closes).toEqual([4000]);
    expect(reconnects).toBe(0);
    expect(second.connected).toBe(true);
  });
});

describe('deliveries with offsets going backwards or repeating', () => {
  it('duplicates and older offsets of the same history are dropped, and the resume offset never goes back', async () => {
    const m = (offset: string, n: number) =>
      frame({ type: 'message', channel: 'feed', data: Buffer.from(String(n)), offset });
    raw = await rawServer((ws, i) => {
      if (i > 0) return;
      ws.send(frame({ type: 'subscribed', channel: 'feed', offset: 'e:0' }));
      for (const f of [m('e:1', 1), m('e:2', 2), m('e:2', 2), m('e:1', 1), m('e:3', 3)]) ws.send(f);
      // pod-wide / redis style offsets on another channel
      ws.send(frame({ type: 'message', channel: 'feed', data: Buffer.from('4'), offset: 'e:4' }));
      ws.send(frame({ type: 'message', channel: 'feed', data: Buffer.from('5'), offset: 'e:4' }));
    });
    const c = client(raw.url, { reconnect: { initialDelayMs: 1, maxDelayMs: 1 } });
    const got: number[] = [];
    c.subscribe('feed', (msg) => got.push(msg.json<number>()));
    await c.connect();
    await eventually(() => got.length >= 4);
    await tick();
    expect(got).toEqual([1, 2, 3, 4]);
    expect(c.offset('feed')).toBe('e:4');
    // the resubscribe after a drop resumes from the newest offset seen
    raw.connections[0]!.terminate();
    await eventually(() => (raw!.received[1] ?? []).some((f) => f.type === 'subscribe'));
    const sub = raw.received[1]!.find((f) => f.type === 'subscribe')!;
    expect(JSON.parse(sub.data)).toEqual({ channel: 'feed', offset: 'e:4' });
  });

  it('stream-id offsets (ms-seq) compare numerically; an offset of another epoch is taken as is', async () => {
    const m = (offset: string, n: number) =>
      frame({ type: 'message', channel: 'feed', data: Buffer.from(String(n)), offset });
    const epoch = '18446744073709551999';
    raw = await rawServer((ws) => {
      for (const f of [
        m('9-1', 1),
        m('10-0', 2),
        m('9-5', 0),
        m('10-0', 0),
        m('10-1', 3),
        m(`${epoch}-7`, 4),
        m(`${epoch}-6`, 0),
        m(`${epoch}-8`, 5),
      ])
        ws.send(f);
    });
    const c = client(raw.url, { reconnect: { enabled: false } });
    const got: number[] = [];
    c.subscribe('feed', (msg) => got.push(msg.json<number>()));
    await c.connect();
    await eventually(() => got.length >= 5);
    await tick();
    expect(got).toEqual([1, 2, 3, 4, 5]);
    expect(c.offset('feed')).toBe(`${epoch}-8`);
  });
});

describe('a subprotocol other than the one offered', () => {
  it('an answer without the codec offered fails the handshake (ws, undici and browsers alike): backoff grows, nothing is sent', async () => {
    raw = await rawServer(() => {}, { handleProtocols: () => false });
    const c = client(raw.url, { codec: 'protobuf', reconnect: { initialDelayMs: 1, maxDelayMs: 4 } });
    const attempts: number[] = [];
    let opens = 0;
    c.on('open', () => opens++);
    c.on('reconnecting', (a) => {
      attempts.push(a);
      if (attempts.length === 3) c.close();
    });
    c.publish('news', 'x');
    // connect() settles on the first good open or when the client gives up (or close()): here the latter
    c.connect().catch(() => {});
    await eventually(() => attempts.length === 3);
    expect(attempts).toEqual([1, 2, 3]);
    expect(opens).toBe(0);
    expect(raw.received.flat()).toEqual([]);
  });
});

describe('close() and connect() races', () => {
  it('close() before the first open settles connect() (it hung) and opens nothing', async () => {
    raw = await rawServer(() => {});
    const c = client(raw.url);
    const p = c.connect();
    c.close();
    const outcome = await Promise.race([
      p.then(
        () => 'resolved',
        (e: Error) => e.message,
      ),
      new Promise<string>((resolve) => setTimeout(() => resolve('pending'), 2_000)),
    ]);
    expect(outcome).toMatch(/closed/);
    expect(c.connected).toBe(false);
  });

  it('close() during a reconnect wait settles a pending connect()', async () => {
    const c = client('ws://127.0.0.1:1/ws', { reconnect: { initialDelayMs: 60_000, maxDelayMs: 60_000 } });
    const p = c.connect();
    const settled = p.then(
      () => 'resolved',
      (e: Error) => e.message,
    );
    await new Promise<void>((resolve) => c.on('reconnecting', () => resolve()));
    c.close();
    const outcome = await Promise.race([
      settled,
      new Promise<string>((resolve) => setTimeout(() => resolve('pending'), 2_000)),
    ]);
    expect(outcome).toMatch(/closed/);
  });

  it('connect() while connected or connecting does not open a second socket (duplicate deliveries)', async () => {
    raw = await rawServer(() => {});
    const c = client(raw.url);
    const both = Promise.all([c.connect(), c.connect()]).then(() => 'resolved');
    const outcome = await Promise.race([
      both,
      new Promise<string>((resolve) => setTimeout(() => resolve('pending'), 2_000)),
    ]);
    expect(outcome).toBe('resolved');
    await c.connect();
    expect(raw.connections).toHaveLength(1);
  });
});
