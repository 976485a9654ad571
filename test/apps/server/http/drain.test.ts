/**
 * Drain on HTTP/2: GOAWAY to every session, open streams run to completion,
 * new streams on the session are refused, the server resolves when done.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Answer, connect2, get1, get2, type Served, serve } from './harness.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

describe('drain with HTTP/2 clients', () => {
  it('an h2c client with an open stream receives GOAWAY and the stream completes', async () => {
    served = await serve([]);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    const goaway = new Promise<number>((resolve) => session.once('goaway', (code) => resolve(code)));
    const open = get2(session, '/hold');
    await until(() => served!.http.inflight === 1 || undefined, 'the stream in flight');
    expect(served.http.connections).toBe(1);

    const drained = served.http.drain(Date.now() + 10_000);
    expect(await goaway).toBe(0); // NO_ERROR: a graceful shutdown
    let finished = false;
    void drained.then(() => {
      finished = true;
    });
    await new Promise((r) => setTimeout(r, 100));
    expect(finished).toBe(false); // still waiting for the open stream

    served.release();
    const answer: Answer = await open;
    expect(answer).toEqual({ status: 200, body: 'released' });
    await drained;
    expect(served.http.connections).toBe(0);
    expect(served.http.inflight).toBe(0);
  });

  it('a stream cut at the drain deadline fails at the client, never ends as if complete', async () => {
    served = await serve([]);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    session.on('error', () => {});
    // An answer longer than the drain: 1 GiB in 64 KiB chunks, read as it comes.
    const stream = session.request({ ':path': `/big-stream?bytes=${2 ** 30}` });
    let got = 0;
    stream.on('data', (d: Buffer) => {
      got += d.length;
    });
    const outcome = new Promise<string>((resolve) => {
      stream.once('end', () => resolve('end'));
      stream.once('error', (err: NodeJS.ErrnoException) => resolve(`error ${err.code}`));
      stream.once('close', () => resolve(`close ${stream.rstCode}`));
    });
    await until(() => got > 0 || undefined, 'the answer under way');
    await served.http.drain(Date.now() + 300);
    // Before: GOAWAY NO_ERROR, and the client's stream ended like a whole answer.
    expect(await outcome).toMatch(/^error ERR_HTTP2_(SESSION|STREAM)_ERROR/);
    expect(got).toBeLessThan(2 ** 30);
    session.destroy();
  });

  it('HTTP/1.1 and HTTP/2 in flight at once: both answered, then the listener is gone', async () => {
    served = await serve([]);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    session.on('error', () => {});
    const h2 = get2(session, '/hold');
    const h1 = get1(served.port, '/hold');
    await until(() => served!.http.inflight === 2 || undefined, 'two requests in flight');
    const drained = served.http.drain(Date.now() + 10_000);
    await new Promise((r) => setTimeout(r, 50));
    served.release();
    expect(await h2).toMatchObject({ status: 200, body: 'released' });
    expect(await h1).toMatchObject({ status: 200, body: 'released' });
    await drained;
    await expect(get1(served.port)).rejects.toThrow(/ECONNREFUSED/);
  });
});
