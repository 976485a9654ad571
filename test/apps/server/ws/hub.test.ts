import { request } from 'node:http';
import { describe, expect, it, vi } from 'vitest';
import { codecs } from '../../../../apps/server/ws/codecs/index.js';
import { HypError } from '../../../../supervisor/errors.js';
import { eventually, HubTestBed, json, type Served, TestClient, text } from './helpers.js';

const bed = new HubTestBed();
let served: Served | undefined;

const connect = bed.connect;

function upgradeStatus(
  url: string,
  headers: Record<string, string>,
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = request(url.replace('ws:', 'http:'), {
      headers: {
        Connection: 'Upgrade',
        Upgrade: 'websocket',
        'Sec-WebSocket-Version': '13',
        'Sec-WebSocket-Key': 'dGhlIHNhbXBsZSBub25jZQ==',
        ...headers,
      },
    });
    req.on('upgrade', (res, socket) => {
      socket.destroy();
      resolve({ status: res.statusCode ?? 0, body: String(res.headers['sec-websocket-protocol'] ?? '') });
    });
    req.on('response', (res) => {
      let body = '';
      res.on('data', (d: Buffer) => (body += d));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('codecs on one channel', () => {
  it('a JSON publish reaches a JSON, a protobuf, a flatbuffers and a msgpack subscriber, each in its own format', async () => {
    served = await bed.serve();
    const subs = await Promise.all(codecs.map((c) => connect(c.name)));
    for (const s of subs) s.subscribe('news');
    await Promise.all(subs.map((s) => s.nextOf('subscribed')));
    const publisher = await connect('json');
    publisher.send({ type: 'publish', channel: 'news', data: Buffer.from('{"headline":"hi"}') });
    for (const s of subs) {
      const [m] = await s.nextOf('message');
      expect(m!.channel).toBe('news');
      expect(json(m!)).toEqual({ headline: 'hi' });
      expect(m!.clientId).toBe(served.hub.client(m!.clientId)?.id);
      expect(m!.timestamp).toBeGreaterThan(0n);
      const frame = s.frames.at(-1)!;
      expect(frame.binary).toBe(s.codec.frame === 'binary');
      expect(s.codec.unmarshal(frame.bytes).type).toBe('message');
    }
    expect(publisher.of('message')).toEqual([]);
  });

  it('negotiates the subprotocol: first enabled codec offered, none (JSON) for unknown offers', async () => {
    served = await bed.serve({ codecs: ['json', 'msgpack'] });
    const a = await connect('msgpack', { protocols: ['protobuf', 'msgpack'] });
    expect(a.ws.protocol).toBe('msgpack');
    const b = await connect('json', { protocols: [] });
    expect(b.ws.protocol).toBe('');
    b.subscribe('x');
    expect((await b.nextOf('subscribed'))[0]!.channel).toBe('x');
    // an unknown offer is answered without a subprotocol (the connection speaks JSON)
    const unknown = await upgradeStatus(served.url, { 'Sec-WebSocket-Protocol': 'soap, wamp' });
    expect(unknown.status).toBe(101);
  });

  it('a server-side publish is marshalled once per codec and sealed once, whatever the subscriber count', async () => {
    served = await bed.serve();
    const subs = await Promise.all(codecs.flatMap((c) => Array.from({ length: 5 }, () => connect(c.name))));
    for (const s of subs) s.subscribe('fan');
    await Promise.all(subs.map((s) => s.nextOf('subscribed')));
    const spies = codecs.map((c) => vi.spyOn(c, 'marshal'));
    served.hub.publish('fan', { n: 1 });
    served.hub.broadcast({ n: 2 });
    await Promise.all(subs.map((s) => s.nextOf('message', 2)));
    for (const spy of spies) expect(spy).toHaveBeenCalledTimes(2);
  });
});

describe('upgrade checks', () => {
  it('refuses a foreign origin with 403 HYP_E_WS_ORIGIN; same host and no Origin pass by default', async () => {
    served = await bed.serve();
    const host = new URL(served.url).host;
    const foreign = await upgradeStatus(served.url, { Origin: 'http://evil.example' });
    expect(foreign.status).toBe(403);
    expect(JSON.parse(foreign.body).error.code).toBe('HYP_E_WS_ORIGIN');
    expect((await upgradeStatus(served.url, { Origin: `http://${host}` })).status).toBe(101);
    expect((await upgradeStatus(served.url, {})).status).toBe(101);
  });

  it('an allow-list admits exactly its origins; "*" admits any', async () => {
    served = await bed.serve({ allowedOrigins: ['https://app.example'] });
    expect((await upgradeStatus(served.url, { Origin: 'https://app.example' })).status).toBe(101);
    expect((await upgradeStatus(served.url, { Origin: 'https://other.example' })).status).toBe(403);
    await served.close();
    served = await bed.serve({ allowedOrigins: ['*'] });
    expect((await upgradeStatus(served.url, { Origin: 'https://other.example' })).status).toBe(101);
  });

  it('the authorize hook answers 401 or 403, or accepts and names the client', async () => {
    served = await bed.serve({
      authorize: async (req) => {
        const token = req.headers.authorization;
        if (!token) throw new HypError('HYP_E_WS_UNAUTHORIZED');
        if (token !== 'Bearer good') return false;
        return { clientId: 'alice', metadata: { role: 'admin' } };
      },
    });
    const none = await upgradeStatus(served.url, {});
    expect(none.status).toBe(401);
    expect(JSON.parse(none.body).error.code).toBe('HYP_E_WS_UNAUTHORIZED');
    expect((await upgradeStatus(served.url, { Authorization: 'Bearer bad' })).status).toBe(403);
    const ok = await connect('json', { headers: { Authorization: 'Bearer good' } });
    await eventually(() => served!.hub.clients() === 1);
    expect(served.hub.client('alice')?.get('role')).toBe('admin');
    await ok.close();
  });

  it('takes the client id from X-Client-ID, then ?client_id=, else generates one', async () => {
    served = await bed.serve();
    await connect('json', { headers: { 'X-Client-ID': 'from-header' } });
    bed.clients.push(await TestClient.connect(`${served.url}?client_id=from-query`));
    await connect('json');
    await eventually(() => served!.hub.clients() === 3);
    expect(served.hub.client('from-header')).toBeDefined();
    expect(served.hub.client('from-query')).toBeDefined();
  });

  it('a draining hub refuses upgrades with 503', async () => {
    served = await bed.serve();
    void served.hub.drain({ spreadMs: 0 });
    expect((await upgradeStatus(served.url, {})).status).toBe(503);
  });
});

describe('control messages', () => {
  it('unsubscribe stops deliveries; rooms get presence events and toRoom honours except', async () => {
    served = await bed.serve();
    const a = await connect('json', { headers: { 'X-Client-ID': 'a' } });
    const b = await connect('msgpack', { headers: { 'X-Client-ID': 'b' } });
    a.subscribe('c');
    await a.nextOf('subscribed');
    a.send({ type: 'unsubscribe', data: Buffer.from('{"channel":"c"}') });
    await eventually(() => served!.hub.subscribers('c') === 0);
    served.hub.publish('c', 1);
    a.join('lobby');
    await eventually(() => served!.hub.members('lobby').length === 1);
    b.join('lobby');
    const isB = (m: Parameters<typeof json>[0]) => (json(m) as { client_id?: string }).client_id === 'b';
    await a.until((c) => c.of('presence').some(isB));
    expect(json(a.of('presence').find(isB)!)).toEqual({ event: 'join', room_id: 'lobby', client_id: 'b' });
    expect(served.hub.members('lobby').sort()).toEqual(['a', 'b']);
    served.hub.toRoom('lobby', 'hello', { except: 'a' });
    await b.nextOf('message');
    expect(text(b.of('message')[0]!)).toBe('"hello"');
    b.send({ type: 'presence', data: Buffer.from('{"room_id":"lobby"}') });
    await b.until((c) => c.of('presence').some((m) => 'members' in (json(m) as object)));
    await b.close();
    await a.until((c) => c.of('presence').some((m) => (json(m) as { event?: string }).event === 'leave'));
    expect(a.of('message')).toEqual([]);
  });

  it('sendTo reaches one client; broadcast reaches all', async () => {
    served = await bed.serve();
    const a = await connect('json', { headers: { 'X-Client-ID': 'a' } });
    const b = await connect('protobuf', { headers: { 'X-Client-ID': 'b' } });
    await eventually(() => served!.hub.clients() === 2);
    expect(served.hub.sendTo('b', { secret: 1 })).toBe(true);
    await b.nextOf('message');
    b.send({ type: 'broadcast', data: Buffer.from('"all"') });
    await a.nextOf('message');
    await b.nextOf('message', 2);
    expect(text(a.of('message')[0]!)).toBe('"all"');
    expect(a.of('message')[0]!.clientId).toBe('b');
  });

  it('an undecodable frame gets an error frame with the code and byte offset; N of them close the connection with 1008', async () => {
    served = await bed.serve({ security: undefined });
    const c = await connect('json');
    c.ws.send('{"type":"x",}');
    const [err] = await c.nextOf('error');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_DECODE', offset: 12 });
    for (let i = 0; i < 4; i++) c.ws.send('nope');
    await c.until((x) => x.closed !== undefined);
    expect(c.closed!.code).toBe(1008);
  });

  it('a bad control request answers HYP_E_WS_CONTROL and keeps the connection', async () => {
    served = await bed.serve();
    const c = await connect('json');
    c.send({ type: 'subscribe', data: Buffer.from('{"chan":"x"}') });
    const [err] = await c.nextOf('error');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_CONTROL' });
    c.subscribe('ok');
    await c.nextOf('subscribed');
  });

  it('a message over max_message_size closes with 1009', async () => {
    served = await bed.serve({ maxMessageSize: 1024 });
    const c = await connect('json');
    c.ws.send(JSON.stringify({ type: 'publish', channel: 'x', data: 'y'.repeat(2000) }));
    await c.until((x) => x.closed !== undefined);
    expect(c.closed!.code).toBe(1009);
  });

  it('message callbacks see every verified message with the server-stamped client id', async () => {
    served = await bed.serve();
    const seen: string[] = [];
    served.hub.onMessage((client, m) => seen.push(`${client.id}:${m.type}:${m.clientId}`));
    const c = await connect('json', { headers: { 'X-Client-ID': 'me' } });
    c.send({ type: 'chat', clientId: 'spoofed', data: Buffer.from('1') });
    await eventually(() => seen.length === 1);
    expect(seen).toEqual(['me:chat:me']);
  });
});

describe('liveness and backpressure', () => {
  it('a client that stops answering pings is cut off after pong_timeout', async () => {
    served = await bed.serve({ pingIntervalMs: 100, pongTimeoutMs: 200 });
    const silent = await connect('json', { autoPong: false });
    const alive = await connect('json');
    await silent.until((c) => c.closed !== undefined);
    await eventually(() => served!.hub.clients() === 1);
    expect(alive.closed).toBeUndefined();
  });

  it('a slow reader is cut off by the send-buffer bound (close policy) and the drop is counted', async () => {
    served = await bed.serve({ sendBufferLimit: 256 * 1024 });
    const slow = await connect('json');
    slow.subscribe('firehose');
    await slow.nextOf('subscribed');
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const big = { blob: 'x'.repeat(32 * 1024) };
    for (let i = 0; i < 2_000 && served.hub.clients() > 0; i++) {
      served.hub.publish('firehose', big);
      await new Promise((r) => setImmediate(r));
    }
    expect(served.hub.clients()).toBe(0);
    const dropped = await served.hub.metrics.dropped.get();
    expect(dropped.values.find((v) => v.labels.reason === 'slow_consumer')?.value).toBeGreaterThan(0);
  });

  /**
   * A subscriber of `firehose` that reads nothing, under the drop policy
   * (64 KiB bound), and the hub publishing 32 KiB blobs to it until `drops`
   * of them were dropped (at most 2,000).
   */
  async function droppingReader(drops: number) {
    served = await bed.serve({ sendBufferLimit: 64 * 1024, slowConsumer: 'drop' });
    const hub = served.hub;
    const slow = await connect('json');
    slow.subscribe('firehose');
    await slow.nextOf('subscribed');
    (slow.ws as unknown as { _socket: { pause(): void } })._socket.pause();
    const droppedCount = async () =>
      (await hub.metrics.dropped.get()).values.find((v) => v.labels.reason === 'slow_consumer')?.value ?? 0;
    const blob = { blob: 'x'.repeat(32 * 1024) };
    for (let i = 0; i < 2_000 && (await droppedCount()) < drops; i++) {
      hub.publish('firehose', blob);
      await new Promise((r) => setImmediate(r));
    }
    return { slow, droppedCount };
  }

  it('the drop policy skips messages for a slow reader and keeps the connection', async () => {
    const { slow, droppedCount } = await droppingReader(10);
    expect(await droppedCount()).toBeGreaterThanOrEqual(10);
    expect(served!.hub.clients()).toBe(1);
    expect(slow.ws.readyState).toBe(slow.ws.OPEN);
  });

  it('the drop policy never drops a reply to the client (an acknowledgement): the connection is cut instead, so the client sends again', async () => {
    // fill what the client does not read, until deliveries are dropped
    const { slow } = await droppingReader(1);
    expect(served!.hub.clients()).toBe(1);
    // publishes asking for acknowledgements, more than the room left (one 32 KiB blob did not fit)
    for (let i = 0; i < 1_000; i++)
      slow.send({ type: 'publish', channel: 'other', id: `p${i}`, data: Buffer.from('{"a":1}') });
    // Before: the acknowledgement was dropped and the connection kept: the client waits out its timeout.
    await eventually(() => served!.hub.clients() === 0);
  });
});

describe('drain', () => {
  it('closes every client with 1001 and a reconnect hint, spread over the window', async () => {
    served = await bed.serve();
    const many = await Promise.all(Array.from({ length: 20 }, () => connect('json')));
    const closedAt: number[] = [];
    const start = Date.now();
    for (const c of many) c.ws.on('close', () => closedAt.push(Date.now() - start));
    await served.hub.drain({ spreadMs: 400, deadline: Date.now() + 10_000 });
    for (const c of many) {
      await c.until((x) => x.closed !== undefined);
      expect(c.closed!.code).toBe(1001);
      expect(c.closed!.reason).toMatch(/^reconnect;delay=\d+$/);
    }
    expect(new Set(closedAt.map((t) => Math.floor(t / 50))).size).toBeGreaterThan(1);
    expect(served.hub.clients()).toBe(0);
  });
});

describe('compression', () => {
  it('negotiates permessage-deflate when enabled', async () => {
    served = await bed.serve({ compression: { enabled: true, level: 1, threshold: 0 } });
    const c = await connect('json');
    expect(c.ws.extensions).toContain('permessage-deflate');
    c.subscribe('z');
    await c.nextOf('subscribed');
    served.hub.publish('z', { text: 'a'.repeat(5000) });
    const [m] = await c.nextOf('message');
    expect((json(m!) as { text: string }).text.length).toBe(5000);
  });
});
