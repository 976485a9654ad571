import { describe, expect, it } from 'vitest';
import { PodHistory } from '../../supervisor/history.js';

const bytes = (n: number) => Uint8Array.of(n & 0xff);
const seqOf = (offset: string) => Number(offset.slice(offset.lastIndexOf('-') + 1));

describe('pod-wide channel history', () => {
  it('numbers each channel from the pod-wide publish count and replays what follows an offset, in order', () => {
    const h = new PodHistory({ size: 10, epoch: 1n << 64n });
    expect(h.head('a')).toBe(`${1n << 64n}-0`);
    const a1 = h.append('a', bytes(1));
    h.append('b', bytes(2));
    const a2 = h.append('a', bytes(3));
    expect(seqOf(a2)).toBe(seqOf(a1) + 1);
    const r = h.since('a', a1);
    expect(r).toMatchObject({ ok: true, head: a2 });
    expect(r.ok && r.entries.map((e) => e.offset)).toEqual([a2]);
    expect(h.since('a', a2)).toMatchObject({ ok: true, entries: [] });
  });

  it('replays a whole channel to a subscriber whose offset predates its first publish', () => {
    const h = new PodHistory({ size: 10 });
    const head = h.head('late');
    h.append('other', bytes(0));
    const first = h.append('late', bytes(1));
    const r = h.since('late', head);
    expect(r.ok && r.entries.map((e) => e.offset)).toEqual([first]);
  });

  it('keeps the last `size` entries per channel and refuses a gap older than that', () => {
    const h = new PodHistory({ size: 3 });
    const offsets = Array.from({ length: 10 }, (_, i) => h.append('c', bytes(i)));
    const r = h.since('c', offsets[6]!);
    expect(r.ok && r.entries.map((e) => e.payload[0])).toEqual([7, 8, 9]);
    expect(h.since('c', offsets[5]!)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/no longer/),
    });
  });

  it('fails explicitly for an offset of another epoch, a malformed one and one in the future', () => {
    const h = new PodHistory({ size: 3 });
    const o = h.append('c', bytes(1));
    expect(new PodHistory({ size: 3 }).since('c', o)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/another history/),
    });
    expect(h.since('c', 'nonsense')).toMatchObject({ ok: false, reason: 'malformed offset' });
    expect(h.since('c', `${h.epoch}-99`)).toMatchObject({ ok: false, reason: 'offset is in the future' });
    // a Redis stream id never names this history
    expect(h.since('c', '1700000000000-0')).toMatchObject({ ok: false });
  });

  it('evicts the least recently published channel beyond maxChannels and never replays across the eviction', () => {
    const h = new PodHistory({ size: 5, maxChannels: 2 });
    const old = h.append('x', bytes(1));
    h.append('y', bytes(2));
    h.append('z', bytes(3)); // evicts x
    expect(h.channels).toBe(2);
    expect(h.evictions).toBe(1);
    const again = h.append('x', bytes(4)); // a new incarnation: seq above every earlier one
    expect(seqOf(again)).toBeGreaterThan(seqOf(old));
    expect(h.since('x', old)).toMatchObject({ ok: false, reason: expect.stringMatching(/evicted/) });
    expect(h.since('x', again)).toMatchObject({ ok: true, entries: [] });
  });

  it('cuts a long replay at maxBytes (at least one entry) and resumes from the last entry of each page', () => {
    const h = new PodHistory({ size: 100 });
    const start = h.head('c');
    for (let i = 0; i < 10; i++) h.append('c', new Uint8Array(100).fill(i));
    const pages: number[][] = [];
    let from = start;
    for (;;) {
      const r = h.since('c', from, 250);
      if (!r.ok) throw new Error(r.reason);
      pages.push(r.entries.map((e) => e.payload[0]!));
      if (!r.more) break;
      from = r.entries.at(-1)!.offset;
    }
    expect(pages).toEqual([
      [0, 1],
      [2, 3],
      [4, 5],
      [6, 7],
      [8, 9],
    ]);
    expect(h.since('c', start, 1)).toMatchObject({
      ok: true,
      more: true,
      entries: [{ offset: expect.any(String) }],
    });
  });

  it('keeps at most maxBytes of payload, oldest first: the channel holding payloads the longest gives them up first', () => {
    const h = new PodHistory({ size: 100, maxBytes: 1000 });
    const quietHead = h.head('quiet');
    const quiet = [h.append('quiet', new Uint8Array(300)), h.append('quiet', new Uint8Array(300))];
    const busyHead = h.head('busy');
    const busy = Array.from({ length: 4 }, () => h.append('busy', new Uint8Array(100)));
    expect(h.bytes).toBe(1000);
    expect(h.dropped).toBe(0);

    // 200 more bytes: the quiet channel (holding payloads the longest) loses its oldest entry
    busy.push(h.append('busy', new Uint8Array(200)));
    expect(h.bytes).toBe(900);
    expect(h.dropped).toBe(1);
    expect(h.since('quiet', quietHead)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/no longer/),
    });
    expect(h.since('quiet', quiet[0]!)).toMatchObject({ ok: true, entries: [{ offset: quiet[1] }] });
    const all = h.since('busy', busyHead);
    expect(all.ok && all.entries.map((e) => e.offset)).toEqual(busy);

    // the channel itself and its offsets stay: a caught-up subscriber misses nothing
    h.append('busy', new Uint8Array(400)); // drops quiet[1]: 1300 -> 1000
    expect(h.channels).toBe(2);
    expect(h.bytes).toBe(1000);
    expect(h.since('quiet', quiet[1]!)).toMatchObject({ ok: true, entries: [] });
    expect(h.since('quiet', quiet[0]!)).toMatchObject({
      ok: false,
      reason: expect.stringMatching(/no longer/),
    });
    expect(h.head('quiet')).toBe(quiet[1]);
  });

  it('drops a payload larger than maxBytes at once but still numbers it', () => {
    const h = new PodHistory({ size: 10, maxBytes: 100 });
    const a = h.append('c', new Uint8Array(50));
    const big = h.append('c', new Uint8Array(500));
    expect(seqOf(big)).toBe(seqOf(a) + 1);
    expect(h.head('c')).toBe(big);
    expect(h.bytes).toBe(0);
    expect(h.dropped).toBe(2);
    expect(h.since('c', a)).toMatchObject({ ok: false, reason: expect.stringMatching(/no longer/) });
    expect(h.since('c', big)).toMatchObject({ ok: true, entries: [] });
    const next = h.append('c', new Uint8Array(10));
    expect(h.since('c', big)).toMatchObject({ ok: true, entries: [{ offset: next }] });
  });

  // Tight: the byte bound empties channels before they are evicted. Loose: channels are evicted holding bytes.
  it.each([1500, 3500])(
    'accounts bytes exactly through ring overwrites, byte drops and channel evictions (random operations, maxBytes %i)',
    (maxBytes) => {
      let seed = 7;
      const random = (n: number) => {
        seed = (seed * 1103515245 + 12345) % 2 ** 31;
        return seed % n;
      };
      const h = new PodHistory({ size: 5, maxChannels: 4, maxBytes });
      const appended = new Map<string, { before: string; offsets: string[]; sizes: Map<string, number> }>();
      for (let i = 0; i < 3000; i++) {
        const channel = `ch${random(6)}`;
        const size = 1 + random(400);
        const log = appended.get(channel) ?? { before: h.head(channel), offsets: [], sizes: new Map() };
        if (!appended.has(channel) || !h.since(channel, log.offsets.at(-1) ?? log.before).ok) {
          // new (or evicted and recreated) channel: start its log afresh
          log.before = h.head(channel);
          log.offsets = [];
        }
        appended.set(channel, log);
        const offset = h.append(channel, new Uint8Array(size));
        log.offsets.push(offset);
        log.sizes.set(offset, size);
        expect(h.bytes).toBeLessThanOrEqual(maxBytes);
        if (i % 50 !== 0) continue;
        // what each channel still replays is a suffix of what it was given, and the bytes add up
        let held = 0;
        for (const [name, { before, offsets, sizes }] of appended) {
          const from = [before, ...offsets];
          let kept: string[] | undefined;
          for (let k = from.length - 1; k >= 0; k--) {
            const r = h.since(name, from[k]!);
            if (!r.ok) break;
            kept = r.entries.map((e) => e.offset);
          }
          if (kept === undefined) {
            // not even the newest offset replays: the channel was evicted
            expect(h.since(name, from.at(-1)!)).toMatchObject({
              ok: false,
              reason: expect.stringMatching(/evicted/),
            });
            continue;
          }
          expect(kept).toEqual(offsets.slice(offsets.length - kept.length));
          for (const o of kept) held += sizes.get(o)!;
        }
        expect(held).toBe(h.bytes);
      }
      expect(h.dropped).toBeGreaterThan(0);
      expect(h.evictions).toBeGreaterThan(0);
    },
  );
});
