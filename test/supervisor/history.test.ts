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
});
