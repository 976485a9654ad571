/**
 * Backpressure for the app's own publishes: `hub.publish()` (and broadcast,
 * toRoom, sendTo another node) cannot be held like a client's, so the hub
 * tells the app instead. `hub.congested` is true while a publish would wait
 * behind a congested path (the IPC channel, the supervisor's relay hold,
 * Redis); `hub.whenDrained()` resolves once every such path has drained, or
 * the hub closed. Against a real redis-server stopped with SIGSTOP, and a
 * real IPC channel to a forked worker.
 */
import { type ChildProcess, fork } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import { RedisBus } from '../../../../apps/server/ws/bus.js';
import { decodeBusEvent } from '../../../../apps/server/ws/bus-event.js';
import type { PendingFlow } from '../../../../apps/server/ws/flow.js';
import type { Hub, HubOptions } from '../../../../apps/server/ws/hub.js';
import { RedisHistory } from '../../../../apps/server/ws/redis-history.js';
import { compileFixture } from './compile.js';
import { eventually, json, serveHub, TestClient } from './helpers.js';
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

const redisServer = redisBinary();
let prefixes = 0;

/** Waits until `read()` has not changed for `rounds` polls in a row (bounded: 200 polls). */
async function settled(read: () => number, rounds = 5): Promise<number> {
  let last = -1;
  let same = 0;
  for (let i = 0; i < 200 && same < rounds; i++) {
    const now = read();
    same = now === last ? same + 1 : 0;
    last = now;
    await new Promise((r) => setTimeout(r, 50));
  }
  return last;
}

/** Whether `promise` settles within `ms` (a bound for a spec, not a timing assertion). */
async function settlesWithin(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  const result = await Promise.race([promise.then(() => true as const), late]);
  clearTimeout(timer);
  return result;
}

/**
 * The app loop the API is for: `total` numbered publishes on `ticks`, waiting while the hub is
 * congested. `pending()` is read after each publish; the largest value is kept.
 */
function appLoop(hub: Hub, total: number, pending: () => number) {
  const state = { published: 0, mostPending: 0, sawCongested: false, done: false };
  const finished = (async () => {
    for (let i = 0; i < total; i++) {
      while (hub.congested) {
        state.sawCongested = true;
        await hub.whenDrained();
      }
      hub.publish('ticks', { i });
      state.published++;
      state.mostPending = Math.max(state.mostPending, pending());
    }
    state.done = true;
  })();
  return { state, finished };
}

/** Holds every command sent through `link` until the returned function is called. */
function gate(link: CuttableLink): () => void {
  let open: () => void = () => {};
  const opened = new Promise<void>((resolve) => {
    open = resolve;
  });
  link.onClientData = () => opened;
  return () => {
    link.onClientData = undefined;
    open();
  };
}

function numbers(reader: TestClient): number[] {
  return reader.of('message').map((m) => (json(m) as { i: number }).i);
}

describe.skipIf(!redisServer)(
  'the app’s own publishes while Redis does not answer (real redis-server)',
  () => {
    let redis: RedisProcess;
    redisForSuite(redisServer!, (r) => {
      redis = r;
    });

    /** Stops redis-server (SIGSTOP): it takes connections' bytes and answers nothing until `resume`. */
    function stopRedis(): () => void {
      const pid = redis.proc!.pid!;
      process.kill(pid, 'SIGSTOP');
      let resumed = false;
      const resume = () => {
        if (resumed) return;
        resumed = true;
        process.kill(pid, 'SIGCONT');
      };
      cleanup.push(resume);
      return resume;
    }

    /** One node's Redis transports (bus or shared history) at most `maxPending` waiting, and their flow. */
    function transports(kind: 'bus' | 'history', prefix: string, errors: string[], maxPending: number) {
      const onError = (err: Error) => errors.push(err.message);
      if (kind === 'bus') {
        const bus = new RedisBus({ url: redis.url, prefix, maxPending, onError });
        return { options: { bus } satisfies HubOptions, flow: bus.flow, ready: () => bus.ready() };
      }
      const sharedHistory = new RedisHistory({ url: redis.url, prefix, size: 10_000, maxPending, onError });
      return {
        options: { sharedHistory } satisfies HubOptions,
        flow: sharedHistory.flow,
        ready: () => sharedHistory.ready(),
      };
    }

    for (const kind of ['bus', 'history'] as const) {
      it(`${kind}: an app loop that waits on whenDrained() publishes every message, in order, and no more than the high-water mark waits for Redis`, async () => {
        const prefix = `appflow${process.pid}-${++prefixes}`;
        const errors: string[] = [];
        const mine = transports(kind, prefix, errors, 400);
        const theirs = transports(kind, prefix, errors, 400);
        const publisher = await serveHub({ ...mine.options, ownTransports: true });
        cleanup.push(() => publisher.close());
        const other = await serveHub({ ...theirs.options, ownTransports: true });
        cleanup.push(() => other.close());
        await Promise.all([mine.ready(), theirs.ready()]);
        const reader = await TestClient.connect(other.url, 'json');
        cleanup.push(() => reader.close());
        reader.subscribe('ticks');
        await reader.nextOf('subscribed');
        expect(publisher.hub.congested).toBe(false);

        const resume = stopRedis();
        const total = 1_000;
        const flow: PendingFlow = mine.flow;
        const { state, finished } = appLoop(publisher.hub, total, () => flow.pending);
        await settled(() => state.published);
        // Before: hub.congested was undefined, the loop never waited; past maxPending (400) the rest
        // were refused (600 lost, HYP_W_WS_PUBLISH logged).
        expect(state.sawCongested).toBe(true);
        expect(publisher.hub.congested).toBe(true);
        expect(state.done).toBe(false);
        expect(errors).toEqual([]);
        // the publish that made the flow congested is the last one taken
        expect(state.mostPending).toBeLessThanOrEqual(flow.highWater + 1);
        resume();

        await until(() => state.done || undefined, 'the app loop to finish', 30_000);
        await finished;
        await reader.until((c) => c.of('message').length >= total, 30_000);
        expect(numbers(reader)).toEqual(Array.from({ length: total }, (_, i) => i));
        expect(errors).toEqual([]);
        expect(state.mostPending).toBeLessThanOrEqual(flow.highWater + 1);
        expect(publisher.hub.congested).toBe(false);
      }, 90_000);
    }

    it('whenDrained() resolves when the hub closes while congested, and many waiters share one listener', async () => {
      const prefix = `appflow${process.pid}-${++prefixes}`;
      const errors: string[] = [];
      const bus = new RedisBus({
        url: redis.url,
        prefix,
        maxPending: 100,
        onError: (e) => errors.push(e.message),
      });
      // the hub does not own the bus: closing the hub leaves it congested, only the hub's close can end the wait
      cleanup.push(() => bus.close());
      const served = await serveHub({ bus });
      cleanup.push(() => served.close());
      await bus.ready();
      stopRedis();
      for (let i = 0; i < 1_000 && !served.hub.congested; i++) served.hub.publish('ticks', { i });
      expect(served.hub.congested).toBe(true);
      const waits = Array.from({ length: 100 }, () => served.hub.whenDrained());
      // one listener on the congested path, however many wait (the flow's own list of callbacks)
      const listeners = (bus.flow as unknown as { drainWaiters: unknown[] }).drainWaiters.length;
      expect(listeners).toBeLessThanOrEqual(1);
      expect(await settlesWithin(Promise.all(waits), 200)).toBe(false);

      await served.hub.close();
      // Before: whenDrained did not exist; a wait on the flow alone never ends while Redis is stopped.
      expect(await settlesWithin(Promise.all(waits), 10_000)).toBe(true);
      expect(bus.flow.congested).toBe(true);
      expect(served.hub.congested).toBe(false);
      expect(await settlesWithin(served.hub.whenDrained(), 10_000)).toBe(true);
      expect(errors).toEqual([]);
    }, 60_000);
  },
);

describe.skipIf(!redisServer)('whenDrained() with two congested paths (real redis-server)', () => {
  let redis: RedisProcess;
  redisForSuite(redisServer!, (r) => {
    redis = r;
  });

  it('waits until both have drained: the one it waits on draining first while the other is still congested does not end the wait', async () => {
    const prefix = `appflow${process.pid}-${++prefixes}`;
    const busLink = await cuttableLink(redis.port);
    cleanup.push(() => busLink.close());
    const historyLink = await cuttableLink(redis.port);
    cleanup.push(() => historyLink.close());
    const errors: string[] = [];
    const onError = (err: Error) => errors.push(err.message);
    const bus = new RedisBus({ url: busLink.url, prefix, maxPending: 100, onError });
    const sharedHistory = new RedisHistory({
      url: historyLink.url,
      prefix,
      size: 1_000,
      maxPending: 100,
      onError,
    });
    const served = await serveHub({ bus, sharedHistory, ownTransports: true, presenceIntervalMs: 0 });
    cleanup.push(() => served.close());
    await Promise.all([bus.ready(), sharedHistory.ready()]);
    const releaseBus = gate(busLink);
    const releaseHistory = gate(historyLink);
    cleanup.push(releaseBus, releaseHistory);
    const hub = served.hub;
    // channel publishes go to the shared history, broadcasts to the bus
    for (let i = 0; i < 1_000 && !sharedHistory.flow.congested; i++) hub.publish('ticks', { i });
    for (let i = 0; i < 1_000 && !bus.flow.congested; i++) hub.broadcast({ i });
    expect(sharedHistory.flow.congested).toBe(true);
    expect(bus.flow.congested).toBe(true);
    let drained = false;
    const wait = hub.whenDrained().then(() => {
      drained = true;
    });

    releaseHistory();
    await until(() => !sharedHistory.flow.congested || undefined, 'the shared history drained');
    await settled(() => sharedHistory.flow.pending);
    expect(bus.flow.congested).toBe(true);
    expect(hub.congested).toBe(true);
    expect(drained).toBe(false);

    releaseBus();
    expect(await settlesWithin(wait, 15_000)).toBe(true);
    expect(hub.congested).toBe(false);
    expect(errors).toEqual([]);
  }, 60_000);
});

describe('whenDrained() on a hub that is not congested', () => {
  it('resolves at once (the next microtask), with or without a transport that has a flow', async () => {
    const local = await serveHub();
    cleanup.push(() => local.close());
    expect(local.hub.congested).toBe(false);
    let done = false;
    void local.hub.whenDrained().then(() => {
      done = true;
    });
    await Promise.resolve();
    expect(done).toBe(true);
  });
});

describe('the app’s own publishes on the IPC bus (a real IPC channel to a forked worker)', () => {
  /** The fixture worker, the bus messages it relayed (their numbers, in order) and what it reported. */
  async function worker() {
    const script = await compileFixture('test/apps/server/ws/app-backpressure.fixture.ts');
    const child: ChildProcess = fork(script, [], {
      serialization: 'advanced',
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    cleanup.push(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const relayed: number[] = [];
    const waits: number[] = [];
    let done = false;
    child.on('message', (m: { type?: string; at?: number; message?: { payload: Uint8Array } }) => {
      if (m.type === 'bus' && m.message) {
        const event = decodeBusEvent(m.message.payload);
        if (event?.kind === 'publish')
          relayed.push((JSON.parse(Buffer.from(event.message.data).toString()) as { i: number }).i);
      } else if (m.type === 'wait') waits.push(m.at ?? -1);
      else if (m.type === 'done') done = true;
    });
    await new Promise<void>((resolve, reject) => {
      child.once('message', () => resolve());
      child.once('exit', (code) => reject(new Error(`fixture exited with ${code}`)));
    });
    return { child, relayed, waits, isDone: () => done };
  }

  it('an app loop waiting on whenDrained() stops under the supervisor’s relay hold and goes on at its release: every message relayed once, in order', async () => {
    const { child, relayed, waits, isDone } = await worker();
    const total = 2_000;
    child.send({ type: 'go', total, bytes: 4096 });
    await eventually(() => relayed.length >= 200, 30_000);
    child.send({ type: 'bus-hold' });
    const held = await settled(() => relayed.length);
    // Before: the loop did not wait (hub.congested did not exist): it published all 2,000 under the hold.
    expect(held).toBeLessThan(total);
    expect(isDone()).toBe(false);
    // the loop waits before exactly the next publish: nothing was taken while the hold was in force
    expect(waits.at(-1)).toBe(held);
    child.send({ type: 'bus-release' });

    await eventually(() => isDone() && relayed.length >= total, 30_000);
    expect(relayed).toEqual(Array.from({ length: total }, (_, i) => i));
  }, 90_000);
});
