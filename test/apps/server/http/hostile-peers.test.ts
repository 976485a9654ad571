/**
 * The connection layer against hostile or broken peers: raw sockets that
 * speak just enough HTTP/1.1 or HTTP/2 to hold, flood or confuse a worker.
 * Each case asserts on behaviour (closed, refused, counters back to 0),
 * never on how long something took.
 */
import type { Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { h2Preface } from '../../../../apps/server/http/protocols.js';
import { HttpServer } from '../../../../apps/server/http/server.js';
import { until } from '../../../helpers/supervisor.js';
import { makePki, type TestPki } from '../tls/certs.js';
import {
  closedBy,
  configWith,
  H2Flag,
  H2Type,
  h2Frame,
  rawConnect,
  requestBlock,
  type Served,
  serve,
  u32,
} from './harness.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

// --- HTTP/2 frames, by hand -------------------------------------------------

const preface = h2Preface;
const Type = H2Type;
const { EndStream, EndHeaders, Ack } = H2Flag;

/** A raw h2c connection that has sent the preface and an empty SETTINGS frame. */
async function h2Raw(port: number): Promise<Socket> {
  const socket = await rawConnect(port);
  socket.write(Buffer.concat([preface, h2Frame(Type.Settings, 0, 0)]));
  return socket;
}

describe('HTTP/2 rapid reset (CVE-2023-44487)', () => {
  it('HEADERS and RST_STREAM in one packet: nothing stays in flight', async () => {
    served = await serve([]);
    const socket = await h2Raw(served.port);
    const burst: Buffer[] = [];
    for (let id = 1; id < 2 * 50; id += 2) {
      burst.push(h2Frame(Type.Headers, EndHeaders | EndStream, id, requestBlock('/hold')));
      burst.push(h2Frame(Type.RstStream, 0, id, u32(8)));
    }
    socket.write(Buffer.concat(burst));
    await new Promise((r) => setTimeout(r, 300));
    expect(served.http.inflight).toBe(0);
    socket.destroy();
    await until(() => served!.http.connections === 0 || undefined, 'the session gone');
  });
});

/** An HttpServer whose handler counts its calls and answers at once (`/hold`: never). */
async function counting(sets: string[]) {
  const calls = { n: 0 };
  const http = new HttpServer({
    config: configWith(sets),
    handler: (req, res) => {
      calls.n++;
      if (req.url !== '/hold') res.end('ok');
    },
  });
  const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
  return { http, port, calls };
}

describe('HTTP/2 floods end the session, with a bounded number of handlers run', () => {
  const floods: Record<string, { sets?: string[]; first?: Buffer; unit: (i: number) => Buffer }> = {
    'rapid reset (HEADERS + RST_STREAM)': {
      sets: ['server.http2.idle_timeout=300ms'],
      unit: (i) =>
        Buffer.concat([
          h2Frame(Type.Headers, EndHeaders | EndStream, 2 * i + 1, requestBlock('/')),
          h2Frame(Type.RstStream, 0, 2 * i + 1, u32(8)),
        ]),
    },
    'streams over max_concurrent_streams': {
      sets: ['server.http2.max_concurrent_streams=10'],
      first: h2Frame(Type.Settings, Ack, 0),
      unit: (i) => h2Frame(Type.Headers, EndHeaders, 2 * i + 1, requestBlock('/')),
    },
    'CONTINUATION without END_HEADERS': {
      first: h2Frame(Type.Headers, EndStream, 1, requestBlock('/')),
      unit: () => h2Frame(Type.Continuation, 0, 1, Buffer.from([0x40, 0x01, 0x61, 0x01, 0x62])),
    },
    // (To a stream already answered, they cost nghttp2 alone a few ns each: no limit needed.)
    'empty DATA frames on a request being served': {
      first: h2Frame(Type.Headers, EndHeaders, 1, requestBlock('/hold')),
      unit: () => h2Frame(Type.Data, 0, 1),
    },
    // A peer that never reads can fill the socket with acks before nghttp2's
    // ack limit trips; Node then stops reading it, and send_timeout ends it.
    'PING, never reading the acks': {
      sets: ['server.limits.send_timeout=1s'],
      unit: () => h2Frame(Type.Ping, 0, 0, Buffer.alloc(8)),
    },
    'SETTINGS, never reading the acks': {
      sets: ['server.limits.send_timeout=1s'],
      unit: () => h2Frame(Type.Settings, 0, 0),
    },
  };
  for (const [name, flood] of Object.entries(floods)) {
    it(name, async () => {
      const { http, port, calls } = await counting(flood.sets ?? []);
      const socket = await h2Raw(port);
      socket.pause();
      if (flood.first) socket.write(flood.first);
      // 200 bursts of 500 frames at most (acks fill the socket buffers first); the session gives up before.
      for (let burst = 0, i = 0; burst < 200 && http.connections > 0; burst++) {
        const frames: Buffer[] = [];
        for (let k = 0; k < 500; k++, i++) frames.push(flood.unit(i));
        socket.write(Buffer.concat(frames));
        await new Promise((r) => setTimeout(r, 10));
      }
      await until(() => http.connections === 0 || undefined, 'the session ended', 10_000);
      expect(calls.n).toBeLessThan(5000);
      expect(http.inflight).toBe(0);
      socket.destroy();
      await http.drain(Date.now() + 500);
    });
  }
});

describe('request framing through the h2c sniff', () => {
  const ambiguous = {
    'Content-Length and Transfer-Encoding':
      'content-length: 4\r\ntransfer-encoding: chunked\r\n\r\n0\r\n\r\n',
    'two Content-Lengths': 'content-length: 4\r\ncontent-length: 5\r\n\r\nabcde',
    'obs-fold': 'content-length: 4\r\nx-a: b\r\n c\r\n\r\nabcd',
    'a space before the colon': 'transfer-encoding : chunked\r\ncontent-length: 4\r\n\r\nabcd',
  };
  for (const [name, rest] of Object.entries(ambiguous)) {
    it(`a POST (its P is also the preface's) with ${name} is refused 400, as llhttp alone refuses it`, async () => {
      served = await serve([]);
      const socket = await rawConnect(served.port);
      const closed = closedBy(socket);
      const request = `POST /echo HTTP/1.1\r\nhost: x\r\n${rest}GET / HTTP/1.1\r\nhost: x\r\n\r\n`;
      socket.write(request.slice(0, 1));
      await new Promise((r) => setTimeout(r, 20));
      socket.write(request.slice(1));
      const got = (await closed).toString('latin1');
      expect(got).toMatch(/^HTTP\/1\.1 400 /);
      expect(got.match(/HTTP\/1\.1 /g)).toHaveLength(1);
    });
  }
});

describe('headers timeout before the protocol is known', () => {
  it('a client that trickles the h2c preface byte by byte is closed at headers_timeout, before any session', async () => {
    served = await serve(['server.limits.headers_timeout=300ms']);
    const socket = await rawConnect(served.port);
    const closed = closedBy(socket);
    let open = true;
    void closed.then(() => {
      open = false;
    });
    // Each byte well within the timeout, the whole preface well past it.
    for (let i = 0; i < preface.length && open; i++) {
      socket.write(preface.subarray(i, i + 1));
      await new Promise((r) => setTimeout(r, 100));
    }
    // Closed while sniffing: no HTTP/2 session began, so no SETTINGS frame came back.
    expect((await closed).length).toBe(0);
  });
});

describe('HTTP/1.1 request timeout', () => {
  it('a request whose body never finishes is answered 408 while its handler waits for it', async () => {
    served = await serve(['server.limits.headers_timeout=300ms', 'server.limits.request_timeout=600ms']);
    const socket = await rawConnect(served.port);
    const closed = closedBy(socket);
    socket.write(
      'POST /echo HTTP/1.1\r\nhost: x\r\ncontent-type: text/plain\r\ncontent-length: 10\r\n\r\nabc',
    );
    expect((await closed).toString('latin1')).toMatch(/^HTTP\/1\.1 408/);
  });
});

describe('a peer that never closes its side is not kept', () => {
  it('HTTP/1.1: a request timed out (408) while the peer neither reads nor closes', async () => {
    served = await serve(['server.limits.headers_timeout=300ms']);
    const socket = await rawConnect(served.port);
    socket.pause();
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n');
    await until(() => served!.http.connections === 0 || undefined, 'the connection freed', 10_000);
    socket.destroy();
  });

  it('h2c: a session closed for sending no request, while the peer neither reads nor closes', async () => {
    served = await serve(['server.limits.headers_timeout=300ms']);
    const socket = await h2Raw(served.port);
    socket.pause();
    await until(() => served!.http.connections === 0 || undefined, 'the session freed', 10_000);
    socket.destroy();
  });

  it('h2c: a session closed as idle, while the peer neither reads nor closes', async () => {
    served = await serve(['server.http2.idle_timeout=300ms']);
    const socket = await h2Raw(served.port);
    let got = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
    };
    socket.on('data', onData);
    socket.write(h2Frame(Type.Headers, EndHeaders | EndStream, 1, requestBlock('/')));
    // The answer's DATA frame with END_STREAM on stream 1.
    await until(
      () => got.includes(Buffer.from([Type.Data, EndStream, 0, 0, 0, 1])) || undefined,
      'the answer',
    );
    socket.off('data', onData);
    socket.pause();
    await until(() => served!.http.connections === 0 || undefined, 'the session freed', 10_000);
    socket.destroy();
  });

  it('TLS h2: a session closed for sending no request, while the peer neither reads nor closes', async () => {
    served = await serve(['server.limits.headers_timeout=300ms', ...pki.tlsSets()]);
    const socket = tlsConnect({
      host: '127.0.0.1',
      port: served.port,
      ca: pki.read(pki.caCert),
      ALPNProtocols: ['h2'],
    });
    socket.on('error', () => {});
    await new Promise((r) => socket.once('secureConnect', r));
    expect(socket.alpnProtocol).toBe('h2');
    socket.write(Buffer.concat([preface, h2Frame(Type.Settings, 0, 0)]));
    socket.pause();
    await until(() => served!.http.connections === 1 || undefined, 'the session');
    await until(() => served!.http.connections === 0 || undefined, 'the session freed', 10_000);
    socket.destroy();
  });
});

describe('drain against a peer that stops reading', () => {
  it('HTTP/2: a session whose peer stopped reading mid-answer is cut at the deadline, not kept after the drain', async () => {
    // An answer far larger than the socket buffers, to a peer that opened every window.
    const big = Buffer.alloc(32 << 20, 97);
    const http = new HttpServer({ config: configWith([]), handler: (_req, res) => res.end(big) });
    const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
    const socket = await rawConnect(port);
    const initialWindowMax = Buffer.from([0, 4, 0x7f, 0xff, 0xff, 0xff]);
    socket.write(
      Buffer.concat([
        preface,
        h2Frame(Type.Settings, 0, 0, initialWindowMax),
        h2Frame(Type.WindowUpdate, 0, 0, u32(0x7fffffff - 65_535)),
        h2Frame(Type.Headers, EndHeaders | EndStream, 1, requestBlock('/')),
      ]),
    );
    let received = 0;
    const onData = (d: Buffer) => {
      received += d.length;
    };
    socket.on('data', onData);
    await until(() => received > 0 || undefined, 'the answer begun');
    socket.off('data', onData);
    socket.pause();
    await http.drain(Date.now() + 500);
    await until(() => http.connections === 0 || undefined, 'no connection left', 5_000);
    socket.destroy();
  });
});

describe('HTTP/1.1: a malformed request pipelined behind an answer in progress', () => {
  /** A server whose answers take a while: `part1-` at once, `part2` once `release` is called. */
  async function slowAnswers() {
    const pending: Array<() => void> = [];
    const http = new HttpServer({
      config: configWith([]),
      handler: (req, res) => {
        if (req.url === '/streamed') res.write('part1-');
        pending.push(() => res.end('part2'));
      },
    });
    const { port } = await http.listen({ host: '127.0.0.1', port: 0 });
    return { http, port, pending };
  }

  for (const path of ['/streamed', '/late']) {
    it(`${path}: the 400 never lands inside, or instead of, the answer to the request before it`, async () => {
      const { http, port, pending } = await slowAnswers();
      const socket = await rawConnect(port);
      let got = '';
      socket.on('data', (d: Buffer) => {
        got += d.toString('latin1');
      });
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
      await until(() => pending.length === 1 || undefined, 'the first request in its handler');
      if (path === '/streamed') await until(() => got.includes('part1-') || undefined, 'the answer begun');
      const closed = closedBy(socket);
      socket.write('NOT HTTP\r\n\r\n');
      await closed;
      for (const release of pending) release();
      // Whatever came back is the first request's answer (whole or cut), never a 400 in its place or body.
      expect(got).not.toContain('400 Bad Request');
      await http.drain(Date.now() + 500);
    });
  }
});
