/**
 * History and recovery through the real supervisor: the pod-wide history
 * lives in the supervisor, so a client resumes on any worker, also after a
 * rolling restart in which every worker is replaced.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { demoApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { freePort, TestClient } from './ws-helpers.js';

let sup: Running | undefined;
const clients: TestClient[] = [];
afterEach(async () => {
  for (const c of clients.splice(0)) c.close();
  await sup?.stop();
  sup = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Publishes `{id: n}` one at a time and waits for its own echo. A publish
 * sent just as the worker starts closing the connection is refused by the
 * draining hub (it never enters the history); only then, once the echo has
 * not come back after a reconnect, is the same `n` published again.
 */
class ConfirmedPublisher {
  next = 1;
  republished = 0;
  private stopped = false;
  readonly done: Promise<void>;

  constructor(
    private readonly client: TestClient,
    private readonly channel: string,
    private readonly max: number,
    private readonly pauseMs: number,
  ) {
    this.done = this.run();
  }

  private echoed(n: number): boolean {
    // the publisher's own echoes arrive in order: only the tail can hold n
    const ids = this.client.ids(this.channel);
    for (let i = ids.length - 1; i >= 0 && i >= ids.length - 50; i--) if (ids[i] === String(n)) return true;
    return false;
  }

  private async run(): Promise<void> {
    const endAt = Date.now() + 90_000;
    while (!this.stopped && this.next <= this.max && Date.now() < endAt) {
      const n = this.next;
      const closesBefore = this.client.closes.length;
      const message = { id: String(n) };
      this.client.ws.publish(this.channel, message);
      for (;;) {
        const waitUntil = Date.now() + 5_000;
        while (!this.echoed(n) && Date.now() < waitUntil) await sleep(5);
        if (this.echoed(n)) break;
        if (this.client.closes.length === closesBefore || !this.client.ws.connected) continue;
        this.republished++;
        this.client.ws.publish(this.channel, message);
      }
      this.next++;
      if (this.pauseMs) await sleep(this.pauseMs);
    }
  }

  async stop(): Promise<number> {
    this.stopped = true;
    await this.done;
    return this.next - 1;
  }
}

/**
 * A subscriber and a publisher on `channel`, both connected and subscribed;
 * the subscriber then drops off (its reconnects fail until `goOnline`).
 */
async function offlineSubscriber(port: number, clientId: string, channel: string) {
  const subscriber = new TestClient(port, { clientId, deadPort: await freePort() });
  const publisher = new TestClient(port, { clientId: 'publisher' });
  clients.push(subscriber, publisher);
  await Promise.all([subscriber.connect(), publisher.connect()]);
  await Promise.all([subscriber.subscribe(channel), publisher.subscribe(channel)]);
  subscriber.goOffline();
  const offlineAt = Date.now();
  await until(() => (subscriber.ws.connected ? undefined : true), 'subscriber offline');
  return { subscriber, publisher, offlineAt };
}

describe('WebSocket recovery through the supervisor', () => {
  it('a client offline for 2 s while 100 messages (30 KB each: the replay spans several ~1 MiB IPC pages) are published gets all 100, in order, after reconnecting', async () => {
    sup = await startSupervisor({ app: demoApp, workers: 2, sets: ['tcp.echo.addr=127.0.0.1:0'] });
    const { subscriber, publisher, offlineAt } = await offlineSubscriber(sup.httpPort, 'offline-sub', 'feed');
    // the publisher's connection stays up: publish all 100, then wait for their echoes
    const pad = 'x'.repeat(30_000);
    for (let n = 1; n <= 100; n++) publisher.ws.publish('feed', { id: String(n), pad });
    await until(() => (publisher.ids('feed').length >= 100 ? true : undefined), '100 echoes');
    await sleep(Math.max(0, 2_000 - (Date.now() - offlineAt)));
    const offlineMs = Date.now() - offlineAt;
    expect(subscriber.ids('feed')).toEqual([]);
    subscriber.goOnline();

    await until(() => (subscriber.ids('feed').length >= 100 ? true : undefined), '100 recovered messages');
    await sleep(300);
    const expected = Array.from({ length: 100 }, (_, i) => String(i + 1));
    expect(subscriber.ids('feed')).toEqual(expected);
    expect(subscriber.errors).toEqual([]);
    console.log(
      `recovery: offline ${offlineMs} ms, ${subscriber.closes.length} close(s), ` +
        `recovered ${subscriber.ids('feed').length}/100 in order`,
    );
  });

  it('websocket.history_bytes bounds the pod-wide history: older messages go, a client that needed them gets HYP_E_WS_RECOVERY_FAILED, never a silent gap', async () => {
    sup = await startSupervisor({
      app: demoApp,
      workers: 2,
      sets: ['tcp.echo.addr=127.0.0.1:0', 'websocket.history_bytes=200KiB'],
    });
    const { subscriber, publisher } = await offlineSubscriber(sup.httpPort, 'late-sub', 'big');
    const pad = 'x'.repeat(30_000);
    for (let n = 1; n <= 20; n++) publisher.ws.publish('big', { id: String(n), pad });
    await until(() => (publisher.ids('big').length >= 20 ? true : undefined), '20 echoes');

    const metric = (text: string, name: string) =>
      Number(text.match(new RegExp(`^${name} (\\d+)`, 'm'))?.[1]);
    const metrics = await (await sup.admin('/metrics')).text();
    const held = metric(metrics, 'hyp_supervisor_ws_history_bytes');
    const dropped = metric(metrics, 'hyp_supervisor_ws_history_dropped');
    // 20 payloads of ~30 KB against a 200 KiB bound: at most 6 stay
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThanOrEqual(200 * 1024);
    expect(dropped).toBeGreaterThanOrEqual(14);

    subscriber.goOnline();
    await until(
      () => (subscriber.errors.some((e) => e.code === 'HYP_E_WS_RECOVERY_FAILED') ? true : undefined),
      'recovery failure',
    );
    // nothing partial was replayed as if it were everything missed
    expect(subscriber.ids('big')).toEqual([]);
    // the subscription holds: live traffic arrives
    publisher.ws.publish('big', { id: 'live' });
    await until(() => (subscriber.ids('big').includes('live') ? true : undefined), 'live message');
    console.log(`history_bytes: ${held} bytes held, ${dropped} dropped; ${subscriber.errors[0]?.message}`);
  });

  it('across a rolling restart: the client gets 1001, resumes on a new worker, 0 lost and 0 duplicated while a publisher keeps publishing', async () => {
    sup = await startSupervisor({
      app: demoApp,
      workers: 2,
      sets: ['tcp.echo.addr=127.0.0.1:0', 'drain.websocket_spread=1s'],
    });
    const before = await sup.status();
    const subscriber = new TestClient(sup.httpPort, { clientId: 'rolling-sub', codec: 'msgpack' });
    const publisher = new TestClient(sup.httpPort, { clientId: 'rolling-pub' });
    clients.push(subscriber, publisher);
    await Promise.all([subscriber.connect(), publisher.connect()]);
    await Promise.all([subscriber.subscribe('rolling'), publisher.subscribe('rolling')]);

    const pub = new ConfirmedPublisher(publisher, 'rolling', 100_000, 2);
    await until(
      () => (subscriber.ids('rolling').length >= 50 ? true : undefined),
      '50 messages before restart',
    );
    const res = await sup.admin('/restart?wait=1', { method: 'POST' });
    const body = (await res.json()) as { ok: boolean; generation: number };
    expect(body).toMatchObject({ ok: true, generation: before.generation + 1 });
    await sup.waitFor((s) => s.other_workers.length === 0, 'old generation gone');
    await until(() => (subscriber.closes.includes(1001) ? true : undefined), 'close 1001 on the subscriber');
    const atRestartDone = pub.next;
    // keep publishing on the new generation for a while
    await until(
      () => (pub.next >= atRestartDone + 100 ? true : undefined),
      '100 more messages after the restart',
    );
    const last = await pub.stop();
    await until(() => (subscriber.ids('rolling').length >= last ? true : undefined), `all ${last} messages`);
    await sleep(300);

    const ids = subscriber.ids('rolling').map(Number);
    const duplicated = ids.length - new Set(ids).size;
    const lost = last - new Set(ids).size;
    const inOrder = ids.every((n, i) => n === i + 1);
    const after = await sup.status();
    expect(after.workers.every((w) => !before.workers.some((b) => b.pid === w.pid))).toBe(true);
    expect(subscriber.closes).toContain(1001);
    expect(subscriber.errors).toEqual([]);
    expect({ lost, duplicated, inOrder }).toEqual({ lost: 0, duplicated: 0, inOrder: true });
    console.log(
      `rolling restart: ${last} messages, subscriber closes ${subscriber.closes.join(',')}, ` +
        `lost ${lost}, duplicated ${duplicated}, publisher re-sent ${pub.republished} refused by a draining worker`,
    );
  });

  it('an offset from another pod (another supervisor epoch) fails explicitly with HYP_E_WS_RECOVERY_FAILED, never wrong data', async () => {
    sup = await startSupervisor({ app: demoApp, workers: 1, sets: ['tcp.echo.addr=127.0.0.1:0'] });
    const other = await startSupervisor({ app: demoApp, workers: 1, sets: ['tcp.echo.addr=127.0.0.1:0'] });
    try {
      const mover = new TestClient(sup.httpPort, { clientId: 'mover' });
      const local = new TestClient(other.httpPort, { clientId: 'other-pod' });
      clients.push(mover, local);
      await Promise.all([mover.connect(), local.connect()]);
      await Promise.all([mover.subscribe('shared-name'), local.subscribe('shared-name')]);
      // the other pod's history of the same channel name has more entries than this one's
      for (let n = 1; n <= 5; n++) local.ws.publish('shared-name', { id: `other-${n}` });
      mover.ws.publish('shared-name', { id: 'here-1' });
      await until(() => (mover.ids('shared-name').length === 1 ? true : undefined), 'first message');
      await until(() => (local.ids('shared-name').length === 5 ? true : undefined), 'other pod messages');

      mover.goOffline();
      await until(() => (mover.ws.connected ? undefined : true), 'mover offline');
      mover.goOnline(other.httpPort);
      await until(
        () => (mover.errors.some((e) => e.code === 'HYP_E_WS_RECOVERY_FAILED') ? true : undefined),
        'recovery failure',
      );
      // nothing from the other pod's history was replayed as if it were the missed messages
      expect(mover.ids('shared-name')).toEqual(['here-1']);
      // the subscription holds: live traffic on the new pod arrives
      local.ws.publish('shared-name', { id: 'live' });
      await until(() => (mover.ids('shared-name').includes('live') ? true : undefined), 'live message');
      console.log(`foreign offset: ${mover.errors.map((e) => e.message).join('; ')}`);
    } finally {
      await other.stop();
    }
  });
});
