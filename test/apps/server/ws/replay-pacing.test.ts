import type { Socket } from 'node:net';
import { describe, expect, it } from 'vitest';
import { eventually, HubTestBed, json, type TestClient } from './helpers.js';

/**
 * A resume sends the whole gap at once. Held to send_buffer_limit like a live
 * delivery, a gap larger than the bound cut the resuming client off (close
 * policy: 1006, and again on every resume of a busy channel) or lost most of
 * the replay without a word (drop policy), however fast the client read.
 * The replay now goes out as the socket drains; what follows it waits behind it.
 */

const bed = new HubTestBed();

const socketOf = (c: TestClient) => (c.ws as unknown as { _socket: Socket })._socket;

async function resumeLargeGap(slowConsumer: 'close' | 'drop') {
  const served = await bed.serve({ sendBufferLimit: 32 * 1024, historySize: 3000, slowConsumer });
  const from = served.hub.history.head('busy');
  for (let n = 0; n < 3000; n++) served.hub.publish('busy', { n, pad: 'p'.repeat(1000) });
  const c = await bed.connect('json');
  // the client reads nothing until the hub has taken the subscribe: the ~3 MB replay meets a full socket
  socketOf(c).pause();
  c.subscribe('busy', from);
  await eventually(() => served.hub.subscribers('busy') === 1);
  // live deliveries after the replay's start: they wait behind it
  for (let n = 3000; n < 3005; n++) served.hub.publish('busy', { n });
  socketOf(c).resume();
  await c.until((x) => x.closed !== undefined || x.of('subscribed').length === 1, 30_000);
  await c.until((x) => x.closed !== undefined || x.of('message').length >= 3005, 30_000);
  return { served, c };
}

describe('a resume larger than send_buffer_limit', () => {
  it('close policy: the reading client gets the whole replay in order, then what was published meanwhile; it is not cut off', async () => {
    const { c } = await resumeLargeGap('close');
    expect(c.closed).toBeUndefined();
    const ns = c.of('message').map((m) => (json(m) as { n: number }).n);
    expect(ns).toEqual(Array.from({ length: 3005 }, (_, i) => i));
  });

  it('drop policy: nothing of the replay is dropped', async () => {
    const { served, c } = await resumeLargeGap('drop');
    expect(c.closed).toBeUndefined();
    expect(c.of('message').map((m) => (json(m) as { n: number }).n)).toEqual(
      Array.from({ length: 3005 }, (_, i) => i),
    );
    const dropped = (await served.hub.metrics.dropped.get()).values;
    expect(dropped.find((v) => v.labels.reason === 'slow_consumer')?.value ?? 0).toBe(0);
  });
});

describe('deliveries behind a replay', () => {
  it('count against send_buffer_limit: a client that reads nothing while its channel stays busy is still cut off', async () => {
    const served = await bed.serve({ sendBufferLimit: 32 * 1024, historySize: 3000 });
    const from = served.hub.history.head('busy');
    for (let n = 0; n < 3000; n++) served.hub.publish('busy', { n, pad: 'p'.repeat(1000) });
    const c = await bed.connect('json', { headers: { 'X-Client-ID': 'stalled' } });
    socketOf(c).pause();
    c.subscribe('busy', from);
    await eventually(() => served.hub.subscribers('busy') === 1);
    expect(served.hub.client('stalled')!.backlog).toBeDefined();
    for (let n = 3000; n < 3100; n++) served.hub.publish('busy', { n, pad: 'p'.repeat(1000) });
    await eventually(() => served.hub.clients() === 0);
  });
});
