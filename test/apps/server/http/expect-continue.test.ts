/**
 * `Expect: 100-continue` on HTTP/1.1: the client is told to send its body
 * only when hyp will read it. A Content-Length over `server.limits.body_limit`
 * is refused with 413 before any `100 Continue`, and a handler that answers
 * without reading (401) never asks for the body; a route that allows more
 * than the server-wide limit gets its body once it starts reading.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type Served, serve } from './harness.js';

let served: Served | undefined;
const sockets: Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await served?.close();
  served = undefined;
});

/** What the server has sent on a socket, and whether it closed. */
class Peer {
  text = '';
  ended = false;
  private waiters: Array<() => void> = [];
  constructor(readonly socket: Socket) {
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      this.text += d;
      this.wake();
    });
    socket.on('close', () => {
      this.ended = true;
      this.wake();
    });
    socket.on('error', () => {});
  }
  private wake(): void {
    for (const w of this.waiters.splice(0)) w();
  }
  /** Wait (at most 10 s) until `check` holds. */
  async until(check: (p: Peer) => boolean): Promise<void> {
    const end = Date.now() + 10_000;
    while (!check(this) && Date.now() < end) {
      await new Promise<void>((resolve) => {
        this.waiters.push(resolve);
        setTimeout(resolve, 100);
      });
    }
    expect(check(this), `server sent: ${JSON.stringify(this.text)}`).toBe(true);
  }
}

async function open(port: number): Promise<Peer> {
  const socket = connect(port, '127.0.0.1');
  sockets.push(socket);
  await new Promise((resolve) => socket.once('connect', resolve));
  return new Peer(socket);
}

function head(path: string, length: number): string {
  return `POST ${path} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\nContent-Length: ${length}\r\nExpect: 100-continue\r\n\r\n`;
}

const final = /HTTP\/1\.1 [2-5]\d\d /;

describe('Expect: 100-continue', () => {
  it('a body within the limit: 100 Continue at once, then the answer, and the connection stays usable', async () => {
    served = await serve([]);
    const peer = await open(served.port);
    peer.socket.write(head('/echo', 5));
    await peer.until((p) => p.text.startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    peer.socket.write('hello');
    await peer.until((p) => /\r\n\r\nhello$/.test(p.text));
    expect(peer.text).toMatch(/HTTP\/1\.1 200 /);
    peer.socket.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await peer.until((p) => p.text.endsWith('protocol 1.1'));
  });

  it('a Content-Length over body_limit: 413 without a 100 Continue, then the connection closes', async () => {
    served = await serve(['server.limits.body_limit=1KiB']);
    const peer = await open(served.port);
    peer.socket.write(head('/echo', 5000));
    await peer.until((p) => final.test(p.text) && p.ended);
    expect(peer.text).toMatch(/^HTTP\/1\.1 413 /);
    expect(peer.text).toContain('HYP_E_BODY_TOO_LARGE');
    expect(peer.text).not.toContain('100 Continue');
  });

  it('a handler that answers without reading: its answer without a 100 Continue, then the connection closes', async () => {
    served = await serve(['server.limits.body_limit=1KiB']);
    const peer = await open(served.port);
    peer.socket.write(head('/deny', 5000));
    await peer.until((p) => final.test(p.text) && p.ended);
    expect(peer.text).toMatch(/^HTTP\/1\.1 401 /);
    expect(peer.text).not.toContain('100 Continue');
  });

  it('a route that allows more than body_limit: 100 Continue when it starts reading, then its answer', async () => {
    served = await serve(['server.limits.body_limit=1KiB']);
    const peer = await open(served.port);
    peer.socket.write(head('/upload', 5000));
    await peer.until((p) => p.text.startsWith('HTTP/1.1 100 Continue\r\n\r\n'));
    peer.socket.write('x'.repeat(5000));
    await peer.until((p) => p.text.endsWith('got 5000'));
    expect(peer.text).toMatch(/HTTP\/1\.1 200 /);
  });
});
