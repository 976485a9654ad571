/**
 * The Redis driver against a real redis-server on a loopback port, when
 * things go wrong: foreign publishers on the bus channels, a pod cut off
 * from Redis while others publish, Redis restarting and losing its data,
 * trimming racing a recovery, an outage under traffic, a gap the catch-up
 * after a reconnect cannot fill.
 */
import { fork } from 'node:child_process';
import { createServer as createHttpServer } from 'node:http';
import { Encoder } from '@msgpack/msgpack';
import { Value } from '@sinclair/typebox/value';
import type { Redis } from 'ioredis';
import { afterEach, describe, expect, it } from 'vitest';
import { App } from '../../../../apps/server/app.js';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import { encodeBusEvent } from '../../../../apps/server/ws/bus-event.js';
import type { Envelope } from '../../../../apps/server/ws/envelope.js';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { type Config, ConfigSchema } from '../../../../supervisor/config/schema.js';
import { compileFixture } from './compile.js';
import { json, serveHub, TestClient } from './helpers.js';
import {
  type CuttableLink,
  cuttableLink,
  type RedisProcess,
  redisBinary,
  redisForSuite,
  until,
} from './redis-server.js';

const cleanup: Array<() => Promise<unknown> | unknown> = [];
afterEach(async () => {
  for (const fn of cleanup.splice(0).reverse()) await fn();
});

function message(channel: string, body: string): Envelope {
  return {
    type: 'message',
    channel,
    data: Buffer.from(JSON.stringify(body)),
    timestamp: 1n,
    clientId: '',
    offset: '',
  };
}

/** Serve `app` (requests and upgrades) on a loopback port until the test ends; the `ws://` base URL. */
async function listenApp(app: App): Promise<string> {
  const server = createHttpServer(app.handle);
  server.on('upgrade', app.handleUpgrade);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  cleanup.push(async () => {
    await app.shutdown();
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return `ws://127.0.0.1:${(server.address() as { port: number }).port}`;
}

const redisServer = redisBinary();
let prefixCounter = 0;
const nextPrefix = () => `audit${process.pid}-${++prefixCounter}`;

describe.skipIf(!redisServer)('the Redis driver when things go wrong (real redis-server)', () => {
  let redis: RedisProcess;
  let raw: Redis;

  redisForSuite(redisServer!, (server, client) => {
    redis = server;
    raw = client;
  });

  function history(url: string, prefix: string, size = 100): RedisHistory {
    const h = new RedisHistory({ url, prefix, size });
    cleanup.push(() => h.close());
    return h;
  }

  function collect(h: RedisHistory): Envelope[] {
    const got: Envelope[] = [];
    h.onDelivery((_channel, m) => got.push(m));
    return got;
  }

  it('two hubs on different paths keep their channels apart (history streams and announcements)', async () => {
    const config = Value.Default(ConfigSchema, {
      websocket: { bus: { driver: 'redis', redis_url: redis.url } },
    }) as Config;
    const app = new App({ config });
    const hubs = {
      ws: app.websocket('/ws', { pingIntervalMs: 0 }),
      chat: app.websocket('/chat', { pingIntervalMs: 0 }),
    };
    const base = await listenApp(app);
    const channel = `news-${nextPrefix()}`;
    const onWs = await TestClient.connect(`${base}/ws`, 'json');
    const onChat = await TestClient.connect(`${base}/chat`, 'json');
    cleanup.push(
      () => onWs.close(),
      () => onChat.close(),
    );
    for (const c of [onWs, onChat]) {
      c.subscribe(channel);
      await c.nextOf('subscribed');
    }
    hubs.chat.publish(channel, 'for chat');
    hubs.ws.publish(channel, 'for ws');
    await onWs.until((c) => c.of('message').length >= 1);
    await onChat.until((c) => c.of('message').length >= 1);
    // Both publishes have been announced to both hubs by now: a marker on each path comes after them.
    hubs.chat.publish(channel, 'chat marker');
    hubs.ws.publish(channel, 'ws marker');
    await onWs.until((c) => c.of('message').some((m) => json(m) === 'ws marker'));
    await onChat.until((c) => c.of('message').some((m) => json(m) === 'chat marker'));
    expect(onWs.of('message').map(json)).toEqual(['for ws', 'ws marker']);
    expect(onChat.of('message').map(json)).toEqual(['for chat', 'chat marker']);
  });

  it('two pods whose workers have the same id and PID (PID namespaces) still hear each other on the bus', async () => {
    // In containers every pod's supervisor is PID 1 and its workers get the same PIDs in the
    // same order: here, two Apps in one process with worker id 1 are two such pods.
    const config = Value.Default(ConfigSchema, {
      websocket: { bus: { driver: 'redis', redis_url: redis.url } },
    }) as Config;
    const pods = [];
    for (let i = 0; i < 2; i++) {
      const app = new App({ config, workerId: 1 });
      const hub = app.websocket('/ws', { pingIntervalMs: 0, presenceIntervalMs: 0 });
      pods.push({ hub, url: `${await listenApp(app)}/ws` });
    }
    const [a, b] = pods as [(typeof pods)[0], (typeof pods)[0]];
    // Subscribed on Redis first: with no presence interval, nothing repeats a missed join.
    await Promise.all(pods.map((p) => p.hub.bus.ready()));
    const onB = await TestClient.connect(b.url, 'json');
    cleanup.push(() => onB.close());
    const room = `room-${nextPrefix()}`;
    onB.join(room);
    await onB.nextOf('presence');
    // B's join is on the bus once A lists the member.
    await until(() => a.hub.members(room).length === 1 || undefined, "A sees B's member");
    a.hub.toRoom(room, 'to the room');
    a.hub.broadcast('to everyone');
    await onB.until((c) => c.of('message').length >= 2);
    expect(onB.of('message').map(json).sort()).toEqual(['to everyone', 'to the room']);
  });

  it('foreign messages on the bus and announce channels (float timestamp, garbage) never crash a worker; it keeps delivering', async () => {
    const prefix = nextPrefix();
    const script = await compileFixture('test/apps/server/ws/redis-node.fixture.ts');
    const child = fork(script, [], {
      env: { ...process.env, REDIS_URL: redis.url, REDIS_PREFIX: prefix },
      stdio: ['ignore', 'ignore', 'pipe', 'ipc'],
    });
    let stderr = '';
    child.stderr!.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    cleanup.push(() => {
      if (child.exitCode === null) child.kill('SIGKILL');
    });
    const port = await new Promise<number>((resolve, reject) => {
      child.on('message', (m: { type: string; port?: number }) => m.type === 'ready' && resolve(m.port!));
      child.once('exit', (code) => reject(new Error(`worker exited ${code}: ${stderr}`)));
    });
    const c = await TestClient.connect(`ws://127.0.0.1:${port}/ws`, 'json', {
      headers: { 'X-Client-ID': 'watcher' },
    });
    cleanup.push(() => c.close());
    c.subscribe('news');
    c.join('room');
    await c.nextOf('subscribed');

    // another pod in this process, sharing the Redis and prefix
    const other = await serveHub({
      bus: new RedisBus({ url: redis.url, prefix }),
      sharedHistory: new RedisHistory({ url: redis.url, prefix, size: 100 }),
      ownTransports: true,
    });
    cleanup.push(() => other.close());
    await other.hub.bus.ready();

    const floatTs = new Encoder().encode([
      1,
      'room',
      'x',
      'message',
      'room',
      new Uint8Array([0x31]),
      1.5,
      'evil',
    ]);
    const nanTs = new Encoder().encode([
      2,
      '',
      'x',
      'message',
      '',
      new Uint8Array([0x31]),
      Number.NaN,
      'evil',
    ]);
    const busFrame = (payload: Uint8Array) => Buffer.concat([Buffer.from([1, 0x41]), payload]);
    await raw.publish(`${prefix}:bus:ws`, busFrame(floatTs));
    await raw.publish(`${prefix}:bus:ws`, busFrame(nanTs));
    await raw.publish(`${prefix}:bus:ws`, Buffer.from([200, 1, 2]));
    await raw.publish(`${prefix}:bus:ws`, Buffer.alloc(0));
    const announceFloat = new Encoder().encode([
      0,
      'news',
      'x',
      'message',
      'news',
      new Uint8Array([0x31]),
      0.25,
      '',
    ]);
    await raw.publish(`${prefix}:hist-announce`, Buffer.concat([Buffer.from('1-1\n'), announceFloat]));
    await raw.publish(`${prefix}:hist-announce`, Buffer.from('no newline at all'));
    await raw.publish(`${prefix}:hist-announce`, Buffer.from('\n\xc1'));
    // and a well-formed event whose offset is not a stream id
    await raw.publish(
      `${prefix}:hist-announce`,
      Buffer.concat([
        Buffer.from('not-an-id\n'),
        encodeBusEvent('publish', 'news', 'x', message('news', 'forged')),
      ]),
    );

    other.hub.toRoom('room', 'after the noise');
    other.hub.publish('news', 'still here');
    await c.until((t) => t.of('message').length >= 2 || t.closed !== undefined);
    expect(child.exitCode).toBeNull();
    expect(stderr).not.toMatch(/RangeError|BigInt/);
    // The room message travels on the bus connection, the channel publish through the
    // history's: two Redis connections, so their relative order is not defined.
    const texts = c.of('message').map((m) => json(m) as string);
    expect(texts.sort()).toEqual(['after the noise', 'still here']);
  }, 60_000);

  it('a pod cut off from Redis while another publishes delivers what it missed after the reconnect, in order, once', async () => {
    const { prefix, proxy, a, b, gotA, gotB } = await historiesAcrossLink();
    // a local client subscribed on pod A (every hub subscribe asks the history)
    await a.recover('news', '');
    b.publish('news', message('news', 'm0'));
    await until(() => gotA.length === 1 || undefined, 'm0 on A');

    proxy.cut();
    for (const body of ['m1', 'm2', 'm3']) b.publish('news', message('news', body));
    b.publish('other', message('other', 'elsewhere'));
    await until(() => gotB.length === 5 || undefined, 'the publishes on B');
    proxy.restore();
    // A resubscribed: the announce channel has both pods on it again
    await until(async () => {
      const [, n] = (await raw.pubsub('NUMSUB', `${prefix}:hist-announce`)) as [string, number];
      return Number(n) === 2 || undefined;
    }, "A's subscriber back");
    b.publish('news', message('news', 'm4'));
    await until(() => gotB.length === 6 || undefined, 'm4 on B');
    await until(() => gotA.some((m) => json(m) === 'm4') || undefined, 'm4 on A');
    await new Promise((r) => setTimeout(r, 200)); // room for a duplicate to show
    const onNews = (got: Envelope[]) => got.filter((m) => m.channel === 'news');
    expect(onNews(gotA).map((m) => json(m))).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(onNews(gotA).map((m) => m.offset)).toEqual(onNews(gotB).map((m) => m.offset));
  }, 60_000);

  it('recovery while Redis is unreachable fails explicitly instead of waiting for the outage to end', async () => {
    const { prefix, proxy } = await prefixAndLink();
    const a = new RedisHistory({ url: proxy.url, prefix, size: 10, timeoutMs: 300 });
    cleanup.push(() => a.close());
    await a.ready();
    const offset = (await a.recover('news', '')).head;
    proxy.cut();
    let outcome: string | undefined;
    a.recover('news', offset).then(
      () => {
        outcome = 'resolved';
      },
      (err: Error) => {
        outcome = `rejected: ${err.message}`;
      },
    );
    await until(() => outcome, 'the recovery to settle', 10_000).catch(() => undefined);
    expect(outcome ?? 'still pending').toMatch(/^rejected: Redis/);
  }, 30_000);

  it('a trim racing a recovery (between reading the bounds and the entries) is refused, never a silent gap', async () => {
    const { proxy, a, b, gotB } = await historiesAcrossLink(3);
    for (const body of ['m1', 'm2', 'm3']) b.publish('news', message('news', body));
    await until(() => gotB.length === 3 || undefined, 'three publishes');
    const offset = gotB[0]!.offset; // m2 and m3 are still in the stream of three
    // when A's XRANGE goes out, three more publishes trim m2 and m3 away first
    let fired = false;
    proxy.onClientData = (chunk) => {
      if (fired || !/XRANGE/i.test(chunk.toString('latin1'))) return undefined;
      fired = true;
      for (const body of ['m4', 'm5', 'm6']) b.publish('news', message('news', body));
      return until(() => gotB.length === 6 || undefined, 'the trimming publishes').then(() => undefined);
    };
    const { recovery } = await a.recover('news', offset);
    expect(fired).toBe(true);
    if (recovery.ok) expect(recovery.messages.map((m) => json(m))).toEqual(['m2', 'm3', 'm4', 'm5', 'm6']);
    else expect(recovery.reason).toMatch(/no longer in history/);
  }, 30_000);

  it('after Redis restarted and lost its data, an offset from before the restart is refused, not replayed with a gap', async () => {
    const prefix = nextPrefix();
    const a = history(redis.url, prefix);
    await a.ready();
    const got = collect(a);
    a.publish('news', message('news', 'm1'));
    a.publish('news', message('news', 'm2'));
    await until(() => got.length === 2 || undefined, 'm1, m2');
    const offset = got[0]!.offset; // the client saw m1, not m2
    await redis.stop();
    await redis.start();
    await until(async () => {
      const [, n] = (await raw.pubsub('NUMSUB', `${prefix}:hist-announce`)) as [string, number];
      return Number(n) === 1 || undefined;
    }, 'the subscriber back');
    a.publish('news', message('news', 'm3'));
    await until(() => got.length === 3 || undefined, 'm3');
    const { recovery } = await a.recover('news', offset);
    expect(recovery.ok ? recovery.messages.map((m) => json(m)) : recovery.reason).toMatch(
      /no longer in history/,
    );
  }, 60_000);

  it('publishes during an outage wait for Redis up to the bound; beyond it they are refused and reported', async () => {
    const { prefix, proxy } = await prefixAndLink();
    const errors: string[] = [];
    const a = new RedisHistory({
      url: proxy.url,
      prefix,
      size: 100,
      maxPending: 3,
      onError: (err, channel) => errors.push(`${channel}: ${err.message}`),
    });
    cleanup.push(() => a.close());
    const b = history(redis.url, prefix);
    await Promise.all([a.ready(), b.ready()]);
    const gotB = collect(b);
    proxy.cut();
    await until(
      () => (a as unknown as { commands: Redis }).commands.status !== 'ready' || undefined,
      'A cut',
    );
    for (let i = 1; i <= 5; i++) a.publish('news', message('news', `m${i}`));
    expect(errors.length).toBe(2);
    expect(errors[0]).toMatch(/^news: publish on channel news refused: 3 publishes/);
    proxy.restore();
    await until(() => gotB.length === 3 || undefined, 'the waiting publishes');
    await new Promise((r) => setTimeout(r, 200));
    expect(gotB.map((m) => json(m))).toEqual(['m1', 'm2', 'm3']);
  }, 30_000);
  it('the bus during an outage: publishes wait up to the bound, the rest are refused and reported; close() does not wait for Redis', async () => {
    const { prefix, proxy } = await prefixAndLink();
    const errors: string[] = [];
    const a = new RedisBus({
      url: proxy.url,
      prefix,
      maxPending: 2,
      onError: (err) => errors.push(err.message),
    });
    const b = new RedisBus({ url: redis.url, prefix });
    cleanup.push(() => b.close());
    await Promise.all([a.ready(), b.ready()]);
    const got: string[] = [];
    b.onMessage((_topic, payload) => got.push(Buffer.from(payload).toString()));
    proxy.cut();
    await until(() => a.pub.status !== 'ready' || undefined, 'A cut');
    for (let i = 1; i <= 4; i++) a.publish('ws', Buffer.from(`b${i}`));
    expect(errors).toHaveLength(2);
    expect(errors[0]).toMatch(/^bus publish on ws refused: 2 publishes/);
    proxy.restore();
    await until(() => got.length === 2 || undefined, 'the waiting publishes');
    expect(got).toEqual(['b1', 'b2']);
    proxy.cut();
    await until(() => a.pub.status !== 'ready' || undefined, 'A cut again');
    let closed = false;
    void a.close().then(() => {
      closed = true;
    });
    await until(() => closed || undefined, 'close during the outage', 10_000).catch(() => undefined);
    expect(closed).toBe(true);
  }, 30_000);

  /**
   * Drops the connection through `proxy` right after Redis executed the command in the first
   * chunk holding `marker`, before its reply reaches the client; once `executed()` confirms
   * Redis ran it, the link is cut and restored (the client reconnects).
   */
  function loseReplyTo(proxy: CuttableLink, marker: string, executed: () => Promise<boolean>): () => boolean {
    let fired = false;
    let reconnected = false;
    proxy.onClientData = (chunk) => {
      if (fired || !chunk.includes(marker)) return undefined;
      fired = true;
      proxy.deaf = true; // from here on no reply reaches the client
      void until(async () => (await executed()) || undefined, `Redis to execute ${marker}`).then(() => {
        proxy.cut();
        proxy.deaf = false;
        proxy.restore();
        reconnected = true;
      });
      return undefined;
    };
    return () => reconnected;
  }

  it('a channel publish whose reply was lost with the connection is appended and delivered once, not twice', async () => {
    const { prefix, proxy, a, gotB } = await historiesAcrossLink();
    a.publish('news', message('news', 'm0')); // the append script is loaded on this Redis
    await until(() => gotB.length === 1 || undefined, 'm0 on B');
    const done = loseReplyTo(proxy, 'lost-reply', async () => gotB.length === 2);
    a.publish('news', message('news', 'lost-reply'));
    await until(() => done() || undefined, 'the link cut after the append');
    a.publish('news', message('news', 'm2'));
    await until(() => gotB.some((m) => json(m) === 'm2') || undefined, 'm2 on B');
    expect(gotB.map((m) => json(m))).toEqual(['m0', 'lost-reply', 'm2']);
    expect(await raw.xlen(`${prefix}:hist:news`)).toBe(3);
  }, 30_000);

  it('a channel publish lost on its way to Redis with the connection is appended after the reconnect, once', async () => {
    const { proxy, a, gotB } = await historiesAcrossLink();
    a.publish('news', message('news', 'm0'));
    await until(() => gotB.length === 1 || undefined, 'm0 on B');
    let dropped = false;
    proxy.onClientData = (chunk) => {
      if (dropped || !chunk.includes('never-arrived')) return undefined;
      dropped = true;
      proxy.cut(); // the chunk is not forwarded: its connection is gone
      proxy.restore();
      return undefined;
    };
    a.publish('news', message('news', 'never-arrived'));
    a.publish('news', message('news', 'm2'));
    await until(() => gotB.some((m) => json(m) === 'm2') || undefined, 'm2 on B');
    expect(dropped).toBe(true);
    expect(gotB.map((m) => json(m))).toEqual(['m0', 'never-arrived', 'm2']);
  }, 30_000);

  it('a bus publish whose reply was lost with the connection reaches the other pods once, not twice', async () => {
    const { prefix, proxy } = await prefixAndLink();
    const a = new RedisBus({ url: proxy.url, prefix });
    const b = new RedisBus({ url: redis.url, prefix });
    cleanup.push(
      () => a.close(),
      () => b.close(),
    );
    await Promise.all([a.ready(), b.ready()]);
    const got: string[] = [];
    b.onMessage((_topic, payload) => got.push(Buffer.from(payload).toString()));
    a.publish('ws', Buffer.from('b0'));
    await until(() => got.length === 1 || undefined, 'b0 on B');
    const done = loseReplyTo(proxy, 'lost-reply', async () => got.length === 2);
    a.publish('ws', Buffer.from('lost-reply'));
    await until(() => done() || undefined, 'the link cut after the publish');
    a.publish('ws', Buffer.from('b2'));
    await until(() => got.includes('b2') || undefined, 'b2 on B');
    expect(got).toEqual(['b0', 'lost-reply', 'b2']);
  }, 30_000);

  /** A fresh key prefix and a link to Redis that the test can cut (closed after the test). */
  async function prefixAndLink(): Promise<{ prefix: string; proxy: CuttableLink }> {
    const prefix = nextPrefix();
    const proxy = await cuttableLink(redis.port);
    cleanup.push(() => proxy.close());
    return { prefix, proxy };
  }

  /**
   * Pod C: a hub whose history (`size` entries) reaches Redis through a
   * cuttable link, with one live subscriber `c` on `news`; pod B: a history
   * straight on Redis, whose deliveries are `gotB`. B has published m0 and
   * `c` has it, at offset `m0`.
   */
  async function liveSubscriberBehindLink(size: number) {
    const { prefix, proxy } = await prefixAndLink();
    const c = await hubBehind(proxy, prefix, size, 'news');
    const b = history(redis.url, prefix, size);
    await b.ready();
    const gotB = collect(b);
    b.publish('news', message('news', 'm0'));
    await c.until((t) => t.of('message').length === 1);
    return { prefix, proxy, c, b, gotB, m0: c.of('message')[0]!.offset };
  }

  /**
   * Pod A's history reaches Redis through a cuttable link, pod B's directly
   * (both `size` entries, ready); `gotA`/`gotB` are their deliveries.
   */
  async function historiesAcrossLink(size?: number) {
    const { prefix, proxy } = await prefixAndLink();
    const a = history(proxy.url, prefix, size);
    const b = history(redis.url, prefix, size);
    await Promise.all([a.ready(), b.ready()]);
    return { prefix, proxy, a, b, gotA: collect(a), gotB: collect(b) };
  }

  /** A hub whose shared history reaches Redis through `link`, with one client subscribed to `channel`. */
  async function hubBehind(link: CuttableLink, prefix: string, size: number, channel: string) {
    const served = await serveHub({
      sharedHistory: new RedisHistory({ url: link.url, prefix, size }),
      ownTransports: true,
    });
    cleanup.push(() => served.close());
    const client = await TestClient.connect(served.url, 'json');
    cleanup.push(() => client.close());
    client.subscribe(channel);
    await client.nextOf('subscribed');
    return Object.assign(client, { served });
  }

  /** What a client saw on `channel` after its first `subscribed`: messages by body, errors by code and offset. */
  function seen(c: TestClient): string[] {
    return c.received.slice(1).map((m) => {
      if (m.type === 'message') return json(m) as string;
      if (m.type === 'error') {
        const e = json(m) as { code: string; channel: string; offset: string };
        return `${e.code} ${e.channel} ${e.offset}`;
      }
      return m.type;
    });
  }

  it('live subscribers are told when the catch-up after a cut cannot fill the gap (the stream was trimmed meanwhile)', async () => {
    const { proxy, c, b, gotB, m0 } = await liveSubscriberBehindLink(3);

    proxy.cut();
    for (const body of ['m1', 'm2', 'm3', 'm4', 'm5']) b.publish('news', message('news', body));
    await until(() => gotB.length === 6 || undefined, 'the publishes on B'); // the stream keeps m3..m5
    proxy.restore();
    await c.until((t) => t.of('message').some((m) => json(m) === 'm5'));
    const seenNow = seen(c);
    expect(seenNow).toEqual(['m0', `HYP_E_WS_RECOVERY_FAILED news ${m0}`, 'subscribed', 'm3', 'm4', 'm5']);
    // the resume point the hub names after the gap is before m3: the client keeps m3..m5
    const resume = c.of('subscribed')[1]!.offset;
    expect(resume).toBe(m0);
  }, 30_000);

  it('live subscribers are told when Redis lost its data while the pod was cut off (restart without persistence)', async () => {
    const { prefix, proxy, c, b, gotB, m0 } = await liveSubscriberBehindLink(100);

    proxy.cut();
    b.publish('news', message('news', 'm1')); // announced only to B, then lost with Redis's data
    await until(() => gotB.length === 2 || undefined, 'm1 on B');
    await redis.stop();
    await redis.start();
    proxy.restore();
    await until(async () => {
      const [, n] = (await raw.pubsub('NUMSUB', `${prefix}:hist-announce`)) as [string, number];
      return Number(n) === 2 || undefined;
    }, 'both subscribers back');
    await c.until((t) => t.of('error').length === 1);
    b.publish('news', message('news', 'm2'));
    await c.until((t) => t.of('message').some((m) => json(m) === 'm2'));
    expect(seen(c)).toEqual(['m0', `HYP_E_WS_RECOVERY_FAILED news ${m0}`, 'subscribed', 'm2']);
  }, 60_000);

  it('a catch-up without a gap tells live subscribers nothing', async () => {
    const { proxy, c, b, gotB } = await liveSubscriberBehindLink(3);
    proxy.cut();
    // the stream of three still holds m0 and everything after it
    for (const body of ['m1', 'm2']) b.publish('news', message('news', body));
    await until(() => gotB.length === 3 || undefined, 'the publishes on B');
    proxy.restore();
    await c.until((t) => t.of('message').some((m) => json(m) === 'm2'));
    b.publish('news', message('news', 'm3'));
    await c.until((t) => t.of('message').some((m) => json(m) === 'm3'));
    expect(seen(c)).toEqual(['m0', 'm1', 'm2', 'm3']);
  }, 30_000);

  it('a client whose resume is being replayed when the gap is found is told once, in order', async () => {
    const { prefix, proxy } = await prefixAndLink();
    const c = await hubBehind(proxy, prefix, 3, 'news');
    const late = await TestClient.connect(c.served.url, 'json', { headers: { 'X-Client-ID': 'late' } });
    cleanup.push(() => late.close());
    const b = history(redis.url, prefix, 3);
    await b.ready();
    const gotB = collect(b);
    b.publish('news', message('news', 'm0'));
    await c.until((t) => t.of('message').length === 1);
    const m0 = c.of('message')[0]!.offset;

    proxy.cut();
    for (const body of ['m1', 'm2', 'm3', 'm4', 'm5']) b.publish('news', message('news', body));
    await until(() => gotB.length === 6 || undefined, 'the publishes on B');
    // the catch-up's read waits in the link until `late` is recovering the channel too
    let release: () => void = () => {};
    let held = false;
    proxy.onClientData = (chunk) => {
      if (held || !/XRANGE/i.test(chunk.toString('latin1'))) return undefined;
      held = true;
      return new Promise<void>((r) => {
        release = r;
      });
    };
    proxy.restore();
    await until(() => held || undefined, 'the catch-up read');
    late.subscribe('news', m0);
    const hub = c.served.hub as unknown as { byId: Map<string, { recovering?: Map<string, unknown> }> };
    await until(() => hub.byId.get('late')?.recovering?.has('news') || undefined, 'late recovering');
    release();
    await c.until((t) => t.of('message').some((m) => json(m) === 'm5'));
    await late.until((t) => t.of('subscribed').length === 1);
    expect(seen(c)).toEqual(['m0', `HYP_E_WS_RECOVERY_FAILED news ${m0}`, 'subscribed', 'm3', 'm4', 'm5']);
    // its own resume failed: one error (not a second for the same gap), then what was held
    expect(late.received.map((m) => (m.type === 'message' ? json(m) : m.type))).toEqual([
      'error',
      'm3',
      'm4',
      'm5',
      'subscribed',
    ]);
  }, 30_000);
});
