/**
 * The client's replay guard (opt-in, `security.replayWindowMs`), the hub's
 * `websocket.security.replay_window` seen from the other end: a sealed frame
 * is refused when its nonce (GCM nonce, or the MAC when only HMAC is used)
 * was seen before, or when its timestamp is further than the window from
 * now. Same rule and bounds as the hub's guard (apps/server/ws/security.ts),
 * without Node APIs, so that browsers run it too.
 */
import { SecurityError } from './security.js';

export interface ReplayGuardOptions {
  /** Frames stamped further than this from now (either way) are refused. */
  windowMs: number;
  /** Nonces remembered; the oldest are forgotten first. */
  maxEntries: number;
  now?: () => number;
}

interface Seen {
  /** Arrival, ms on the guard's clock. */
  at: number;
  /** The frame's own timestamp, in microseconds. */
  stampUs: number;
}

/**
 * A nonce is remembered for two windows after its arrival: a frame may be
 * stamped up to a window ahead of the clock and passes the timestamp check
 * until a window after its stamp. Memory is bounded by `maxEntries`; a nonce
 * forgotten early to make room could be replayed while its stamp is still in
 * the window, so the guard then refuses every frame stamped at or before the
 * newest stamp it forgot, capped at that frame's arrival (fail closed).
 */
export class ClientReplayGuard {
  private readonly seen = new Map<string, Seen>();
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private forgottenUpToUs = Number.NEGATIVE_INFINITY;

  constructor(options: ReplayGuardOptions) {
    this.windowMs = options.windowMs;
    this.maxEntries = Math.max(1, options.maxEntries);
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.seen.size;
  }

  /** Throws a SecurityError HYP_E_WS_REPLAY, else records the nonce. A timestamp of 0 counts as missing. */
  check(nonce: Uint8Array, timestampNs: bigint): void {
    const now = this.now();
    if (timestampNs === 0n) throw new SecurityError('HYP_E_WS_REPLAY', 'frame has no timestamp');
    const ageMs = now - Number(timestampNs / 1_000_000n);
    if (ageMs > this.windowMs || ageMs < -this.windowMs) {
      throw new SecurityError(
        'HYP_E_WS_REPLAY',
        `frame timestamp is ${ageMs} ms from now, outside the replay window of ${this.windowMs} ms`,
      );
    }
    const stampUs = Number(timestampNs / 1_000n);
    const key = String.fromCharCode(...nonce);
    this.expire(now);
    if (this.seen.has(key)) throw new SecurityError('HYP_E_WS_REPLAY', 'frame seen before (nonce repeated)');
    if (stampUs <= this.forgottenUpToUs) {
      throw new SecurityError(
        'HYP_E_WS_REPLAY',
        'the nonce cache is full and the frame is not stamped after the nonces it had to forget',
      );
    }
    if (this.seen.size >= this.maxEntries) {
      const [oldest, entry] = this.seen.entries().next().value as [string, Seen];
      this.seen.delete(oldest);
      const line = Math.min(entry.stampUs, entry.at * 1000);
      if (line > this.forgottenUpToUs) this.forgottenUpToUs = line;
    }
    this.seen.set(key, { at: now, stampUs });
  }

  private expire(now: number): void {
    const hold = 2 * this.windowMs;
    for (const [key, entry] of this.seen) {
      if (now - entry.at <= hold) break;
      this.seen.delete(key);
    }
  }
}
