/**
 * Restart delay for crashing workers: exponential from `initialMs` to
 * `maxMs`, back to the start once a worker has stayed up for `resetMs`.
 */
export class Backoff {
  private failures = 0;

  constructor(
    private readonly initialMs: number,
    private readonly maxMs: number,
    private readonly resetMs: number,
  ) {}

  /** Record an exit after `uptimeMs` and return the delay before the next start. */
  next(uptimeMs: number): number {
    if (uptimeMs >= this.resetMs) this.failures = 0;
    const delay = Math.min(this.maxMs, this.initialMs * 2 ** this.failures);
    this.failures++;
    return delay;
  }

  get attempts(): number {
    return this.failures;
  }

  reset(): void {
    this.failures = 0;
  }
}
