/**
 * Keep-alive HTTP load: `connections` persistent connections, each with one
 * request in flight at a time, until stopped or until `maxRequests` or
 * `maxMs` (the loop is always bounded). Every answer that is not a 200 with
 * the expected body counts as a failure, with its reason.
 */
import { Pool } from 'undici';

export interface LoadOptions {
  readonly origin: string;
  readonly path: string;
  readonly expectBody: string;
  readonly connections: number;
  readonly maxRequests: number;
  readonly maxMs: number;
}

export interface LoadResult {
  readonly requests: number;
  readonly ok: number;
  readonly failed: number;
  readonly reasons: Record<string, number>;
  readonly ms: number;
}

export class HttpLoad {
  private stopping = false;
  private requests = 0;
  private ok = 0;
  private readonly reasons: Record<string, number> = {};
  private readonly pool: Pool;
  private readonly started = Date.now();
  private readonly done: Promise<void>;

  constructor(private readonly opts: LoadOptions) {
    this.pool = new Pool(opts.origin, {
      connections: opts.connections,
      pipelining: 1,
      keepAliveTimeout: 60_000,
      headersTimeout: 30_000,
      bodyTimeout: 30_000,
    });
    const loops: Promise<void>[] = [];
    for (let i = 0; i < opts.connections; i++) loops.push(this.loop());
    this.done = Promise.all(loops).then(() => undefined);
  }

  private fail(reason: string): void {
    this.reasons[reason] = (this.reasons[reason] ?? 0) + 1;
  }

  private async loop(): Promise<void> {
    const deadline = this.started + this.opts.maxMs;
    while (!this.stopping && this.requests < this.opts.maxRequests && Date.now() < deadline) {
      this.requests++;
      try {
        const res = await this.pool.request({ path: this.opts.path, method: 'GET' });
        const body = await res.body.text();
        if (res.statusCode === 200 && body === this.opts.expectBody) this.ok++;
        else this.fail(`HTTP ${res.statusCode}`);
      } catch (err) {
        this.fail((err as { code?: string }).code ?? (err as Error).message);
      }
    }
  }

  get counts(): { requests: number; ok: number } {
    return { requests: this.requests, ok: this.ok };
  }

  async stop(): Promise<LoadResult> {
    this.stopping = true;
    await this.done;
    await this.pool.close();
    const failed = Object.values(this.reasons).reduce((a, b) => a + b, 0);
    return {
      requests: this.requests,
      ok: this.ok,
      failed,
      reasons: { ...this.reasons },
      ms: Date.now() - this.started,
    };
  }
}
