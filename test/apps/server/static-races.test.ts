/**
 * Static files that change between `send`'s stat (which fixes Content-Length)
 * and the read: the bytes on the wire must never disagree with the head.
 * The change is made deterministic by hooking `fs.createReadStream`, which
 * `send` calls right after its stat.
 */
import fs, { appendFileSync, mkdtempSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { createServer as createH2Server, connect as h2connect, constants as h2constants } from 'node:http2';
import { type AddressInfo, connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { App } from '../../../apps/server/app.js';
import { type Served, serve } from './serve.js';

let dir: string;
let served: Served;
let port: number;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hyp-static-races-'));
  served = await serve((app) => app.static('/s', dir));
  port = Number(new URL(served.url).port);
});
afterAll(async () => {
  await served.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  vi.restoreAllMocks();
});

/** Run `change` on `name` when `send` opens it for reading. */
function changeOnRead(name: string, change: (path: string) => void): void {
  const original = fs.createReadStream;
  vi.spyOn(fs, 'createReadStream').mockImplementation(((path: fs.PathLike, options: unknown) => {
    if (String(path).endsWith(`/${name}`)) change(String(path));
    return original(path, options as Parameters<typeof original>[1]);
  }) as typeof fs.createReadStream);
}

/**
 * Two pipelined requests on one connection; everything the server sent,
 * until it closed the connection or the second answer was complete.
 */
function pipelined(first: string, second: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => {
      socket.write(`GET ${first} HTTP/1.1\r\nhost: x\r\n\r\nGET ${second} HTTP/1.1\r\nhost: x\r\n\r\n`);
    });
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      out += d;
      if (out.endsWith('second-file')) socket.destroy();
    });
    socket.on('error', reject);
    socket.on('close', () => resolve(out));
  });
}

describe('a static file changing while it is sent (HTTP/1.1)', () => {
  it('truncated after the head was decided: the connection is cut, the next response is not framed as its body', async () => {
    writeFileSync(join(dir, 'shrinks.txt'), 'hello world');
    writeFileSync(join(dir, 'second.txt'), 'second-file');
    changeOnRead('shrinks.txt', (path) => truncateSync(path, 5));
    const out = await pipelined('/s/shrinks.txt', '/s/second.txt');
    expect(out).toContain('Content-Length: 11\r\n');
    expect(out.endsWith('\r\n\r\nhello')).toBe(true);
    // Before: the short body was "complete" and the second answer followed,
    // its first 6 bytes read by the client as the rest of the first body.
    expect(out.match(/HTTP\/1\.1 200/g)).toHaveLength(1);
  });

  it('announced empty, then grown: no byte follows the Content-Length: 0 head', async () => {
    writeFileSync(join(dir, 'grows.txt'), '');
    writeFileSync(join(dir, 'second.txt'), 'second-file');
    changeOnRead('grows.txt', (path) => appendFileSync(path, 'GROWN'));
    const out = await pipelined('/s/grows.txt', '/s/second.txt');
    const [firstHead = '', rest = ''] = out.split(/(?<=\r\n\r\n)/, 2);
    expect(firstHead).toContain('Content-Length: 0\r\n');
    // Before: `send` read 1 byte of the grown file after the head ("GHTTP/1.1 200 ...").
    expect(rest.startsWith('HTTP/1.1 200 OK')).toBe(true);
    expect(out.endsWith('second-file')).toBe(true);
  });

  it('an empty file deleted as it is opened: the empty answer stands, nothing throws', async () => {
    const errors: unknown[] = [];
    const onError = (err: unknown) => errors.push(err);
    process.on('uncaughtException', onError);
    try {
      for (let i = 0; i < 5; i++) {
        writeFileSync(join(dir, `vanishes${i}.txt`), '');
        changeOnRead(`vanishes${i}.txt`, (path) => rmSync(path));
        const res = await fetch(`${served.url}/s/vanishes${i}.txt`);
        expect([res.status, await res.text()]).toEqual([200, '']);
        vi.restoreAllMocks();
      }
      // The failed open is reported a moment after the answer.
      await new Promise((r) => setTimeout(r, 100));
      expect(errors).toEqual([]);
    } finally {
      process.off('uncaughtException', onError);
    }
  });

  it('an empty file that stays empty is still served', async () => {
    writeFileSync(join(dir, 'empty.txt'), '');
    const res = await fetch(`${served.url}/s/empty.txt`);
    expect([res.status, res.headers.get('content-length'), await res.text()]).toEqual([200, '0', '']);
  });
});

describe('a static file changing while it is sent (HTTP/2)', () => {
  // Before: the server ended the stream short of its content-length (a protocol
  // violation the client's nghttp2 answered with PROTOCOL_ERROR), logging nothing.
  it('truncated: the server resets the stream with INTERNAL_ERROR instead of ending it short', async () => {
    const app = new App();
    app.static('/s', dir);
    const server = createH2Server();
    server.on('stream', app.handleStream);
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const session = h2connect(`http://127.0.0.1:${(server.address() as AddressInfo).port}`);
    try {
      writeFileSync(join(dir, 'shrinks2.txt'), 'hello world');
      changeOnRead('shrinks2.txt', (path) => truncateSync(path, 5));
      const result = await new Promise<{ length: string; body: string; rst: number }>((resolve) => {
        const stream = session.request({ ':path': '/s/shrinks2.txt' });
        let length = '';
        let body = '';
        stream.setEncoding('latin1');
        stream.on('response', (h) => {
          length = String(h['content-length']);
        });
        stream.on('data', (d: string) => {
          body += d;
        });
        stream.on('error', () => {});
        stream.on('close', () => resolve({ length, body, rst: stream.rstCode ?? -1 }));
      });
      expect(result.length).toBe('11');
      expect(result.body).toBe('hello');
      expect(result.rst).toBe(h2constants.NGHTTP2_INTERNAL_ERROR);

      writeFileSync(join(dir, 'empty2.txt'), '');
      const empty = await new Promise<{ status: number; body: string }>((resolve, reject) => {
        const stream = session.request({ ':path': '/s/empty2.txt' });
        let status = 0;
        let body = '';
        stream.on('response', (h) => {
          status = Number(h[':status']);
        });
        stream.on('data', (d: Buffer) => {
          body += d.toString();
        });
        stream.on('error', reject);
        stream.on('end', () => resolve({ status, body }));
      });
      expect(empty).toEqual({ status: 200, body: '' });
    } finally {
      session.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});
