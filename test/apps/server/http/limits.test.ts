/**
 * Protection limits apply on every protocol path: HTTP/1.1, h2c and TLS.
 */
import type { Socket } from 'node:net';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { closedBy, closeSession, connect2, get1, get2, rawConnect, type Served, serve } from './harness.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

/** Everything the server sends until it closes the socket. */
async function untilClosed(socket: Socket): Promise<string> {
  return (await closedBy(socket)).toString('latin1');
}

describe('headers timeout (slowloris)', () => {
  it('closes a cleartext connection that sends nothing', async () => {
    served = await serve(['server.limits.headers_timeout=300ms']);
    const socket = await rawConnect(served.port);
    expect(await untilClosed(socket)).toBe('');
  });

  it('answers 408 to an HTTP/1.1 request whose headers never finish', async () => {
    served = await serve(['server.limits.headers_timeout=300ms']);
    const socket = await rawConnect(served.port);
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n');
    expect(await untilClosed(socket)).toMatch(/^HTTP\/1\.1 408/);
  });

  it('closes an h2c session that sends the preface and no request (not held for the idle timeout)', async () => {
    served = await serve(['server.limits.headers_timeout=300ms', 'server.http2.idle_timeout=10m']);
    const socket = await rawConnect(served.port);
    const closed = untilClosed(socket);
    // The client connection preface and an empty SETTINGS frame, then silence.
    socket.write('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
    socket.write(Buffer.from([0, 0, 0, 4, 0, 0, 0, 0, 0]));
    const got = await closed;
    // The server's SETTINGS, then GOAWAY (frame type 7) before the close.
    expect(Buffer.from(got, 'latin1').includes(Buffer.from([0, 0, 8, 7, 0, 0, 0, 0, 0]))).toBe(true);
  });

  it('keeps an h2c session that began a request in time past headers_timeout (the idle timeout governs it)', async () => {
    served = await serve(['server.limits.headers_timeout=300ms', 'server.http2.idle_timeout=10m']);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    let goaway = false;
    session.once('goaway', () => {
      goaway = true;
    });
    expect(await get2(session)).toMatchObject({ status: 200 });
    await new Promise((r) => setTimeout(r, 1000));
    expect(goaway).toBe(false);
    expect(await get2(session)).toMatchObject({ status: 200 });
    await closeSession(session);
  });

  it('closes a TLS connection whose handshake never starts', async () => {
    served = await serve(['server.limits.headers_timeout=300ms', ...pki.tlsSets()]);
    const socket = await rawConnect(served.port);
    expect(await untilClosed(socket)).toBe('');
  });
});

describe('max header size', () => {
  it('HTTP/1.1: 431', async () => {
    served = await serve(['server.limits.max_header_size=1KiB']);
    const answer = await get1(served.port, '/', { 'x-big': 'a'.repeat(2048) });
    expect(answer.status).toBe(431);
  });

  it('HTTP/2: the stream is refused, the session keeps serving', async () => {
    served = await serve(['server.limits.max_header_size=1KiB']);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    // SETTINGS_MAX_HEADER_LIST_SIZE binds once the client has acknowledged it (connect2 waits for that).
    expect(session.remoteSettings.maxHeaderListSize).toBe(1024);
    const big = await get2(session, '/', { 'x-big': 'a'.repeat(2048) }).then(
      (a) => a.status,
      (err: NodeJS.ErrnoException) => err.code,
    );
    expect(big).toBe('ERR_HTTP2_STREAM_ERROR');
    expect(await get2(session)).toMatchObject({ status: 200 });
    await closeSession(session);
  });
});

describe('timeouts after the headers', () => {
  it('HTTP/1.1 keep-alive timeout closes an idle connection', async () => {
    served = await serve(['server.limits.keep_alive_timeout=300ms']);
    const socket = await rawConnect(served.port);
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    const got = await untilClosed(socket);
    expect(got).toMatch(/^HTTP\/1\.1 200/);
  });

  it('HTTP/2 idle timeout: an idle session gets GOAWAY', async () => {
    served = await serve(['server.http2.idle_timeout=300ms']);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    expect(await get2(session)).toMatchObject({ status: 200 });
    await new Promise((r) => session.once('goaway', r));
    await new Promise((r) => session.once('close', r));
  });

  it('HTTP/2 idle timeout counts from the last open request: a session holding a quiet stream is kept', async () => {
    served = await serve(['server.http2.idle_timeout=200ms']);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    let goaway = false;
    session.once('goaway', () => {
      goaway = true;
    });
    const held = get2(session, '/hold');
    await until(() => served!.http.inflight === 1, 'the request in flight');
    // Several idle timeouts pass with the request open and no frame on the session.
    await new Promise((r) => setTimeout(r, 700));
    expect(goaway).toBe(false);
    expect(served.http.inflight).toBe(1);
    served.release();
    expect(await held).toMatchObject({ status: 200, body: 'released' });
    expect(served.http.inflight).toBe(0);
    // Idle from here: GOAWAY follows.
    await new Promise((r) => session.once('close', r));
    expect(goaway).toBe(true);
  });

  it('HTTP/2 request timeout: a request body that never ends is answered 408', async () => {
    served = await serve(['server.limits.request_timeout=300ms']);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    const stream = session.request({ ':path': '/echo', ':method': 'POST', 'content-type': 'text/plain' });
    stream.write('partial');
    const status = await new Promise((r) => stream.once('response', (h) => r(h[':status'])));
    expect(status).toBe(408);
    stream.destroy();
    await closeSession(session);
  });
});

describe('max connections per worker', () => {
  it('closes connections beyond the limit at once, on the cleartext port', async () => {
    served = await serve(['server.limits.max_connections=2']);
    const a = await rawConnect(served.port);
    const b = await rawConnect(served.port);
    // let the listener count them
    await new Promise((r) => setTimeout(r, 50));
    const c = await rawConnect(served.port);
    expect(await untilClosed(c)).toBe('');
    a.destroy();
    b.destroy();
  });

  it('counts HTTP/2 sessions and TLS connections too', async () => {
    served = await serve(['server.limits.max_connections=1', ...pki.tlsSets()]);
    const session = await connect2(`https://127.0.0.1:${served.port}`, { ca: pki.read(pki.caCert) });
    expect(await get2(session)).toMatchObject({ status: 200 });
    const refused = await new Promise<string>((resolve) => {
      const s = tlsConnect({ host: '127.0.0.1', port: served!.port, ca: pki.read(pki.caCert) });
      s.on('secureConnect', () => resolve('connected'));
      s.on('error', (err: NodeJS.ErrnoException) => resolve(err.code ?? err.message));
    });
    expect(refused).not.toBe('connected');
    await closeSession(session);
  });
});

/** An HTTP/1.1 over TLS connection to the test server. */
function tls1(port: number): TLSSocket {
  return tlsConnect({
    host: '127.0.0.1',
    port,
    ca: pki.read(pki.caCert),
    servername: 'localhost',
    ALPNProtocols: ['http/1.1'],
  });
}

describe('send timeout (slow readers)', () => {
  for (const path of ['/big?bytes=33554432', '/big-stream?bytes=33554432']) {
    it(`closes a connection whose client never reads its answer (${path.split('?')[0]})`, async () => {
      served = await serve(['server.limits.send_timeout=400ms']);
      const socket = await rawConnect(served.port);
      socket.on('error', () => {});
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
      socket.pause(); // what the kernel buffers holds is all that goes out
      await until(() => served!.http.connections === 0 || undefined, 'the connection closed by the server');
      socket.destroy();
      const logged = served.logs.find((l) => l.code === 'HYP_E_SEND_TIMEOUT');
      expect(logged?.msg).toContain('400ms');
      expect(Number(logged?.pending_bytes)).toBeGreaterThan(0);
      const metric = await served.registry.getSingleMetric('hyp_http_send_timeouts_total')?.get();
      expect(metric?.values[0]?.value).toBe(1);
    });
  }

  for (const path of ['/big?bytes=33554432', '/big-stream?bytes=33554432']) {
    it(`closes a TLS connection whose client never reads its answer (${path.split('?')[0]})`, async () => {
      served = await serve(['server.limits.send_timeout=400ms', ...pki.tlsSets()]);
      const socket = tls1(served.port);
      socket.on('error', () => {});
      await new Promise((r) => socket.once('secureConnect', r));
      // TLS 1.3: the client is done before the server has the connection.
      await until(() => served!.http.connections === 1 || undefined, 'the connection at the server');
      socket.write(`GET ${path} HTTP/1.1\r\nhost: x\r\n\r\n`);
      socket.pause();
      await until(() => served!.http.connections === 0 || undefined, 'the connection closed by the server');
      socket.destroy();
      const logged = served.logs.find((l) => l.code === 'HYP_E_SEND_TIMEOUT');
      expect(Number(logged?.pending_bytes)).toBeGreaterThan(0);
    });
  }

  it('leaves a client that reads slowly but steadily alone', async () => {
    // Loopback buffers hold several MiB the client reads before the server sees a write
    // complete: the timeout must outlast reading them (3 MB/s here), as 5m does in production.
    served = await serve(['server.limits.send_timeout=8s']);
    const bytes = 8 * 1024 * 1024;
    const socket = await rawConnect(served.port);
    socket.write(`GET /big-stream?bytes=${bytes} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    let got = 0;
    socket.on('data', (d: Buffer) => {
      got += d.length;
      socket.pause();
      setTimeout(() => socket.resume(), 20);
    });
    await new Promise((r) => socket.once('close', r));
    expect(got).toBeGreaterThan(bytes);
    expect(served.logs.some((l) => l.code === 'HYP_E_SEND_TIMEOUT')).toBe(false);
  }, 60_000);

  it('leaves a TLS client that reads one large answer slowly but steadily alone', async () => {
    // One 6 MiB chunk read at about 1.6 MB/s takes longer than the timeout:
    // progress must be the encrypted bytes the kernel takes, not the write's end.
    served = await serve(['server.limits.send_timeout=3s', ...pki.tlsSets()]);
    const bytes = 6 * 1024 * 1024;
    const socket = tls1(served.port);
    await new Promise((r) => socket.once('secureConnect', r));
    socket.write(`GET /big?bytes=${bytes} HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n`);
    let got = 0;
    socket.on('data', (d: Buffer) => {
      got += d.length;
      socket.pause();
      setTimeout(() => socket.resume(), 10);
    });
    await new Promise((r) => socket.once('close', r));
    expect(got).toBeGreaterThan(bytes);
    expect(served.logs.some((l) => l.code === 'HYP_E_SEND_TIMEOUT')).toBe(false);
  }, 60_000);

  it('leaves a slow handler alone: nothing is pending while it works', async () => {
    served = await serve(['server.limits.send_timeout=300ms']);
    const held = get1(served.port, '/hold');
    await until(() => served!.http.inflight === 1 || undefined, 'the request in its handler');
    await new Promise((r) => setTimeout(r, 1_000)); // more than 3 timeouts
    served.release();
    expect(await held).toMatchObject({ status: 200, body: 'released' });
    expect(served.logs.some((l) => l.code === 'HYP_E_SEND_TIMEOUT')).toBe(false);
  });

  it('0 turns it off', async () => {
    served = await serve(['server.limits.send_timeout=0']);
    expect(served.registry.getSingleMetric('hyp_http_send_timeouts_total')).toBeUndefined();
  });
});
