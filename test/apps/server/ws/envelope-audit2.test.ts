import { afterEach, describe, expect, it, vi } from 'vitest';
import { nowNs } from '../../../../apps/server/ws/envelope.js';

afterEach(() => {
  vi.useRealTimers();
});

/** nowNs() in ms, against the (possibly faked) wall clock. */
function skewMs(): number {
  return Number(nowNs() / 1_000_000n) - Date.now();
}

describe('nowNs follows the wall clock', () => {
  it('after the wall clock moves ahead of the monotonic clock (a laptop waking from sleep), stamps follow it', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    // suspend: the monotonic clock (performance.now) did not run, the wall clock did
    vi.setSystemTime(Date.now() + 3_600_000);
    expect(Math.abs(skewMs())).toBeLessThan(1_000);
  });

  it('a wall clock stepped back by more than a second is followed', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    nowNs();
    vi.setSystemTime(Date.now() - 3_600_000);
    expect(Math.abs(skewMs())).toBeLessThan(1_000);
  });

  it('stamps never run backwards for a small step back of the wall clock, and never repeat', () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const before = nowNs();
    vi.setSystemTime(Date.now() - 50);
    const after = nowNs();
    expect(after).toBeGreaterThan(before);
    const stamps = Array.from({ length: 10_000 }, () => nowNs());
    expect(stamps.every((t, i) => i === 0 || t > stamps[i - 1]!)).toBe(true);
  });
});
