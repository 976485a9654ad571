import { describe, expect, it } from 'vitest';
import { PodHistory } from '../../supervisor/history.js';

describe('PodHistory under a payload larger than the whole byte budget', () => {
  it('delivers it unkept without emptying the other channels', () => {
    const h = new PodHistory({ size: 100, maxBytes: 1000 });
    const before = h.head('quiet');
    const quiet = [1, 2, 3].map(() => h.append('quiet', new Uint8Array(100)));
    const small = h.append('busy', new Uint8Array(50));
    const giant = h.append('busy', new Uint8Array(5000));
    // the other channel keeps everything it had
    expect(h.since('quiet', before)).toMatchObject({
      ok: true,
      entries: quiet.map((offset) => ({ offset })),
    });
    expect(h.bytes).toBe(300);
    // the giant one's own channel: offsets before it are refused, from it on nothing is missing
    expect(h.since('busy', small)).toMatchObject({ ok: false, reason: expect.stringMatching(/no longer/) });
    expect(h.since('busy', giant)).toMatchObject({ ok: true, entries: [] });
    const next = h.append('busy', new Uint8Array(10));
    expect(h.since('busy', giant)).toMatchObject({ ok: true, entries: [{ offset: next }] });
    expect(h.dropped).toBe(2);
  });
});
