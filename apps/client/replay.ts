/**
 * The replay window, shared by the hub's guard (`websocket.security.replay_window`,
 * apps/server/ws/security.ts) and the client's (opt-in, `security.replayWindowMs`):
 * a sealed frame is refused when its nonce (GCM nonce, or the MAC when only
 * HMAC is used) was seen before, or when its timestamp is further than the
 * window from now. No Node APIs, so that browsers run it too.
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
 * stamped up to a window ahead of the clock, and it passes the timestamp
 * check until a window after its stamp.
 *
 * Memory is bounded by `maxEntries`. A nonce forgotten early, to make room,
 * could otherwise be replayed while its timestamp is still in the window, so
 * the window then refuses every frame stamped at or before the newest stamp
 * it forgot, capped at that frame's arrival (fail closed): under such a load
 * only senders whose clocks lag behind by more than the cache spans are
 * refused. The cap keeps a sender stamping ahead of the clock from pushing
 * the line past the present for everyone; its own frames, stamped after
 * their arrival, are then the ones a replay could slip through with.
 */
export class ReplayWindow {
  private readonly seen = new Map<string, Seen>();
  private readonly windowMs: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  /** Frames stamped (µs) at or before this are refused: nonces up to it were forgotten before their time. */
  private forgottenUpToUs = Number.NEGATIVE_INFINITY;

  constructor(options: ReplayGuardOptions) {
    this.windowMs = options.windowMs;
    this.maxEntries = Math.max(1, options.maxEntries);
    this.now = options.now ?? Date.now;
  }

  get size(): number {
    return this.seen.size;
  }

  /** Why the frame is refused; undefined once its nonce is recorded. A timestamp of 0 counts as missing. */
  refusal(nonce: Uint8Array, timestampNs: bigint): string | undefined {
    const now = this.now();
    if (timestampNs === 0n) return 'frame has no timestamp';
    const ageMs = now - Number(timestampNs / 1_000_000n);
    if (ageMs > this.windowMs || ageMs < -this.windowMs)
      return `timestamp is ${ageMs} ms from now, outside the replay window of ${this.windowMs} ms`;
    const stampUs = Number(timestampNs / 1_000n);
    const key = nonceKey(nonce);
    this.expire(now);
    if (this.seen.has(key)) return 'nonce already seen before (a replay)';
    if (stampUs <= this.forgottenUpToUs)
      return 'the nonce cache is full and the timestamp is not after the nonces it had to forget';
    if (this.seen.size >= this.maxEntries) {
      const [oldest, entry] = this.seen.entries().next().value as [string, Seen];
      this.seen.delete(oldest);
      // at most its arrival: a sender stamping ahead of the clock must not refuse everyone's present
      const line = Math.min(entry.stampUs, entry.at * 1000);
      if (line > this.forgottenUpToUs) this.forgottenUpToUs = line;
    }
    this.seen.set(key, { at: now, stampUs });
    return undefined;
  }

  private expire(now: number): void {
    const hold = 2 * this.windowMs;
    for (const [key, entry] of this.seen) {
      if (now - entry.at <= hold) break;
      this.seen.delete(key);
    }
  }
}

/** The nonce's bytes as a string key (one char per byte). */
function nonceKey(nonce: Uint8Array): string {
  let key = '';
  for (const byte of nonce) key += String.fromCharCode(byte);
  return key;
}

/** The client's guard: a refused frame throws a SecurityError HYP_E_WS_REPLAY. */
export class ClientReplayGuard {
  private readonly window: ReplayWindow;

  constructor(options: ReplayGuardOptions) {
    this.window = new ReplayWindow(options);
  }

  get size(): number {
    return this.window.size;
  }

  /** Throws a SecurityError HYP_E_WS_REPLAY, else records the nonce. */
  check(nonce: Uint8Array, timestampNs: bigint): void {
    const why = this.window.refusal(nonce, timestampNs);
    if (why !== undefined) throw new SecurityError('HYP_E_WS_REPLAY', why);
  }
}
