import { describe, expect, it } from 'vitest';
import { HypWebSocket } from '../../../../apps/client/index.js';
import { LocalBus, LocalBusGroup } from '../../../../apps/server/ws/bus.js';
import { type Envelope, envelope } from '../../../../apps/server/ws/envelope.js';
import { History, type Recovery } from '../../../../apps/server/ws/history.js';
import type { HubClient } from '../../../../apps/server/ws/hub.js';
import { compareStreamIds, type SharedHistory } from '../../../../apps/server/ws/redis-history.js';
import { eventually, fakeLog, HubTestBed, json, type Served, serveHub, TestClient } from './helpers.js';

const bed = new HubTestBed();
let served: Served | undefined;

const connect = bed.connect;

describe('presence when a client id reconnects', () => {
  it('a room member replaced by a newer connection that never rejoins leaves the room once both are gone', async () => {
    served = await bed.serve();
    const watcher = await connect('json', { headers: { 'X-Client-ID': 'watcher' } });
    watcher.join('lobby');
    await eventually(() => served!.hub.members('lobby').includes('watcher'));
    const first = await connect('json', { headers: { 'X-Client-ID': 'x' } });
    first.join('lobby');
    await eventually(() => served!.hub.members('lobby').includes('x'));
    const second = await connect('json', { headers: { 'X-Client-ID': 'x' } });
    await first.until((c) => c.closed !== undefined);
    expect(first.closed!.code).toBe(4000);
    await second.close();
    await eventually(() => served!.hub.clients() === 1);
    expect(served.hub.members('lobby')).toEqual(['watcher']);
    const events = watcher.of('presence').map((m) => json(m) as { event?: string; client_id?: string });
    expect(events.filter((e) => e.client_id === 'x').map((e) => e.event)).toEqual(['join', 'leave']);
  });

  it('a replaced member that rejoined on its new connection stays in the room, without a leave event', async () => {
    served = await bed.serve();
    const watcher = await connect('json', { headers: { 'X-Client-ID': 'watcher' } });
    watcher.join('lobby');
    await eventually(() => served!.hub.members('lobby').includes('watcher'));
    const first = await connect('json', { headers: { 'X-Client-ID': 'x' } });
    first.join('lobby');
    await eventually(() => served!.hub.members('lobby').includes('x'));
    const second = await connect('json', { headers: { 'X-Client-ID': 'x' } });
    second.join('lobby');
    await first.until((c) => c.closed !== undefined);
    await eventually(() => served!.hub.clients() === 2);
    second.send({ type: 'presence', data: Buffer.from('{"room_id":"lobby"}') });
    await second.until((c) => c.of('presence').some((m) => 'members' in (json(m) as object)));
    expect(served.hub.members('lobby').sort()).toEqual(['watcher', 'x']);
    const events = watcher.of('presence').map((m) => json(m) as { event?: string; client_id?: string });
    expect(events.filter((e) => e.client_id === 'x').map((e) => e.event)).toEqual(['join']);
  });
});

describe('membership of a connection that is already gone', () => {
  it('subscribe and joinRoom from an async connect hook after the client left change nothing', async () => {
    served = await bed.serve();
    let gone: HubClient | undefined;
    served.hub.onDisconnect((c) => {
      gone = c;
    });
    const c = await connect('json', { headers: { 'X-Client-ID': 'brief' } });
    await c.close();
    await eventually(() => gone !== undefined);
    served.hub.subscribe(gone!, 'late');
    served.hub.joinRoom(gone!, 'late-room');
    expect(served.hub.subscribers('late')).toBe(0);
    expect(served.hub.members('late-room')).toEqual([]);
  });
});

describe('application callbacks', () => {
  it('an async message handler that rejects on bad client input is contained and logged', async () => {
    const log = fakeLog();
    served = await bed.serve({ log });
    const names: string[] = [];
    served.hub.onMessage(async (_client, m) => {
      await Promise.resolve();
      const body = JSON.parse(Buffer.from(m.data).toString()) as { user: { name: string } };
      names.push(body.user.name);
    });
    const c = await connect('json');
    c.ws.send('{"type":"chat","data":{}}');
    await eventually(() => log.error.mock.calls.length > 0);
    expect(log.error.mock.calls[0]![1]).toMatch(/callback/);
    // the connection and the hub carry on
    c.subscribe('still');
    await c.nextOf('subscribed');
  });

  it('async connect and disconnect handlers that reject are contained and logged', async () => {
    const log = fakeLog();
    served = await bed.serve({ log });
    served.hub.onConnect(async () => {
      throw new Error('connect failed');
    });
    served.hub.onDisconnect(async () => {
      throw new Error('disconnect failed');
    });
    const c = await connect('json');
    await c.close();
    await eventually(() => log.error.mock.calls.length >= 2);
  });
});

describe('History after a channel eviction', () => {
  it('a channel published again after its eviction never reuses an offset: an old offset fails explicitly', () => {
    const h = new History({ size: 10, maxChannels: 2, epoch: 'e' });
    const old = [1, 2, 3].map(() => h.append('a', envelope({})));
    // a client saw a's second message, then 'a' is evicted by two other channels
    h.append('b', envelope({}));
    h.append('c', envelope({}));
    const again = [1, 2, 3, 4, 5].map((n) => h.append('a', envelope({ data: new Uint8Array([n]) })));
    for (const o of again) expect(old).not.toContain(o);
    const r = h.since('a', old[1]!);
    expect(r).toMatchObject({ ok: false, reason: expect.stringMatching(/no longer in history/) });
    // an offset from this incarnation still replays exactly what follows it
    const fresh = h.since('a', again[1]!);
    expect(fresh.ok && fresh.messages.map((m) => m.data[0])).toEqual([3, 4, 5]);
  });

  it('a subscriber that saw the head of a never-published channel misses nothing once it is created', () => {
    const h = new History({ size: 10, epoch: 'e' });
    for (const ch of ['a', 'b', 'c']) h.append(ch, envelope({}));
    const head = h.head('fresh');
    h.append('other', envelope({}));
    h.append('fresh', envelope({ data: new Uint8Array([7]) }));
    const r = h.since('fresh', head);
    expect(r.ok && r.messages.map((m) => m.data[0])).toEqual([7]);
  });
});

/** A shared history whose recoveries answer only when the test says so. */
class ManualSharedHistory implements SharedHistory {
  private readonly handlers = new Set<(channel: string, message: Envelope) => void>();
  private readonly log: Array<{ channel: string; message: Envelope }> = [];
  private seq = 0;
  readonly pending: Array<{ channel: string; offset: string; answer: () => void }> = [];

  publish(channel: string, message: Envelope): void {
    const stored = { ...message, offset: `1-${++this.seq}` };
    this.log.push({ channel, message: stored });
    queueMicrotask(() => {
      for (const h of this.handlers) h(channel, { ...stored });
    });
  }

  onDelivery(handler: (channel: string, message: Envelope) => void): () => void {
    this.handlers.add(handler);
    return () => this.handlers.delete(handler);
  }

  recover(channel: string, offset: string): Promise<{ head: string; recovery: Recovery }> {
    return new Promise((resolve) => {
      this.pending.push({
        channel,
        offset,
        answer: () => {
          const all = this.log.filter((e) => e.channel === channel).map((e) => ({ ...e.message }));
          const head = all.at(-1)?.offset ?? '0-0';
          const messages = offset ? all.filter((m) => compareStreamIds(m.offset, offset) > 0) : [];
          resolve({ head, recovery: { ok: true, messages } });
        },
      });
    });
  }

  async ready(): Promise<void> {}
  async close(): Promise<void> {}
}

describe('recovery from a shared history', () => {
  it('resubscribing while a recovery is under way delivers each message once, in order', async () => {
    const shared = new ManualSharedHistory();
    served = await bed.serve({ sharedHistory: shared });
    served.hub.publish('ch', 'p1');
    const c = await connect('json');
    c.subscribe('ch', '0-0');
    await eventually(() => shared.pending.length === 1);
    c.send({ type: 'unsubscribe', data: Buffer.from('{"channel":"ch"}') });
    c.subscribe('ch');
    await eventually(() => shared.pending.length === 2);
    served.hub.publish('ch', 'p2');
    await new Promise((r) => setTimeout(r, 20));
    shared.pending[0]!.answer();
    await c.nextOf('subscribed');
    shared.pending[1]!.answer();
    await c.nextOf('subscribed', 2);
    served.hub.publish('ch', 'p3');
    await c.until((x) => x.of('message').some((m) => json(m) === 'p3'));
    expect(c.of('message').map((m) => json(m))).toEqual(['p1', 'p2', 'p3']);
  });

  it('a recovery that ends after the client unsubscribed sends nothing more for that channel', async () => {
    const shared = new ManualSharedHistory();
    served = await bed.serve({ sharedHistory: shared });
    served.hub.publish('ch', 'p1');
    const c = await connect('json');
    c.subscribe('ch', '0-0');
    await eventually(() => shared.pending.length === 1);
    c.send({ type: 'unsubscribe', data: Buffer.from('{"channel":"ch"}') });
    await eventually(() => served!.hub.subscribers('ch') === 0);
    shared.pending[0]!.answer();
    c.subscribe('other');
    await eventually(() => shared.pending.length === 2);
    shared.pending[1]!.answer();
    await c.nextOf('subscribed');
    expect(c.received.filter((m) => m.channel === 'ch')).toEqual([]);
  });
});

describe('rooms across nodes', () => {
  it('a room name with a NUL character reaches that room on other nodes, not the room named by its prefix', async () => {
    const group = new LocalBusGroup();
    served = await bed.serve({ bus: new LocalBus(group) });
    const other = await serveHub({ bus: new LocalBus(group) });
    try {
      const lobby = await TestClient.connect(other.url, 'json', {
        headers: { 'X-Client-ID': 'lobby-member' },
      });
      bed.clients.push(lobby);
      const odd = await TestClient.connect(other.url, 'json', { headers: { 'X-Client-ID': 'odd-member' } });
      bed.clients.push(odd);
      lobby.join('lobby');
      odd.send({ type: 'join_room', data: Buffer.from('{"room_id":"lobby\\u0000x"}') });
      await eventually(() => other.hub.members('lobby\u0000x').length === 1);
      served.hub.toRoom('lobby\u0000x', 'for the odd room');
      await odd.until((c) => c.of('message').length === 1);
      served.hub.toRoom('lobby', 'for the lobby', { except: 'nobody' });
      await lobby.until((c) => c.of('message').length >= 1);
      expect(lobby.of('message').map((m) => json(m))).toEqual(['for the lobby']);
      expect(odd.of('message').map((m) => json(m))).toEqual(['for the odd room']);
    } finally {
      await other.close();
    }
  });

  it('refuses a client id containing a NUL character with 400', async () => {
    served = await bed.serve();
    await expect(TestClient.connect(`${served.url}?client_id=a%00b`, 'json')).rejects.toThrow(/HTTP 400/);
  });
});

describe('client library', () => {
  it('an error frame whose data is JSON null is surfaced as unreadable and later messages still arrive', async () => {
    served = await bed.serve();
    const c = new HypWebSocket(served.url, {
      codec: 'msgpack',
      clientId: 'lib',
      reconnect: { enabled: false },
    });
    try {
      const got: string[] = [];
      const errors: string[] = [];
      c.on('error', (e) => errors.push(e.code));
      c.subscribe('news', (m) => got.push(m.json<string>()));
      await c.connect();
      await eventually(() => served!.hub.subscribers('news') === 1);
      served.hub.client('lib')!.send(envelope({ type: 'error', data: Buffer.from('null') }));
      served.hub.publish('news', 'after');
      await eventually(() => got.length === 1);
      expect(got).toEqual(['after']);
      expect(errors).toEqual(['HYP_E_WS_DECODE']);
    } finally {
      c.close();
    }
  });
});
