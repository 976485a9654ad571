import { describe, expect, it } from 'vitest';
import { ConnectionRateLimiter } from '../../../../apps/server/tcp/ratelimit.js';

describe('the per-IP connection rate limiter (token bucket, fake clock)', () => {
  it('allows a burst, then one connection per refill interval', () => {
    let now = 0;
    const limiter = new ConnectionRateLimiter(2, 3, () => now);
    expect([1, 2, 3, 4].map(() => limiter.take('10.0.0.1'))).toEqual([true, true, true, false]);
    now += 499;
    expect(limiter.take('10.0.0.1')).toBe(false);
    now += 1;
    expect(limiter.take('10.0.0.1')).toBe(true);
    expect(limiter.take('10.0.0.1')).toBe(false);
  });

  it('keeps one bucket per address', () => {
    const limiter = new ConnectionRateLimiter(1, 1, () => 0);
    expect(limiter.take('a')).toBe(true);
    expect(limiter.take('a')).toBe(false);
    expect(limiter.take('b')).toBe(true);
  });

  it('forgets addresses whose bucket has refilled, so memory follows recent clients', () => {
    let now = 0;
    const limiter = new ConnectionRateLimiter(10, 5, () => now);
    for (let i = 0; i < 1000; i++) limiter.take(`10.0.${i >> 8}.${i & 255}`);
    expect(limiter.size).toBe(1000);
    now = 20_000;
    limiter.take('192.0.2.1');
    expect(limiter.size).toBe(1);
  });

  it('tracks at most maxAddresses within a refill window, forgetting the least recently seen first', () => {
    // A slow refill keeps every bucket for ~17 minutes: without a cap, a flood from
    // many distinct addresses (an IPv6 prefix) would grow the map without bound.
    let now = 0;
    const limiter = new ConnectionRateLimiter(0.02, 20, () => now, 1000);
    let admitted = 0;
    for (let i = 0; i < 50_000; i++) {
      now += 1;
      limiter.take(`2001:db8::${i.toString(16)}`);
      // a client that keeps coming back, 500 times in 50 s
      if (i % 100 === 0 && limiter.take('198.51.100.7')) admitted++;
      expect(limiter.size).toBeLessThanOrEqual(1000);
    }
    // its bucket was kept throughout: one burst (50 s refill is under one token), never a fresh bucket
    expect(admitted).toBe(20);
  });

  it('rejects nonsensical settings', () => {
    expect(() => new ConnectionRateLimiter(0, 1)).toThrow(RangeError);
    expect(() => new ConnectionRateLimiter(1, 0)).toThrow(RangeError);
    expect(() => new ConnectionRateLimiter(1, 1, Date.now, 0)).toThrow(RangeError);
  });
});
