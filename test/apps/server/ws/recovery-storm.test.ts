import { describe, expect, it } from 'vitest';
import { IpcHistory } from '../../../../apps/server/ws/ipc-history.js';
import { eventually, HubTestBed, holdingPod, json, type TestClient } from './helpers.js';

/**
 * A resume from the pod-wide history costs the supervisor a replay of up to
 * `history_size` payloads (in pages of ~1 MiB) and the worker the whole
 * replay in memory until it is sent. A subscribe frame with an offset is a
 * few dozen bytes: without a bound per connection, one client repeating it
 * makes the supervisor and the worker replay the channel's history once per
 * frame, all at the same time.
 */

const bed = new HubTestBed();

type ErrorBody = { code: string; message: string; channel?: string };
const errors = (c: TestClient) => c.of('error').map((m) => json(m) as ErrorBody);

describe('resumes under way per connection', () => {
  it('a subscribe with an offset repeated while that resume is under way starts no second replay: the repeats are refused with HYP_E_WS_RECOVERY_BUSY, the resume delivers each message once', async () => {
    const pod = holdingPod();
    const served = await bed.serve({ sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }) });
    for (const n of [1, 2, 3]) served.hub.publish('ch', n);
    const c = await bed.connect('json');
    const from = `${pod.history.epoch}-0`;
    const repeats = 200;
    for (let i = 0; i < repeats; i++) c.subscribe('ch', from);
    // every frame has been handled once it either asked the supervisor or was refused
    await eventually(() => pod.held.length + c.of('error').length >= repeats);
    expect(pod.held).toHaveLength(1);
    expect(errors(c)).toHaveLength(repeats - 1);
    for (const e of errors(c)) {
      expect(e.code).toBe('HYP_E_WS_RECOVERY_BUSY');
      expect(e.channel).toBe('ch');
    }
    pod.release();
    await c.until((x) => x.of('subscribed').length === 1);
    expect(c.of('message').map((m) => json(m))).toEqual([1, 2, 3]);
    // once acknowledged, a resume may be asked again
    c.subscribe('ch', from);
    await eventually(() => pod.held.length === 1);
    pod.release();
    await c.until((x) => x.of('subscribed').length === 2);
    expect(c.closed).toBeUndefined();
  });

  it('subscribing and unsubscribing channel after channel keeps at most maxSubscriptions resumes under way; the rest are refused, naming their channel', async () => {
    const pod = holdingPod();
    const served = await bed.serve({
      maxSubscriptions: 4,
      sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }),
    });
    for (let i = 0; i < 40; i++) served.hub.publish(`c${i}`, i);
    const c = await bed.connect('msgpack');
    const from = `${pod.history.epoch}-0`;
    for (let i = 0; i < 40; i++) {
      c.subscribe(`c${i}`, from);
      c.send({ type: 'unsubscribe', data: c.codec.encodeChannelRequest({ channel: `c${i}`, offset: '' }) });
    }
    await eventually(() => pod.held.length + c.of('error').length >= 40);
    expect(pod.held.map((m) => m.channel)).toEqual(['c0', 'c1', 'c2', 'c3']);
    expect(errors(c).map((e) => `${e.code} ${e.channel}`)).toEqual(
      Array.from({ length: 36 }, (_, i) => `HYP_E_WS_RECOVERY_BUSY c${i + 4}`),
    );
    pod.release();
    // the replays of channels left meanwhile send nothing; a new resume is taken again
    c.subscribe('c39', from);
    await eventually(() => pod.held.length === 1);
    pod.release();
    await c.until((x) => x.of('message').length === 1);
    expect(c.of('message').map((m) => json(m))).toEqual([39]);
    expect(c.closed).toBeUndefined();
  });

  it('a client at its subscription limit with every channel replaying is told HYP_E_WS_TOO_MANY_SUBSCRIPTIONS for one more, as without a replay', async () => {
    const pod = holdingPod();
    await bed.serve({
      maxSubscriptions: 2,
      sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }),
    });
    const c = await bed.connect('json');
    const from = `${pod.history.epoch}-0`;
    for (const ch of ['a', 'b', 'c']) c.subscribe(ch, from);
    await c.until((x) => x.of('error').length === 1);
    expect(errors(c).map((e) => `${e.code} ${e.channel}`)).toEqual(['HYP_E_WS_TOO_MANY_SUBSCRIPTIONS c']);
    expect(pod.held.map((m) => m.channel)).toEqual(['a', 'b']);
  });

  it('a long replay in pages stops asking the supervisor for more once its client has left', async () => {
    // one entry per page
    const pod = holdingPod(1);
    const served = await bed.serve({ sharedHistory: new IpcHistory({ topic: '/ws', channel: pod.channel }) });
    for (let n = 0; n < 5; n++) served.hub.publish('long', n);
    const from = `${pod.history.epoch}-0`;
    const leaving = await bed.connect('json');
    leaving.subscribe('long', from);
    await eventually(() => pod.held.length === 1);
    await leaving.close();
    await eventually(() => served.hub.clients() === 0);
    pod.release();
    // a later request from another client: the old code's next page request was sent before it
    const marker = await bed.connect('json');
    marker.subscribe('marker', from);
    await eventually(() => pod.held.some((m) => m.channel === 'marker'));
    expect(pod.held.map((m) => m.channel)).toEqual(['marker']);
  });
});

describe('live deliveries held while a resume is replayed', () => {
  /** A hub on a holding pod, and a count of the deliveries the pod announced (after the hub had them). */
  async function busyChannel(options: { slowConsumer?: 'close' | 'drop' } = {}) {
    const pod = holdingPod();
    // the replay does not come while the test runs (no timeout: the hold lasts)
    const shared = new IpcHistory({ topic: '/ws', channel: pod.channel, timeoutMs: 60_000 });
    const served = await bed.serve({ sendBufferLimit: 16 * 1024, sharedHistory: shared, ...options });
    const seen = { announced: 0 };
    shared.onDelivery(() => seen.announced++);
    served.hub.publish('busy', 0);
    const c = await bed.connect('json', { headers: { 'X-Client-ID': 'reader' } });
    // resumes from the head (message 0): an empty replay, the live deliveries held meanwhile follow it
    c.subscribe('busy', `${pod.history.epoch}-1`);
    await eventually(() => pod.held.length === 1);
    for (let n = 1; n <= 200; n++) served.hub.publish('busy', { n, pad: 'k'.repeat(1000) });
    await eventually(() => seen.announced === 201);
    const slowConsumerDrops = async () =>
      (await served.hub.metrics.dropped.get()).values.find((v) => v.labels.reason === 'slow_consumer')
        ?.value ?? 0;
    return { pod, served, c, slowConsumerDrops };
  }

  it('count against send_buffer_limit: past it a client is cut off (close policy) instead of holding every delivery of a busy channel', async () => {
    const { served, slowConsumerDrops } = await busyChannel();
    const held = () => served.hub.client('reader')?.recovering?.get('busy')?.held.length ?? 0;
    // settled once the client is gone, or once everything published is held for it
    await eventually(() => served.hub.clients() === 0 || held() === 200);
    expect(served.hub.clients()).toBe(0);
    expect(served.hub.client('reader')).toBeUndefined();
    expect(await slowConsumerDrops()).toBeGreaterThan(0);
  });

  it('with the drop policy the connection stays and holds at most the bound; what was held follows the replay, in order', async () => {
    const { pod, served, c, slowConsumerDrops } = await busyChannel({ slowConsumer: 'drop' });
    const recovering = served.hub.client('reader')!.recovering!.get('busy')!;
    expect(recovering.heldBytes).toBeLessThanOrEqual(16 * 1024);
    expect(recovering.held.length).toBeLessThan(200);
    expect(await slowConsumerDrops()).toBe(200 - recovering.held.length);
    const kept = recovering.held.length;
    pod.release();
    await c.until((x) => x.of('subscribed').length === 1);
    const ns = c.of('message').map((m) => (json(m) as { n?: number }).n ?? json(m));
    expect(ns).toEqual(Array.from({ length: kept }, (_, i) => i + 1));
    expect(c.closed).toBeUndefined();
  });
});
