/**
 * HTTP/2 peers that nghttp2 cuts off (a PING or SETTINGS flood, frames that
 * are not HTTP/2): the session tracker reports why each session ended
 * (`onSessionError`), so the server can log it; it used to swallow the
 * error. The session ends either way and the server keeps serving.
 */
import { createServer, type Http2Server } from 'node:http2';
import { type AddressInfo, connect } from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { Http2Sessions } from '../../../../apps/server/http/protocols.js';

let server: Http2Server | undefined;
afterEach(async () => {
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');

function frame(type: number, flags: number, stream: number, payload = Buffer.alloc(0)): Buffer {
  const head = Buffer.alloc(9);
  head.writeUIntBE(payload.length, 0, 3);
  head[3] = type;
  head[4] = flags;
  head.writeUInt32BE(stream, 5);
  return Buffer.concat([head, payload]);
}

const settings = (payload = Buffer.alloc(0)) => frame(4, 0, 0, payload);
const ping = () => frame(6, 0, 0, Buffer.alloc(8));

/** Write `bytes` on a fresh connection, reading and dropping the answer, until the server closes it (3 s at most). */
function send(port: number, bytes: Buffer): Promise<void> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(bytes));
    socket.on('data', () => {});
    socket.on('error', () => {});
    const timer = setTimeout(() => socket.destroy(), 3000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve();
    });
  });
}

async function start(errors: NodeJS.ErrnoException[]): Promise<number> {
  const s = createServer((_req, res) => res.end('ok'));
  new Http2Sessions().attach(s, {
    idleTimeoutMs: 0,
    requestTimeoutMs: 0,
    onSessionError: (err) => errors.push(err),
  });
  server = s;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

describe('HTTP/2 sessions nghttp2 ends for what the peer sent', () => {
  const floods: Array<[string, Buffer, RegExp]> = [
    [
      'a PING flood (20 000 PINGs)',
      Buffer.concat([preface, settings(), ...Array.from({ length: 20_000 }, ping)]),
      /Flooding was detected/,
    ],
    [
      'a SETTINGS flood (20 000 SETTINGS)',
      Buffer.concat([
        preface,
        ...Array.from({ length: 20_000 }, () => settings(Buffer.from([0, 3, 0, 0, 0, 100]))),
      ]),
      /Flooding was detected/,
    ],
    [
      'bytes that are no HTTP/2 frame after the preface',
      Buffer.concat([preface, Buffer.alloc(20, 0xff)]),
      /./,
    ],
  ];
  for (const [name, bytes, message] of floods) {
    it(`${name}: onSessionError gets the session's error`, async () => {
      const errors: NodeJS.ErrnoException[] = [];
      const port = await start(errors);
      await send(port, bytes);
      await new Promise((r) => setTimeout(r, 50));
      expect(errors.length).toBe(1);
      expect(errors[0]!.code).toMatch(/^ERR_HTTP2_/);
      expect(errors[0]!.message).toMatch(message);
    });
  }
});
