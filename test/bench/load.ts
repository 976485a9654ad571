/**
 * A bounded keep-alive HTTP/1.1 load loop on undici: `connections` lanes,
 * each sending one request at a time on a pooled keep-alive connection, until
 * `requests` have been sent or `maxMs` has passed. Every failure is kept with
 * its error code, so a test can tell a refused connection from a reset.
 */
import { Pool } from 'undici';

export interface LoadOptions {
  url: string;
  path?: string;
  connections: number;
  requests: number;
  /** Upper bound on run time; the loop stops early if reached. */
  maxMs?: number;
  /** Stop when this resolves (in addition to the bounds). */
  until?: Promise<unknown>;
}

export interface LoadResult {
  sent: number;
  ok: number;
  failed: number;
  errors: Record<string, number>;
  statuses: Record<string, number>;
  latenciesMs: number[];
  elapsedMs: number;
}

export function median(xs: readonly number[]): number {
  const sorted = [...xs].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

export function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  const i = Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1);
  return sorted[Math.max(0, i)]!;
}

export class LoadRun {
  readonly result: LoadResult = {
    sent: 0,
    ok: 0,
    failed: 0,
    errors: {},
    statuses: {},
    latenciesMs: [],
    elapsedMs: 0,
  };
  private stopped = false;
  readonly done: Promise<LoadResult>;

  constructor(private readonly opts: LoadOptions) {
    this.done = this.run();
  }

  stop(): void {
    this.stopped = true;
  }

  private async run(): Promise<LoadResult> {
    const { opts, result } = this;
    const pool = new Pool(opts.url, {
      connections: opts.connections,
      pipelining: 1,
      keepAliveTimeout: 30_000,
    });
    const start = performance.now();
    const end = start + (opts.maxMs ?? 120_000);
    void opts.until?.then(() => this.stop());
    const lane = async () => {
      while (!this.stopped && result.sent < opts.requests && performance.now() < end) {
        result.sent++;
        const t0 = performance.now();
        try {
          const res = await pool.request({ path: opts.path ?? '/api/ping', method: 'GET' });
          await res.body.text();
          result.statuses[res.statusCode] = (result.statuses[res.statusCode] ?? 0) + 1;
          if (res.statusCode === 200) result.ok++;
          else result.failed++;
        } catch (err) {
          result.failed++;
          const code = (err as { code?: string }).code ?? (err as Error).name;
          result.errors[code] = (result.errors[code] ?? 0) + 1;
        }
        result.latenciesMs.push(performance.now() - t0);
      }
    };
    await Promise.all(Array.from({ length: opts.connections }, lane));
    result.elapsedMs = performance.now() - start;
    await pool.close();
    return result;
  }
}

export function summarize(r: LoadResult): string {
  const sorted = [...r.latenciesMs].sort((a, b) => a - b);
  const errors = Object.entries(r.errors)
    .map(([k, v]) => `${k}=${v}`)
    .join(' ');
  return `sent=${r.sent} ok=${r.ok} failed=${r.failed}${errors ? ` (${errors})` : ''} p50=${percentile(sorted, 50).toFixed(2)}ms p99=${percentile(sorted, 99).toFixed(2)}ms rps=${Math.round((r.sent / r.elapsedMs) * 1000)}`;
}
