/**
 * Drain with HTTP/1.1 pipelining: `Connection: close` goes on the response to
 * the newest request of a socket only. Put on an earlier one, Node closes the
 * socket after it and the answers queued behind it are lost — requests the
 * app had already run.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from './harness.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

/** A raw connection: what was read, and a promise of all of it at close. */
function open(port: number): Promise<{ socket: Socket; closed: Promise<string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => resolve({ socket, closed }));
    let got = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      got += d;
    });
    const closed = new Promise<string>((r) => socket.on('close', () => r(got)));
    socket.on('error', reject);
  });
}

/** Status line, `connection` header value and body of each response, in order. */
function responses(raw: string): Array<{ status: number; connection: string | undefined; body: string }> {
  const out = [];
  let rest = raw;
  while (rest.length > 0) {
    const end = rest.indexOf('\r\n\r\n');
    const head = rest.slice(0, end);
    const length = Number(/\r\ncontent-length: (\d+)/i.exec(head)?.[1] ?? 0);
    out.push({
      status: Number(head.slice(9, 12)),
      connection: /\r\nconnection: ([^\r]+)/i.exec(head)?.[1]?.toLowerCase(),
      body: rest.slice(end + 4, end + 4 + length),
    });
    rest = rest.slice(end + 4 + length);
  }
  return out;
}

const get = (path: string) => `GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`;

describe('drain with pipelined HTTP/1.1 requests', () => {
  it('two pipelined requests in flight when drain starts: both answered, only the second says close', async () => {
    served = await serve([]);
    const { socket, closed } = await open(served.port);
    socket.write(get('/hold') + get('/hold'));
    await until(() => served!.http.inflight === 2 || undefined, 'both requests in flight');
    const drained = served.http.drain(Date.now() + 10_000);
    served.release();
    expect(responses(await closed)).toEqual([
      { status: 200, connection: 'keep-alive', body: 'released' },
      { status: 200, connection: 'close', body: 'released' },
    ]);
    await drained;
    expect(served.http.connections).toBe(0);
  });

  it('a request pipelined behind a pending one after drain started: both answered, the later one says close', async () => {
    served = await serve([]);
    const { socket, closed } = await open(served.port);
    socket.write(get('/hold'));
    await until(() => served!.http.inflight === 1 || undefined, 'the first request in flight');
    const drained = served.http.drain(Date.now() + 10_000);
    socket.write(get('/hold'));
    await until(() => served!.http.inflight === 2 || undefined, 'the queued request in flight');
    served.release();
    expect(responses(await closed)).toEqual([
      { status: 200, connection: 'keep-alive', body: 'released' },
      { status: 200, connection: 'close', body: 'released' },
    ]);
    await drained;
  });
});
