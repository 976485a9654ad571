/**
 * The HTTP/1.1 keep-alive timeout, enforced by the connection tracker's sweep
 * rather than by Node's timer per request (connections.ts): the same
 * advertised `Keep-Alive: timeout=N`, never a close before it, and none while
 * the socket is busy: a request in flight, a next request arriving slowly,
 * an answer the client reads slowly.
 */
import { createServer, IncomingMessage, ServerResponse } from 'node:http';
import { type AddressInfo, Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { keepAliveAllowanceMs, probeKeepAliveHeader } from '../../../../apps/server/http/connections.js';
import { reportedInternals } from '../../../../apps/server/node-internals.js';
import { until } from '../../../helpers/supervisor.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { closedBy, listenApp, rawConnect, type Served, serve } from './harness.js';

let served: Served | undefined;
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The next whole answer on `socket` (its head and a `content-length` body), as text. */
function nextAnswer(socket: Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let got = Buffer.alloc(0);
    const onData = (d: Buffer) => {
      got = Buffer.concat([got, d]);
      const end = got.indexOf('\r\n\r\n');
      if (end < 0) return;
      const length = /\r\ncontent-length: *(\d+)/i.exec(got.subarray(0, end).toString('latin1'));
      if (length === null || got.length < end + 4 + Number(length[1])) return;
      done();
      resolve(got.toString('latin1'));
    };
    const onClose = () => {
      done();
      reject(new Error(`closed after ${got.length} bytes: ${got.subarray(0, 200).toString('latin1')}`));
    };
    const done = () => {
      socket.off('data', onData);
      socket.off('close', onClose);
    };
    socket.on('data', onData);
    socket.once('close', onClose);
  });
}

const hello = 'GET / HTTP/1.1\r\nhost: x\r\n\r\n';

/** Certificates for the one TLS case, made when it first runs. */
let pki: TestPki | undefined;
const testPki = (): TestPki => (pki ??= makePki());

/** An HTTP/1.1 over TLS connection to the test server, once its handshake is done. */
function tls1(port: number): Promise<TLSSocket> {
  const pki = testPki();
  return new Promise((resolve, reject) => {
    const socket = tlsConnect(
      {
        host: '127.0.0.1',
        port,
        ca: pki.read(pki.caCert),
        servername: 'localhost',
        ALPNProtocols: ['http/1.1'],
      },
      () => resolve(socket),
    );
    socket.once('error', reject);
  });
}

describe('advertised keep-alive timeout', () => {
  it('every answer says Keep-Alive: timeout=N, as Node would with the same timeout', async () => {
    const plain = createServer((_req, res) => res.end('x'));
    plain.keepAliveTimeout = 65_000;
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const node = await rawConnect((plain.address() as AddressInfo).port);
    node.write(hello);
    const nodeHint = /\r\nkeep-alive: ([^\r]*)/i.exec(await nextAnswer(node))?.[1];
    node.destroy();
    plain.close();
    expect(nodeHint).toBe('timeout=65');

    served = await serve([]);
    const socket = await rawConnect(served.port);
    socket.write(hello);
    expect(/\r\nkeep-alive: ([^\r]*)/i.exec(await nextAnswer(socket))?.[1]).toBe(nodeHint);
    // The next answer on the socket too, and one written through Node's own response.
    socket.write('GET /big?bytes=3 HTTP/1.1\r\nhost: x\r\n\r\n');
    expect(await nextAnswer(socket)).toMatch(/\r\nKeep-Alive: timeout=65\r\n/);
    socket.destroy();
  });

  it('follows server.limits.keep_alive_timeout', async () => {
    served = await serve(['server.limits.keep_alive_timeout=7s']);
    const socket = await rawConnect(served.port);
    socket.write(hello);
    expect(await nextAnswer(socket)).toMatch(/\r\nKeep-Alive: timeout=7\r\n/);
    socket.destroy();
  });

  it('Express, which swaps the response prototype, keeps the hint', async () => {
    const inner = express();
    inner.get('/', (_req, res) => {
      res.send('from express');
    });
    const app = await listenApp((a) => a.mount('/x', inner), ['server.limits.keep_alive_timeout=9s']);
    try {
      const socket = await rawConnect(app.port);
      socket.write('GET /x/ HTTP/1.1\r\nhost: x\r\n\r\n');
      const answer = await nextAnswer(socket);
      expect(answer).toMatch(/from express$/);
      expect(answer).toMatch(/\r\nKeep-Alive: timeout=9\r\n/);
      socket.destroy();
    } finally {
      await app.close();
    }
  });
});

describe('idle keep-alive connections', () => {
  it('are closed, never before the advertised timeout', async () => {
    served = await serve(['server.limits.keep_alive_timeout=1s']);
    const socket = await rawConnect(served.port);
    socket.write(hello);
    const closed = closedBy(socket);
    await nextAnswer(socket);
    const answeredAt = performance.now();
    await closed;
    const idleMs = performance.now() - answeredAt;
    // Closed after timeout + Node's allowance (1 s) on the server's clock;
    // the answer reached this client a little after it left the server.
    expect(idleMs).toBeGreaterThanOrEqual(1000);
    await until(() => served?.http.connections === 0, 'the server to forget the socket');
  });

  // Cleartext `auto` sniffs a connection's first bytes before HTTP/1.1 sees
  // it; `http1` and TLS hand it over at once, so the sweep sees it silent.
  for (const name of ['server.protocol=http1', 'TLS, ALPN http/1.1']) {
    it(`a connection that has sent nothing is the headers timeout’s, not the keep-alive timeout’s (${name})`, async () => {
      const tls = name.startsWith('TLS');
      served = await serve([
        'server.limits.keep_alive_timeout=100ms',
        'server.limits.headers_timeout=30s',
        ...(tls ? testPki().tlsSets() : [name]),
      ]);
      const socket = tls ? await tls1(served.port) : await rawConnect(served.port);
      await until(() => served?.http.connections === 1, 'the connection handed to HTTP/1.1');
      await sleep(100 + keepAliveAllowanceMs + 500);
      expect(socket.destroyed).toBe(false);
      socket.write(hello);
      expect(await nextAnswer(socket)).toMatch(/^HTTP\/1\.1 200/);
      socket.destroy();
    });
  }

  it('a next request arriving slowly keeps the connection, as every byte refreshes Node’s timer', async () => {
    served = await serve(['server.limits.keep_alive_timeout=100ms', 'server.limits.headers_timeout=30s']);
    const socket = await rawConnect(served.port);
    socket.write(hello);
    await nextAnswer(socket);
    // One byte of the next request every 100 ms, over twice timeout + allowance.
    const next = nextAnswer(socket);
    const parts = hello.slice(0, 22).split('');
    for (const part of parts) {
      socket.write(part);
      await sleep(100);
    }
    socket.write(hello.slice(22));
    expect(await next).toMatch(/^HTTP\/1\.1 200/);
    socket.destroy();
  });

  it('a request in flight for longer than the timeout is answered', async () => {
    served = await serve(['server.limits.keep_alive_timeout=100ms']);
    const socket = await rawConnect(served.port);
    socket.write(hello);
    await nextAnswer(socket);
    const held = nextAnswer(socket);
    socket.write('GET /hold HTTP/1.1\r\nhost: x\r\n\r\n');
    await sleep(2 * (100 + keepAliveAllowanceMs));
    served.release();
    expect(await held).toMatch(/released$/);
    socket.destroy();
  });

  it('an answer the client reads slowly is delivered whole', async () => {
    served = await serve(['server.limits.keep_alive_timeout=100ms']);
    const socket = await rawConnect(served.port);
    const bytes = 16 << 20;
    // Not read for over timeout + allowance: the rest waits in the server's socket buffer.
    socket.pause();
    socket.write(`GET /big?bytes=${bytes} HTTP/1.1\r\nhost: x\r\n\r\n`);
    const answer = nextAnswer(socket);
    await sleep(2 * (100 + keepAliveAllowanceMs));
    socket.resume();
    const got = await answer;
    expect(got.length - got.indexOf('\r\n\r\n') - 4).toBe(bytes);
    socket.destroy();
  });
});

describe('the start-up probe', () => {
  it('finds the field on this Node', () => {
    expect(probeKeepAliveHeader()).toBe(true);
  });

  it('on a Node whose field moved, says so (and the server keeps Node’s timer)', () => {
    const res = new ServerResponse(new IncomingMessage(new Socket()));
    // A response whose head no longer reads the field.
    Object.defineProperty(res, '_keepAliveTimeout', { get: () => 0, set: () => {} });
    expect(probeKeepAliveHeader(res)).toBe(false);
    expect(reportedInternals()).toContain('ServerResponse._keepAliveTimeout');
  });
});
