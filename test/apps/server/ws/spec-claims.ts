/**
 * A hub's replay claims (its `replayClaims` hook) decided by the spec, frame by frame: a claim
 * refused stands for a claim store that failed closed (a Redis error, no supervisor answer within
 * 5 s), a claim held for a slow one. Every sealed frame waits for its claim's verdict, in order per
 * connection, so a spec can refuse or hold one given frame of a client.
 */
import { PendingFlow } from '../../../../apps/server/ws/flow.js';
import type { ClaimVerdict, NonceClaims } from '../../../../apps/server/ws/nonce-claims.js';

/**
 * Each claim takes the next verdict of `plan` ('' grants, 'hold' waits for `release()`, any
 * other text refuses with it); past the plan every claim is granted. Verdicts come on a later
 * turn, as the real ones do.
 */
export class SpecClaims implements NonceClaims {
  readonly flow = new PendingFlow();
  plan: string[] = [];
  private readonly held: Array<() => void> = [];

  /** Claims held, waiting for `release()`. */
  get holding(): number {
    return this.held.length;
  }

  claim(_nonce: Uint8Array, _timestampNs: bigint, bytes: number, done: ClaimVerdict): void {
    const verdict = this.plan.shift() ?? '';
    if (verdict === 'hold') this.held.push(() => done('', bytes));
    else setImmediate(() => done(verdict, bytes));
  }

  /** Grants the claims held. */
  release(): void {
    for (const fn of this.held.splice(0)) fn();
  }

  async close(): Promise<void> {
    this.release();
  }
}
