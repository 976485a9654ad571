import { afterEach, describe, expect, it } from 'vitest';
import { envelope } from '../../../../apps/server/ws/envelope.js';
import { History } from '../../../../apps/server/ws/history.js';
import { json, type Served, serveHub, TestClient } from './helpers.js';

describe('History', () => {
  it('numbers each channel separately and replays what follows an offset, in order', () => {
    const h = new History({ size: 5, epoch: 'e' });
    const offsets = [1, 2, 3].map((n) => h.append('a', envelope({ data: new Uint8Array([n]) })));
    h.append('b', envelope({}));
    expect(offsets).toEqual(['e:1', 'e:2', 'e:3']);
    expect(h.head('a')).toBe('e:3');
    const r = h.since('a', 'e:1');
    expect(r.ok && r.messages.map((m) => m.data[0])).toEqual([2, 3]);
    expect(h.since('a', 'e:3')).toEqual({ ok: true, messages: [] });
    expect(h.since('fresh', 'e:0')).toEqual({ ok: true, messages: [] });
  });

  it('fails explicitly when the gap is older than the history, from another epoch, or malformed', () => {
    const h = new History({ size: 3, epoch: 'e' });
    for (let i = 0; i < 10; i++) h.append('a', envelope({}));
    expect(h.since('a', 'e:7')).toMatchObject({ ok: true });
    expect(h.since('a', 'e:6')).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/no longer in history/),
    });
    expect(h.since('a', 'other:9')).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/another history/),
    });
    expect(h.since('a', 'e:99')).toMatchObject({ ok: false, reason: expect.stringMatching(/future/) });
    expect(h.since('a', 'garbage')).toMatchObject({ ok: false });
    // Only decimal digits after the epoch: Number() would read these as 9 (or 0, a replay from the start).
    for (const loose of ['e:', 'e: 9', 'e:9 ', 'e:0x9', 'e:9.0', 'e:+9', 'e:1e0'])
      expect(h.since('a', loose), loose).toEqual({ ok: false, reason: 'malformed offset' });
  });

  it('keeps memory bounded: size per channel and a channel cap', () => {
    const h = new History({ size: 2, maxChannels: 3, epoch: 'e' });
    const offsets: string[][] = [];
    for (let c = 0; c < 10; c++) offsets.push([0, 1, 2, 3, 4].map(() => h.append(`c${c}`, envelope({}))));
    expect(h.since('c0', offsets[0]![3]!)).toMatchObject({ ok: false });
    expect(h.since('c9', offsets[9]![2]!)).toMatchObject({ ok: true });
  });
});

describe('recovery through the hub', () => {
  let served: Served | undefined;
  afterEach(async () => {
    await served?.close();
    served = undefined;
  });

  it('a client offline for 2 s while 100 messages are published gets all 100 in order after reconnecting', async () => {
    served = await serveHub();
    const first = await TestClient.connect(served.url, 'msgpack');
    first.subscribe('ticker');
    const [ack] = await first.nextOf('subscribed');
    served.hub.publish('ticker', { n: -1 });
    const [last] = await first.nextOf('message');
    await first.close();
    const start = Date.now();
    for (let n = 0; n < 100; n++) {
      served.hub.publish('ticker', { n });
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(Date.now() - start).toBeGreaterThanOrEqual(2_000);
    const again = await TestClient.connect(served.url, 'msgpack');
    again.subscribe('ticker', last!.offset);
    const got = await again.nextOf('message', 100);
    expect(got.map((m) => (json(m) as { n: number }).n)).toEqual(Array.from({ length: 100 }, (_, i) => i));
    expect(ack!.offset).toMatch(/:0$/);
    served.hub.publish('ticker', { n: 100 });
    await again.nextOf('message', 101);
    expect(again.of('error')).toEqual([]);
    await again.close();
  });

  it('answers HYP_E_WS_RECOVERY_FAILED when the gap is older than the history, and still subscribes', async () => {
    served = await serveHub({ historySize: 10 });
    const c = await TestClient.connect(served.url, 'json');
    c.subscribe('t');
    const [ack] = await c.nextOf('subscribed');
    await c.close();
    for (let n = 0; n < 20; n++) served.hub.publish('t', n);
    const again = await TestClient.connect(served.url, 'json');
    again.subscribe('t', ack!.offset);
    const [err] = await again.nextOf('error');
    expect(json(err!)).toMatchObject({ code: 'HYP_E_WS_RECOVERY_FAILED', channel: 't', offset: ack!.offset });
    await again.nextOf('subscribed');
    served.hub.publish('t', 'live');
    await again.nextOf('message');
    await again.close();
  });
});
