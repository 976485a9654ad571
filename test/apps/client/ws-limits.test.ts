/**
 * The client's own bounds: incoming message size, the backlog of frames
 * waiting for WebCrypto, and publishes caught by a close while being sealed.
 * Raw `ws` servers in-process, loopback only.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { WebSocket as WsWebSocket } from 'ws';
import {
  ClientSecurity,
  type HypErrorFrame,
  HypWebSocket,
  type SocketConstructor,
} from '../../../apps/client/index.js';
import { jsonCodec } from '../../../apps/server/ws/codecs/index.js';
import { envelope } from '../../../apps/server/ws/envelope.js';
import { eventually } from '../server/ws/helpers.js';
import { frame, type RawServer, rawServer } from './raw-server.js';

let raw: RawServer | undefined;
const open: HypWebSocket[] = [];
afterEach(async () => {
  for (const c of open.splice(0)) c.close();
  await raw?.close();
  raw = undefined;
  vi.restoreAllMocks();
});

function client(url: string, options: ConstructorParameters<typeof HypWebSocket>[1] = {}): HypWebSocket {
  const c = new HypWebSocket(url, options);
  open.push(c);
  return c;
}

/** A JSON delivery whose encoded frame is exactly `size` bytes (JSON data is inlined). */
function frameOfSize(size: number, channel = 'big'): string {
  const data = (n: number) => new TextEncoder().encode(JSON.stringify('x'.repeat(n)));
  const base = frame({ type: 'message', channel, data: data(0) });
  const f = frame({ type: 'message', channel, data: data(size - base.length) });
  if (f.length !== size) throw new Error(`frame of ${f.length} bytes, not ${size}`);
  return f;
}

/** `ws`'s WebSocket as a browser sees it: the constructor takes no options (no maxPayload). */
const BrowserLike = class extends WsWebSocket {
  constructor(url: string, protocols?: string | string[]) {
    super(url, protocols);
  }
} as unknown as SocketConstructor;

describe('incoming message size (maxMessageSize)', () => {
  it('on Node (`ws`), a larger message closes the connection with 1009 and is reported as HYP_E_WS_TOO_LARGE', async () => {
    const fits = frameOfSize(1024);
    const serverSaw: number[] = [];
    raw = await rawServer((ws, i) => {
      ws.on('close', (code) => serverSaw.push(code));
      if (i === 0) {
        ws.send(fits);
        ws.send(`${fits} `); // 1025 bytes
      }
    });
    const c = client(raw.url, {
      WebSocket: WsWebSocket as unknown as SocketConstructor,
      maxMessageSize: 1024,
      reconnect: { enabled: false },
    });
    const errors: HypErrorFrame[] = [];
    const closes: number[] = [];
    let delivered = 0;
    c.on('error', (e) => errors.push(e));
    c.on('close', (code) => closes.push(code));
    c.on('message', () => delivered++);
    await c.connect();
    await eventually(() => closes.length === 1, 5_000);
    expect(closes[0]).toBe(1009);
    await eventually(() => serverSaw.length === 1, 5_000);
    expect(serverSaw).toEqual([1009]);
    expect(delivered).toBe(1);
    expect(errors).toHaveLength(1);
    expect(errors[0]!.code).toBe('HYP_E_WS_TOO_LARGE');
    expect(errors[0]!.message).toMatch(/1024/);
  });

  it('defaults to 1 MiB, twice the hub default', async () => {
    raw = await rawServer((ws) => ws.send(frameOfSize(1024 * 1024 + 1)));
    const c = client(raw.url, {
      WebSocket: WsWebSocket as unknown as SocketConstructor,
      reconnect: { enabled: false },
    });
    const errors: HypErrorFrame[] = [];
    const closes: number[] = [];
    let delivered = 0;
    c.on('error', (e) => errors.push(e));
    c.on('close', (code) => closes.push(code));
    c.on('message', () => delivered++);
    await c.connect();
    await eventually(() => closes.length === 1, 5_000);
    expect(closes[0]).toBe(1009);
    expect(delivered).toBe(0);
    expect(errors.map((e) => e.code)).toEqual(['HYP_E_WS_TOO_LARGE']);
  });

  it('where the socket cannot limit it (browsers), a larger message is dropped and reported; the connection stays usable', async () => {
    const big = frameOfSize(2048, 'news');
    raw = await rawServer((ws) => {
      ws.send(big);
      ws.send(frame({ type: 'message', channel: 'news', data: new TextEncoder().encode('"after"') }));
    });
    const c = client(raw.url, {
      WebSocket: BrowserLike,
      maxMessageSize: 1024,
      reconnect: { enabled: false },
    });
    const errors: HypErrorFrame[] = [];
    const closes: number[] = [];
    const texts: string[] = [];
    c.on('error', (e) => errors.push(e));
    c.on('close', (code) => closes.push(code));
    c.on('message', (m) => texts.push(m.text()));
    await c.connect();
    await eventually(() => texts.length === 1, 5_000);
    expect(texts).toEqual(['"after"']);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toMatchObject({ code: 'HYP_E_WS_TOO_LARGE' });
    expect(errors[0]!.message).toMatch(/2048.*1024|1024/);
    expect(closes).toEqual([]);
    expect(c.connected).toBe(true);
  });

  it('an invalid maxMessageSize throws from the constructor', () => {
    for (const bad of [0, -1, 1.5, Number.NaN]) {
      expect(() => new HypWebSocket('ws://127.0.0.1:1/ws', { maxMessageSize: bad }), String(bad)).toThrow(
        RangeError,
      );
    }
  });
});

describe('publishes caught by a close while being sealed', () => {
  it('are reported (HYP_E_WS_SEAL, with the channel), never silently lost; later publishes go out', async () => {
    const keys = { aesKey: randomBytes(32), hmacKey: randomBytes(32) };
    const opener = new ClientSecurity(keys);
    const received: string[][] = [];
    raw = await rawServer((ws) => {
      const frames: string[] = [];
      received.push(frames);
      // Opened one after another: WebCrypto may settle concurrent opens out of order.
      let opened = Promise.resolve();
      ws.on('message', (data: Buffer) => {
        opened = opened.then(async () => {
          const m = jsonCodec.unmarshal(await opener.open(new Uint8Array(data)));
          if (m.type === 'publish') frames.push(Buffer.from(m.data).toString());
        });
      });
    });
    const c = client(raw.url, { security: keys, reconnect: { initialDelayMs: 1, maxDelayMs: 1 } });
    const errors: HypErrorFrame[] = [];
    c.on('error', (e) => errors.push(e));
    await c.connect();
    let opens = 0;
    c.on('open', () => opens++);
    c.publish('news', 'a');
    c.publish('news', 'b');
    // the socket closes while 'a' and 'b' are being sealed
    (c as unknown as { socket: { close(): void } }).socket.close();
    c.publish('news', 'c');
    await eventually(() => opens === 1 && errors.length === 2, 5_000);
    c.publish('news', 'd');
    await eventually(() => (received[1]?.length ?? 0) >= 2, 5_000);
    expect(errors.map((e) => [e.code, e.channel])).toEqual([
      ['HYP_E_WS_SEAL', 'news'],
      ['HYP_E_WS_SEAL', 'news'],
    ]);
    expect(received[0]).toEqual([]);
    expect(received[1]).toEqual(['"c"', '"d"']);
  });
});

describe('the backlog of frames waiting for WebCrypto', () => {
  it('past maxPendingMessages the connection closes (4008, HYP_E_WS_BACKLOG); the resume offset recovers every delivery once', async () => {
    const keys = { hmacKey: randomBytes(32) };
    const sealer = new ClientSecurity(keys);
    const total = 20;
    const sealed: Uint8Array[] = [];
    for (let i = 1; i <= total; i++) {
      sealed.push(
        await sealer.seal(
          jsonCodec.marshal(
            envelope({
              type: 'message',
              channel: 'news',
              offset: `e:${i}`,
              data: new TextEncoder().encode(String(i)),
            }),
          ),
        ),
      );
    }
    const realOpen = ClientSecurity.prototype.open;
    const resumedFrom: string[] = [];
    raw = await rawServer((ws) => {
      ws.on('message', (data: Buffer) => {
        // the real open: the client's is held below
        void realOpen.call(sealer, new Uint8Array(data)).then((plain) => {
          const m = jsonCodec.unmarshal(plain);
          if (m.type !== 'subscribe') return;
          const { offset } = jsonCodec.decodeChannelRequest(m.data);
          resumedFrom.push(offset ?? '');
          // a hub's history: everything after the offset, in order
          const after = offset ? Number(offset.split(':')[1]) : 0;
          for (const f of sealed.slice(after)) ws.send(f);
        });
      });
    });
    // hold every open until released: frames pile up as if WebCrypto were slow
    let release: () => void = () => {};
    let gate = new Promise<void>((r) => {
      release = r;
    });
    vi.spyOn(ClientSecurity.prototype, 'open').mockImplementation(async function (this: ClientSecurity, b) {
      await gate;
      return realOpen.call(this, b);
    });
    const c = client(raw.url, {
      security: keys,
      maxPendingMessages: 5,
      reconnect: { initialDelayMs: 1, maxDelayMs: 1 },
    });
    const errors: HypErrorFrame[] = [];
    const closes: Array<[number, string]> = [];
    const got: string[] = [];
    c.on('error', (e) => errors.push(e));
    c.on('close', (code, reason) => closes.push([code, reason]));
    c.subscribe('news', (m) => got.push(m.text()));
    await c.connect();
    await eventually(() => closes.length === 1, 5_000);
    expect(closes[0]![0]).toBe(4008);
    expect(closes[0]![1]).toMatch(/backlog/);
    expect(errors.map((e) => e.code)).toEqual(['HYP_E_WS_BACKLOG']);
    expect(errors[0]!.message).toMatch(/5 frames/);
    // WebCrypto catches up; from now on frames are opened as they come
    release();
    gate = Promise.resolve();
    await eventually(() => got.length >= total, 5_000);
    expect(got).toEqual(Array.from({ length: total }, (_, i) => String(i + 1)));
    // each reconnect waited for the admitted frames, then resumed after the last of them (the
    // replay may overflow again: real WebCrypto is slower than a burst on loopback)
    expect(resumedFrom.slice(0, 2)).toEqual(['', 'e:5']);
    const seqs = resumedFrom.slice(1).map((o) => Number(o.split(':')[1]));
    for (let i = 1; i < seqs.length; i++) expect(seqs[i]!).toBeGreaterThan(seqs[i - 1]!);
    for (const [code] of closes) expect(code).toBe(4008);
    expect(errors.every((e) => e.code === 'HYP_E_WS_BACKLOG')).toBe(true);
    expect(c.offset('news')).toBe(`e:${total}`);
  });

  it('past maxPendingBytes likewise', async () => {
    const keys = { hmacKey: randomBytes(32) };
    const sealer = new ClientSecurity(keys);
    const one = await sealer.seal(
      jsonCodec.marshal(envelope({ type: 'message', channel: 'news', data: randomBytes(1000) })),
    );
    raw = await rawServer((ws, i) => {
      if (i === 0) for (let n = 0; n < 10; n++) ws.send(one);
    });
    let release: () => void = () => {};
    const gate = new Promise<void>((r) => {
      release = r;
    });
    const realOpen = ClientSecurity.prototype.open;
    vi.spyOn(ClientSecurity.prototype, 'open').mockImplementation(async function (this: ClientSecurity, b) {
      await gate;
      return realOpen.call(this, b);
    });
    const c = client(raw.url, { security: keys, maxPendingBytes: 4096, reconnect: { enabled: false } });
    const errors: HypErrorFrame[] = [];
    const closes: number[] = [];
    c.on('error', (e) => errors.push(e));
    c.on('close', (code) => closes.push(code));
    await c.connect();
    await eventually(() => closes.length === 1, 5_000);
    release();
    expect(closes[0]).toBe(4008);
    expect(errors.map((e) => e.code)).toEqual(['HYP_E_WS_BACKLOG']);
    expect(errors[0]!.message).toMatch(/4096/);
  });
});
