/**
 * h2c through the real supervisor across rolling restarts: old workers send
 * GOAWAY and finish their open streams; streams the client opened after a
 * GOAWAY (never processed, RFC 9113 §6.8) are retried on a new connection,
 * as HTTP/2 clients do. No stream fails.
 */
import { type ClientHttp2Session, connect } from 'node:http2';
import { afterEach, describe, expect, it } from 'vitest';
import { fixtureApp, type Running, startSupervisor, until } from '../../../helpers/supervisor.js';

let sup: Running | undefined;
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

/** Errors that mean "not processed by the server": safe to retry elsewhere. */
function unprocessed(err: NodeJS.ErrnoException & { rstCode?: number }): boolean {
  return (
    err.code === 'ERR_HTTP2_GOAWAY_SESSION' ||
    err.code === 'ERR_HTTP2_INVALID_SESSION' ||
    err.code === 'ERR_HTTP2_STREAM_CANCEL' ||
    /REFUSED_STREAM/.test(err.message)
  );
}

class H2Load {
  ok = 0;
  retried = 0;
  failures: string[] = [];
  goaways = 0;
  private session: ClientHttp2Session | undefined;
  private stopped = false;

  constructor(private readonly port: number) {}

  private current(): ClientHttp2Session {
    if (!this.session || this.session.closed || this.session.destroyed) {
      const s = connect(`http://127.0.0.1:${this.port}`);
      s.on('error', () => {});
      s.on('goaway', () => {
        this.goaways++;
        if (this.session === s) this.session = undefined;
      });
      this.session = s;
    }
    return this.session;
  }

  private once(): Promise<'ok' | 'retry'> {
    return new Promise((resolve) => {
      let settled = false;
      const done = (v: 'ok' | 'retry', failure?: string) => {
        if (settled) return;
        settled = true;
        if (failure) this.failures.push(failure);
        resolve(v);
      };
      let stream: ReturnType<ClientHttp2Session['request']>;
      try {
        stream = this.current().request({ ':path': '/api/ping' });
      } catch (err) {
        return unprocessed(err as NodeJS.ErrnoException) ? done('retry') : done('retry', String(err));
      }
      let status = 0;
      let body = '';
      stream.setEncoding('utf8');
      stream.on('response', (h) => {
        status = Number(h[':status']);
      });
      stream.on('data', (d: string) => {
        body += d;
      });
      stream.on('error', (err: NodeJS.ErrnoException) => {
        if (status === 0 && unprocessed(err)) done('retry');
        else done('retry', `${err.code}: ${err.message}`);
      });
      stream.on('close', () => {
        if (status === 200 && body === 'pong') done('ok');
        else if (status === 0 && stream.rstCode === 7 /* REFUSED_STREAM */) done('retry');
        else done('retry', `status ${status} rst ${stream.rstCode} body ${JSON.stringify(body)}`);
      });
      stream.end();
    });
  }

  async lane(maxMs: number): Promise<void> {
    const end = Date.now() + maxMs;
    while (!this.stopped && Date.now() < end) {
      const r = await this.once();
      if (r === 'ok') this.ok++;
      else this.retried++;
      if (this.retried > 10_000) return;
    }
  }

  stop(): void {
    this.stopped = true;
    this.session?.close();
  }
}

describe('h2c across rolling restarts', () => {
  it('3 rolling restarts under h2c load (16 concurrent streams): GOAWAY seen, 0 failed streams', async () => {
    sup = await startSupervisor({ app: fixtureApp('basic'), workers: 2 });
    const before = await sup.status();
    const load = new H2Load(sup.httpPort);
    const lanes = Promise.all(Array.from({ length: 16 }, () => load.lane(90_000)));
    await until(() => load.ok > 200 || undefined, 'load running');
    for (let i = 1; i <= 3; i++) {
      const res = await sup.admin('/restart?wait=1', { method: 'POST' });
      expect(((await res.json()) as { ok: boolean }).ok).toBe(true);
      await sup.waitFor((s) => s.other_workers.length === 0, 'old generation gone');
    }
    const okAfter = load.ok;
    await until(() => load.ok > okAfter + 200 || undefined, 'load continuing on the new generation');
    load.stop();
    await lanes;
    console.log(
      `h2c rolling restarts x3: ok=${load.ok} retried-after-goaway=${load.retried} goaways=${load.goaways}`,
    );
    expect(load.failures).toEqual([]);
    expect(load.goaways).toBeGreaterThanOrEqual(1);
    expect((await sup.status()).generation).toBe(before.generation + 3);
  });
});
