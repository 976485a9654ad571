/**
 * The supervisor relays every WebSocket publish to every other worker over
 * IPC. Node queues what a worker does not read (event loop busy, SIGSTOP, a
 * debugger) in the supervisor, without bound: before, one client publishing
 * 1 KB messages while a worker was stopped took the supervisor from 67 MB to
 * 527 MB in 20 s, on until the pod's OOM kill. Now the other workers hold
 * their publishing clients while one is backed up (bus-hold / bus-release),
 * and the relay gives up on a worker that does not catch up (killed and
 * replaced; its clients reconnect and resume).
 */
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { IpcFlow } from '../../apps/server/ws/ipc-flow.js';
import { relayLowWater, type WorkerProcess } from '../../supervisor/worker-process.js';
import { fixtureApp, isAlive, until } from '../helpers/supervisor.js';
import { fakeChannel, metric, mib, type RelayClient, relayPod } from './relay-helpers.js';
import { greetedPid, TestClient } from './ws-helpers.js';

const pod = relayPod();
const { stopped, clients } = pod;

function rssBytes(pid: number): number {
  const kb = /VmRSS:\s+(\d+)/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

/** A subscriber to `flood`, and the pid of the worker it reached. */
async function subscribed(port: number, clientId: string): Promise<{ client: TestClient; pid: number }> {
  const client = new TestClient(port, { clientId });
  clients.push(client);
  await client.connect();
  await client.subscribe('flood');
  return { client, pid: await until(() => greetedPid(client), 'the greeting') };
}

/**
 * Publishes `1 KB` messages numbered from 0 until `total` are sent or
 * `ms` have passed, as fast as the socket takes them; the peak RSS of
 * `watchPid` meanwhile.
 */
async function flood(pub: RelayClient, total: number, ms: number, watchPid: number) {
  const pad = 'x'.repeat(1000);
  let sent = 0;
  let peak = rssBytes(watchPid);
  let sampledAt = 0;
  const end = Date.now() + ms;
  while (sent < total && Date.now() < end) {
    if (pub.ws.bufferedAmount < mib)
      for (let k = 0; k < 100 && sent < total; k++) pub.publish(`${sent++}`, pad);
    await new Promise((r) => setImmediate(r));
    if (Date.now() - sampledAt >= 50) {
      sampledAt = Date.now();
      peak = Math.max(peak, rssBytes(watchPid));
    }
  }
  return { sent, peak: Math.max(peak, rssBytes(watchPid)) };
}

describe('a worker that does not read its IPC channel (SIGSTOP)', () => {
  it("holds the other workers' publishing clients: the supervisor stays small, and once the worker runs again its subscriber gets every message once, in order", async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay'),
      workers: 3,
      // the heartbeat watchdog would kill the stopped worker after 10 s: this is about the relay
      sets: [
        'supervisor.heartbeat_timeout=120s',
        'websocket.history_size=100000',
        'websocket.send_buffer_limit=256MiB',
      ],
    });
    const { client: subscriber, pid: stoppedPid } = await subscribed(running.httpPort, 'subscriber');
    process.kill(stoppedPid, 'SIGSTOP');
    stopped.push(stoppedPid);

    const supervisorPid = running.proc.pid!;
    const before = rssBytes(supervisorPid);
    const pub = await pod.client(running.httpPort, false);
    // the stopped worker cannot accept: a running one did
    expect(pub.pid).not.toBe(stoppedPid);

    // up to `total` 1 KB publishes in at most 10 s (bounded both ways)
    const total = 40_000;
    const { sent, peak } = await flood(pub, total, 10_000, supervisorPid);
    const backlogs = await metric(running, 'hyp_supervisor_ws_relay_backlogs_total');
    console.log(
      `relay hold: supervisor ${Math.round(before / mib)} MB -> peak ${Math.round(peak / mib)} MB while a client sent ${sent} of ${total} 1 KB publishes with a worker stopped; backlogs ${backlogs}`,
    );
    // before: the supervisor grew by ~225 MB for 40,000 publishes (68 -> 293 MB), and no hold ever came
    expect(peak - before).toBeLessThan(100 * mib);
    expect(backlogs).toBeGreaterThanOrEqual(1);

    // the worker runs again: nothing was dropped, everything comes through once, in order
    process.kill(stoppedPid, 'SIGCONT');
    await until(
      () => (subscriber.ids('flood').length >= sent ? true : undefined),
      `${sent} deliveries to the stopped worker's subscriber`,
      120_000,
    );
    await new Promise((r) => setTimeout(r, 300)); // late duplicates would show up here
    const ids = subscriber.ids('flood');
    expect(ids.length).toBe(sent);
    expect(ids.every((id, i) => id === `${i}`)).toBe(true);
    expect(isAlive(stoppedPid)).toBe(true);
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(0);
  });
});

describe('a worker that never catches up', () => {
  it("is cut off past 32 MiB waiting for it: killed (HYP_E_WORKER_RELAY_STALLED) and replaced, its subscriber reconnects and resumes, and the others' publishers are released", async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay'),
      workers: 3,
      sets: ['supervisor.heartbeat_timeout=120s', 'websocket.send_buffer_limit=256MiB'],
    });
    const { client: subscriber, pid: stoppedPid } = await subscribed(running.httpPort, 'subscriber');
    const stoppedWorker = (await running.status()).workers.find((w) => w.pid === stoppedPid)!;
    process.kill(stoppedPid, 'SIGSTOP');
    stopped.push(stoppedPid);

    // 600 publishes of 64 KiB from the server side (~38 MiB; no client to hold) on a running worker
    const flood = await fetch(`http://127.0.0.1:${running.httpPort}/flood?n=600&bytes=65536`, {
      method: 'POST',
    });
    expect(flood.status).toBe(200);
    expect(((await flood.json()) as { pid: number }).pid).not.toBe(stoppedPid);

    const line = await running.waitLog(
      (l) => l.code === 'HYP_E_WORKER_RELAY_STALLED',
      'HYP_E_WORKER_RELAY_STALLED',
      30_000,
    );
    expect(line.worker).toBe(stoppedWorker.id);
    expect(String(line.msg)).toMatch(/does not read what the supervisor relays/);
    await until(() => (isAlive(stoppedPid) ? undefined : true), 'the stalled worker killed', 30_000);
    await running.waitFor(
      (s) => s.workers.length === 3 && s.workers.every((w) => w.state === 'ready' && w.pid !== stoppedPid),
      'its replacement ready',
    );
    expect(await metric(running, 'hyp_supervisor_ws_relay_cutoffs_total')).toBe(1);
    expect(await metric(running, 'hyp_supervisor_worker_restarts_total{reason="relay"}')).toBe(1);

    // its subscriber saw the connection go, reconnected elsewhere and resumed from the pod's history
    const expected = Array.from({ length: 600 }, (_, i) => `server-${i}`);
    await until(
      () => (subscriber.ids('flood').length >= expected.length ? true : undefined),
      "the stalled worker's subscriber resumed",
      60_000,
    );
    expect(subscriber.closes.length).toBeGreaterThanOrEqual(1);
    expect(subscriber.ids('flood')).toEqual(expected);

    // the hold went with the stalled worker: a client publishes, and is read again after each publish
    const pub = await pod.client(running.httpPort, false);
    for (const id of ['after-1', 'after-2', 'after-3']) {
      pub.publish(id, '');
      await until(
        () => (subscriber.ids('flood').includes(id) ? true : undefined),
        `${id}, published after the cut-off`,
        30_000,
      );
    }
  }, 120_000);
});

describe('a backed-up worker that exits', () => {
  it("releases the other workers' publishing clients", async () => {
    const running = await pod.start({
      app: fixtureApp('ws-relay'),
      workers: 3,
      sets: ['supervisor.heartbeat_timeout=120s', 'websocket.history_size=100000'],
    });
    const { pid: stoppedPid } = await subscribed(running.httpPort, 'on-stopped');
    process.kill(stoppedPid, 'SIGSTOP');
    stopped.push(stoppedPid);
    // a subscriber on a running worker (the stopped one cannot accept)
    const { client: watcher, pid: watcherPid } = await subscribed(running.httpPort, 'watcher');
    expect(watcherPid).not.toBe(stoppedPid);
    const pub = await pod.client(running.httpPort, false);

    // until the hold has come (the publisher is no longer read), at most 40,000 publishes or 10 s
    const { sent } = await flood(pub, 40_000, 10_000, running.proc.pid!);
    expect(await metric(running, 'hyp_supervisor_ws_relay_backlogs_total')).toBeGreaterThanOrEqual(1);
    process.kill(stoppedPid, 'SIGKILL');
    await until(
      () => (watcher.ids('flood').length >= sent ? true : undefined),
      `${sent} deliveries once the backed-up worker is gone`,
      60_000,
    );
    expect(watcher.ids('flood').every((id, i) => id === `${i}`)).toBe(true);
  }, 120_000);
});

/** Relays 1 KB bus messages to a worker until it is backed up (at most 100,000), then `more`. */
function backUp(worker: WorkerProcess, more = 0): void {
  const payload = new Uint8Array(1000);
  for (let i = 0; i < 100_000 && worker.backedUpSince === undefined; i++)
    worker.send({ type: 'bus', message: { topic: 't', payload } });
  expect(worker.backedUpSince).toBeDefined();
  expect(worker.backlog.messages).toBeGreaterThan(relayLowWater);
  for (let i = 0; i < more; i++) worker.send({ type: 'bus', message: { topic: 't', payload } });
}

describe('the relay bookkeeping of one worker', () => {
  it('a backed-up worker that reads nothing for relayStallMs (heartbeat_timeout) is stalled, once', async () => {
    const worker = pod.idleWorker(300);
    const events: unknown[] = [];
    worker.on('backlog', (b) => events.push(b));
    worker.on('stalled', (why) => events.push(why));
    await until(() => (worker.heardFrom ? true : undefined), 'its first heartbeat', 10_000);
    process.kill(worker.pid, 'SIGSTOP');
    backUp(worker);
    const [why] = (await once(worker, 'stalled')) as [string];
    expect(why).toMatch(/^backed up, and nothing sent to it was read for \d+ ms$/);
    expect(worker.relayCutOff).toBe(why);
    // more sends do not stall it again
    worker.send({ type: 'bus', message: { topic: 't', payload: new Uint8Array(1000) } });
    expect(events).toEqual([true, why]);
  });

  it('a worker that catches up is no longer backed up, and is not stalled', async () => {
    const worker = pod.idleWorker(60_000);
    await until(() => (worker.pid > 0 ? true : undefined), 'the child', 10_000);
    process.kill(worker.pid, 'SIGSTOP');
    stopped.push(worker.pid);
    backUp(worker);
    const caughtUp = once(worker, 'backlog');
    process.kill(worker.pid, 'SIGCONT');
    expect(await caughtUp).toEqual([false]);
    expect(worker.backedUpSince).toBeUndefined();
    expect(worker.relayCutOff).toBeUndefined();
    expect(worker.backlog.messages).toBeLessThanOrEqual(relayLowWater);
  });

  it('a worker that has not sent its first heartbeat (still loading) is not stalled by time, only past 32 MiB', async () => {
    const worker = pod.idleWorker(100, 0, true);
    await until(() => (worker.pid > 0 ? true : undefined), 'the child', 10_000);
    process.kill(worker.pid, 'SIGSTOP');
    backUp(worker);
    let stalled: string | undefined;
    worker.on('stalled', (why) => {
      stalled = why;
    });
    await new Promise((r) => setTimeout(r, 500)); // five times its limit
    expect(stalled).toBeUndefined();
    const payload = new Uint8Array(64 * 1024);
    for (let i = 0; i < 1000 && stalled === undefined; i++)
      worker.send({ type: 'bus', message: { topic: 't', payload } });
    expect(stalled).toMatch(/ messages, about \d+ bytes, wait unwritten$/);
    expect(worker.backlog.bytes).toBeGreaterThan(32 * mib);
  });

  it('a worker that is slow but reads is not stalled by time, however long it stays backed up', async () => {
    // 0.5 ms per message: Node writes to it whenever it has read a chunk, well within the 3 s limit
    const worker = pod.idleWorker(3_000, 0.5);
    await until(() => (worker.pid > 0 ? true : undefined), 'the child', 10_000);
    process.kill(worker.pid, 'SIGSTOP');
    stopped.push(worker.pid);
    backUp(worker, 12_000);
    const since = worker.backedUpSince!;
    let stalled: string | undefined;
    worker.on('stalled', (why) => {
      stalled = why;
    });
    const caughtUp = once(worker, 'backlog');
    process.kill(worker.pid, 'SIGCONT');
    expect(await caughtUp).toEqual([false]);
    console.log(`a slow reader stayed backed up for ${Date.now() - since} ms (stall limit 3000 ms)`);
    expect(stalled).toBeUndefined();
    expect(worker.relayCutOff).toBeUndefined();
  }, 120_000);
});

describe("a worker's IPC flow under the supervisor's hold", () => {
  it('is congested from bus-hold until bus-release, and only then calls back', () => {
    const ipc = fakeChannel();
    const flow = new IpcFlow(ipc.channel);
    expect(flow.congested).toBe(false);
    ipc.fromSupervisor({ type: 'bus-hold' });
    expect(flow.congested).toBe(true);
    let resumed = 0;
    flow.whenDrained(() => resumed++);
    // other messages on the channel, and nulls, change nothing
    ipc.fromSupervisor({ type: 'bus', message: { topic: 't', payload: '' } });
    ipc.fromSupervisor(null);
    expect(resumed).toBe(0);
    ipc.fromSupervisor({ type: 'bus-release' });
    expect(flow.congested).toBe(false);
    expect(resumed).toBe(1);
    // a release without a hold runs nothing twice
    ipc.fromSupervisor({ type: 'bus-release' });
    expect(resumed).toBe(1);
  });

  it("stays congested until both its own channel has drained and the supervisor's hold is released", () => {
    const ipc = fakeChannel();
    const flow = new IpcFlow(ipc.channel);
    ipc.stopSending();
    flow.send('a');
    ipc.fromSupervisor({ type: 'bus-hold' });
    let resumed = 0;
    flow.whenDrained(() => resumed++);
    ipc.writeAll();
    expect(flow.congested).toBe(true);
    expect(resumed).toBe(0);
    ipc.fromSupervisor({ type: 'bus-release' });
    expect(resumed).toBe(1);

    // and the other way round
    ipc.fromSupervisor({ type: 'bus-hold' });
    flow.send('b');
    flow.whenDrained(() => resumed++);
    ipc.fromSupervisor({ type: 'bus-release' });
    expect(flow.congested).toBe(true);
    expect(resumed).toBe(1);
    ipc.writeAll();
    expect(flow.congested).toBe(false);
    expect(resumed).toBe(2);
  });
});
