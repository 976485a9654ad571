/**
 * hyp's HTTP listener (HttpServer, cleartext `auto`: HTTP/1.1 and h2c on one
 * port) wires the hostile-input answers: a request Node's parser refuses gets
 * Node's status with a coded JSON body and a debug line, and an h2c session
 * nghttp2 ends for what the peer sent is logged with why.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { closedBy, h2Frame, rawConnect, type Served, serve } from './harness.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function exchange(port: number, bytes: string | Buffer): Promise<string> {
  const socket = await rawConnect(port);
  socket.write(bytes);
  return (await closedBy(socket)).toString('latin1');
}

describe('the HTTP listener answers what the parser refuses', () => {
  it('HTTP/1.1 smuggling (Content-Length and Transfer-Encoding): 400, HYP_E_BAD_REQUEST in JSON, a debug line', async () => {
    served = await serve([]);
    const answer = await exchange(
      served.port,
      'POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n',
    );
    expect(answer).toMatch(/^HTTP\/1\.1 400 /);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as { error: { code: string } };
    expect(body.error.code).toBe('HYP_E_BAD_REQUEST');
    const line = served.logs.find((l) => l.code === 'HYP_E_BAD_REQUEST' && l.status === 400);
    expect(line?.level).toBe(20);
  });

  it('a head over max_header_size: 431 HYP_E_HEADERS_TOO_LARGE naming the key', async () => {
    served = await serve(['server.limits.max_header_size=8KiB']);
    const answer = await exchange(
      served.port,
      `GET / HTTP/1.1\r\nHost: x\r\nX-A: ${'a'.repeat(10_000)}\r\n\r\n`,
    );
    expect(answer).toMatch(/^HTTP\/1\.1 431 /);
    const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as {
      error: { code: string; message: string };
    };
    expect(body.error).toEqual({
      code: 'HYP_E_HEADERS_TOO_LARGE',
      message: 'request line and headers exceed 8192 bytes (server.limits.max_header_size)',
    });
  });

  it('h2c: a session nghttp2 ends for a bad frame is logged with why, and the port keeps serving', async () => {
    served = await serve([]);
    const preface = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    // SETTINGS, then a SETTINGS frame on stream 1 (a connection-level frame on a stream: PROTOCOL_ERROR)
    const garbage = Buffer.concat([preface, h2Frame(4, 0, 0), h2Frame(4, 0, 1)]);
    await exchange(served.port, garbage);
    await expect
      .poll(() => served!.logs.find((l) => String(l.msg).startsWith('HTTP/2 session ended')), {
        timeout: 5000,
      })
      .toMatchObject({ code: 'HYP_E_BAD_REQUEST', level: 20 });
    expect(await exchange(served.port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(
      /^HTTP\/1\.1 200 /,
    );
  });
});
