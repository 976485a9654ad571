/**
 * Requests Node's HTTP/1.1 parser refuses (smuggling attempts, bare CR, NUL,
 * obs-fold, oversized heads, chunk-size overflow) are answered with the
 * status Node would send, a JSON body with a stable code and the parser's
 * reason, and a debug log line; never a stack or a path. Node's own answer
 * is an empty 400 and no log.
 */
import { createServer, type Server } from 'node:http';
import { type AddressInfo, connect } from 'node:net';
import { pino } from 'pino';
import { afterEach, describe, expect, it } from 'vitest';
import { clientErrorListener } from '../../../../supervisor/client-error.js';

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise((r) => server?.close(r) ?? r(undefined));
  server = undefined;
});

function capture() {
  const lines: Record<string, unknown>[] = [];
  const log = pino({ level: 'debug' }, { write: (s: string) => lines.push(JSON.parse(s)) });
  return { lines, log };
}

/** The options hyp's HTTP listener gives the listener. */
const listenerOptions = (log: ReturnType<typeof capture>['log']) => ({
  maxHeaderSize: 16384,
  maxHeaderSetting: 'server.limits.max_header_size',
  timeoutMessage: 'request headers or body did not arrive in time',
  log,
});

async function start(log: ReturnType<typeof capture>['log']): Promise<number> {
  const s = createServer({ maxHeaderSize: 16384 }, (req, res) => {
    req.resume();
    req.on('end', () => res.end('ok'));
  });
  s.on('clientError', clientErrorListener(listenerOptions(log)));
  server = s;
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  return (s.address() as AddressInfo).port;
}

/** Bytes on a fresh connection; everything the server sent until it closed (2 s at most). */
function exchange(port: number, request: string): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let out = '';
    socket.setEncoding('latin1');
    socket.on('data', (d: string) => {
      out += d;
    });
    const timer = setTimeout(() => socket.destroy(), 2000);
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(out);
    });
    socket.on('error', () => {});
    socket.write(Buffer.from(request, 'latin1'));
  });
}

const post = 'POST / HTTP/1.1\r\nHost: x\r\n';
const refused: Array<[string, string, number, string]> = [
  ['a request line that is not one', 'GARBAGE\r\n\r\n', 400, 'HPE_INVALID_METHOD'],
  [
    'CL.TE smuggling',
    `${post}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nX`,
    400,
    'HPE_',
  ],
  [
    'TE.CL smuggling',
    `${post}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n`,
    400,
    'HPE_',
  ],
  [
    'two Content-Lengths that differ',
    `${post}Content-Length: 3\r\nContent-Length: 4\r\n\r\nabcd`,
    400,
    'HPE_',
  ],
  [
    'Transfer-Encoding: chunked, identity',
    `${post}Transfer-Encoding: chunked, identity\r\n\r\n`,
    400,
    'HPE_',
  ],
  ['obs-fold', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n', 400, 'HPE_'],
  ['a bare CR in a header value', 'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\rb\r\n\r\n', 400, 'HPE_'],
  [
    'a NUL in a header value',
    'GET / HTTP/1.1\r\nHost: x\r\nX-A: a\0b\r\n\r\n',
    400,
    'HPE_INVALID_HEADER_TOKEN',
  ],
  [
    'a chunk size over 64 bits',
    `${post}Transfer-Encoding: chunked\r\n\r\nFFFFFFFFFFFFFFFFFFFF\r\nabc\r\n`,
    400,
    'HPE_',
  ],
  ['a header block over max_header_size', `GET / HTTP/1.1\r\nX-A: ${'a'.repeat(20000)}\r\n\r\n`, 431, ''],
  [
    'chunk extensions over 16 KiB',
    `${post}Transfer-Encoding: chunked\r\n\r\n3;${'a'.repeat(20000)}\r\nabc\r\n0\r\n\r\n`,
    413,
    'HPE_CHUNK_EXTENSIONS_OVERFLOW',
  ],
];

describe('requests the HTTP/1.1 parser refuses', () => {
  for (const [name, request, status, parser] of refused) {
    const code =
      status === 431
        ? 'HYP_E_HEADERS_TOO_LARGE'
        : status === 413
          ? 'HYP_E_CHUNK_EXTENSIONS_TOO_LARGE'
          : 'HYP_E_BAD_REQUEST';
    it(`${name}: ${status} with ${code} in JSON, connection: close, a debug line`, async () => {
      const { lines, log } = capture();
      const port = await start(log);
      const answer = await exchange(port, request);
      expect(answer).toMatch(new RegExp(`^HTTP/1\\.1 ${status} `));
      expect(answer).toMatch(/\r\nconnection: close\r\n/);
      const body = JSON.parse(answer.slice(answer.indexOf('\r\n\r\n') + 4)) as {
        error: { code: string; message: string };
      };
      expect(body.error.code).toBe(code);
      expect(body.error.message).toContain(status === 431 ? 'max_header_size' : parser);
      expect(answer).not.toMatch(/\/work\/|node:internal|\bat \S+ \(/);
      const line = lines.find((l) => l.code === code);
      expect(line?.status).toBe(status);
      expect(line?.msg).toBe(body.error.message);
    });
  }

  it('a request the parser accepts is served as before', async () => {
    const { log } = capture();
    const port = await start(log);
    expect(await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n')).toMatch(
      /^HTTP\/1\.1 200 [\s\S]*ok$/,
    );
  });

  it('an error behind an answer in progress gets no answer of its own (it would land inside the first): the socket is cut', async () => {
    const { lines, log } = capture();
    const s = createServer((_req, res) => {
      res.write('first ');
      setTimeout(() => res.end('done'), 100);
    });
    s.on('clientError', clientErrorListener(listenerOptions(log)));
    server = s;
    await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
    const port = (s.address() as AddressInfo).port;
    const answer = await exchange(port, 'GET / HTTP/1.1\r\nHost: x\r\n\r\nGARBAGE\r\n\r\n');
    expect(answer).not.toContain('HYP_E_BAD_REQUEST');
    expect(lines).toEqual([]);
  });
});
