/**
 * The supervisor's pod replay windows (supervisor/replay.ts): one per hub
 * and setting, holding the hub's cache size once per worker slot, bounded in
 * number; every claim is answered.
 */
import { describe, expect, it } from 'vitest';
import type { NonceClaim } from '../../supervisor/ipc.js';
import { PodReplayWindows } from '../../supervisor/replay.js';

const nowNs = () => BigInt(Date.now()) * 1_000_000n;
let counter = 0;
/** `n` distinct nonces, stamped now. */
function claimOf(n: number, fields: Partial<NonceClaim> = {}): NonceClaim {
  const nonces = Array.from({ length: n }, () => {
    const nonce = new Uint8Array(12);
    new DataView(nonce.buffer).setUint32(0, ++counter);
    return nonce;
  });
  return {
    id: counter,
    topic: '/ws',
    windowMs: 30_000,
    maxEntries: 10,
    nonces,
    stamps: nonces.map(nowNs),
    ...fields,
  };
}

describe('PodReplayWindows', () => {
  it("grants a nonce once across every worker's claims and refuses it after, in the order given", () => {
    const windows = new PodReplayWindows(() => 2);
    const first = claimOf(3);
    expect(windows.claim(first).verdicts).toEqual(['', '', '']);
    const again = {
      ...claimOf(1),
      nonces: [first.nonces[1]!, claimOf(1).nonces[0]!],
      stamps: [nowNs(), nowNs()],
    };
    expect(windows.claim(again).verdicts).toEqual([expect.stringContaining('already seen'), '']);
  });

  it('holds the hub cache size once per worker slot, then fails closed on older stamps', () => {
    let slots = 3;
    const windows = new PodReplayWindows(() => slots);
    const early = claimOf(30);
    expect(windows.claim(early).verdicts.every((v) => v === '')).toBe(true);
    expect(windows.size).toBe(30);
    slots = 1; // read once, when the window is made
    const later = claimOf(1);
    expect(windows.claim(later).verdicts).toEqual(['']);
    expect(windows.size).toBe(30);
    // a frame stamped before the nonce dropped to make room is refused: it could be a replay
    expect(windows.claim({ ...claimOf(1), stamps: [early.stamps[0]! - 1n] }).verdicts[0]).toContain(
      'nonce cache is full',
    );
  });

  it('keeps at most 64 windows: claims on a 65th setting are refused, not remembered', () => {
    const windows = new PodReplayWindows(() => 1);
    for (let w = 1; w <= 64; w++)
      expect(windows.claim(claimOf(1, { windowMs: 30_000 + w })).verdicts).toEqual(['']);
    const sizeBefore = windows.size;
    expect(windows.claim(claimOf(2, { windowMs: 99_999 })).verdicts).toEqual([
      expect.stringContaining('at most 64 replay windows'),
      expect.stringContaining('at most 64 replay windows'),
    ]);
    expect(windows.size).toBe(sizeBefore);
    // the windows it has still answer
    expect(windows.claim(claimOf(1, { windowMs: 30_001 })).verdicts).toEqual(['']);
  });
});
