/**
 * Protocols on the HTTP listener: one cleartext port for HTTP/1.1 and h2c
 * with prior knowledge; one TLS port for ALPN h2 and http/1.1; TLS 1.1 and
 * certificate-less clients under mTLS `require` are refused.
 */

import { request as httpsRequest } from 'node:https';
import { type ConnectionOptions, connect as tlsConnect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makePki, type TestPki } from '../tls/certs.js';
import { type Answer, closeSession, connect2, get1, get2, type Served, serve } from './harness.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function getTls(
  port: number,
  opts: ConnectionOptions & { path?: string } = {},
): Promise<Answer & { alpn: string | false }> {
  return new Promise((resolve, reject) => {
    const req = httpsRequest(
      { host: '127.0.0.1', port, path: opts.path ?? '/', ca: pki.read(pki.caCert), agent: false, ...opts },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => {
          body += d;
        });
        const alpn = (res.socket as import('node:tls').TLSSocket).alpnProtocol ?? false;
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body, httpVersion: res.httpVersion, alpn }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

/** Resolves with the error a TLS handshake ends in (or 'connected'). */
function handshake(port: number, opts: ConnectionOptions): Promise<string> {
  return new Promise((resolve) => {
    const socket = tlsConnect({ host: '127.0.0.1', port, ca: pki.read(pki.caCert), ...opts });
    socket.on('secureConnect', () => {
      // TLS 1.3: a refused client certificate is reported after the client's Finished.
      socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    let got = '';
    socket.on('data', (d: Buffer) => {
      got += d.toString();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => resolve(`${err.code ?? ''} ${err.message}`));
    socket.on('close', () =>
      resolve(got.startsWith('HTTP/1.1 200') ? 'connected' : `closed: ${got.slice(0, 40)}`),
    );
  });
}

describe('cleartext port, server.protocol auto', () => {
  it('answers an HTTP/1.1 client and an h2c prior-knowledge client on the same port', async () => {
    served = await serve([]);
    const h1 = await get1(served.port);
    expect(h1).toMatchObject({ status: 200, body: 'protocol 1.1' });

    const session = await connect2(`http://127.0.0.1:${served.port}`);
    const h2 = await get2(session);
    expect(h2).toMatchObject({ status: 200, body: 'protocol 2.0' });
    expect(served.http.connections).toBeGreaterThanOrEqual(1);
    await closeSession(session);
  });

  it('a request that arrives one byte at a time is still recognised as HTTP/1.1', async () => {
    served = await serve([]);
    const { Socket } = await import('node:net');
    const socket = new Socket();
    await new Promise<void>((r) => socket.connect(served!.port, '127.0.0.1', r));
    const request = 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n';
    let got = '';
    socket.on('data', (d) => {
      got += d.toString();
    });
    for (const ch of request) {
      socket.write(ch);
      await new Promise((r) => setImmediate(r));
    }
    await new Promise((r) => socket.once('close', r));
    expect(got).toMatch(/^HTTP\/1\.1 200/);
    expect(got).toContain('protocol 1.1');
  });

  it('a client that resets mid-preface does not disturb the worker', async () => {
    served = await serve([]);
    const { Socket } = await import('node:net');
    for (const partial of ['GE', 'PRI * HTTP/2.0\r\n']) {
      const socket = new Socket();
      await new Promise<void>((r) => socket.connect(served!.port, '127.0.0.1', r));
      socket.write(partial);
      await new Promise((r) => setTimeout(r, 20));
      socket.resetAndDestroy();
    }
    expect(await get1(served.port)).toMatchObject({ status: 200 });
  });

  it('server.protocol http1 serves HTTP/1.1 only; http2 serves h2c only', async () => {
    served = await serve(['server.protocol=http1']);
    expect(await get1(served.port)).toMatchObject({ status: 200 });
    await served.close();
    served = await serve(['server.protocol=http2']);
    const session = await connect2(`http://127.0.0.1:${served.port}`);
    expect(await get2(session)).toMatchObject({ status: 200, body: 'protocol 2.0' });
    await closeSession(session);
  });
});

describe('TLS port', () => {
  it('negotiates ALPN h2 with an HTTP/2 client and http/1.1 with an HTTPS client', async () => {
    served = await serve(pki.tlsSets());
    const session = await connect2(`https://127.0.0.1:${served.port}`, { ca: pki.read(pki.caCert) });
    expect(session.alpnProtocol).toBe('h2');
    expect(await get2(session)).toMatchObject({ status: 200, body: 'protocol 2.0' });
    await closeSession(session);

    const h1 = await getTls(served.port, { ALPNProtocols: ['http/1.1'] });
    expect(h1).toMatchObject({ status: 200, body: 'protocol 1.1', alpn: 'http/1.1' });
  });

  it('refuses a TLS 1.1 client', async () => {
    served = await serve(pki.tlsSets());
    const outcome = await handshake(served.port, {
      minVersion: 'TLSv1.1',
      maxVersion: 'TLSv1.1',
      ciphers: 'DEFAULT@SECLEVEL=0',
    });
    // The server's alert, not a local refusal: the ClientHello went out.
    expect(outcome).toMatch(/alert protocol version/i);
  });

  it('offers only AEAD suites to a TLS 1.2 client', async () => {
    served = await serve(pki.tlsSets());
    const cbc = await handshake(served.port, {
      maxVersion: 'TLSv1.2',
      ciphers: 'ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-SHA',
    });
    expect(cbc).not.toBe('connected');
    const aead = await handshake(served.port, {
      maxVersion: 'TLSv1.2',
      ciphers: 'ECDHE-ECDSA-CHACHA20-POLY1305',
    });
    expect(aead).toBe('connected');
  });

  it('mTLS request: a client without a certificate is still served', async () => {
    served = await serve([
      ...pki.tlsSets(),
      `server.tls.ca_file=${pki.caCert}`,
      'server.tls.client_auth=request',
    ]);
    expect(await handshake(served.port, {})).toBe('connected');
    expect(
      await handshake(served.port, { cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) }),
    ).toBe('connected');
  });

  it('mTLS request: c.clientCert is the verified client certificate, over HTTP/1.1 and HTTP/2; none otherwise', async () => {
    served = await serve([
      ...pki.tlsSets(),
      `server.tls.ca_file=${pki.caCert}`,
      'server.tls.client_auth=request',
    ]);
    const client = { cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) };
    expect(
      await getTls(served.port, { path: '/whoami', ALPNProtocols: ['http/1.1'], ...client }),
    ).toMatchObject({ status: 200, body: 'hyp client' });
    expect(await getTls(served.port, { path: '/whoami', ALPNProtocols: ['http/1.1'] })).toMatchObject({
      body: 'none',
    });
    // A certificate the CA did not issue (self-signed) is not handed out.
    const stray = { cert: pki.read(pki.selfSignedCert), key: pki.read(pki.selfSignedKey) };
    expect(
      await getTls(served.port, { path: '/whoami', ALPNProtocols: ['http/1.1'], ...stray }),
    ).toMatchObject({ body: 'none' });
    const session = await connect2(`https://127.0.0.1:${served.port}`, {
      ca: pki.read(pki.caCert),
      ...client,
    });
    expect(await get2(session, '/whoami')).toMatchObject({ status: 200, body: 'hyp client' });
    await closeSession(session);
  });

  it('over cleartext, c.clientCert is undefined', async () => {
    served = await serve([]);
    expect(await get1(served.port, '/whoami')).toMatchObject({ status: 200, body: 'none' });
  });

  it('mTLS require: refuses a client without a certificate, serves one with a certificate from the CA', async () => {
    served = await serve([
      ...pki.tlsSets(),
      `server.tls.ca_file=${pki.caCert}`,
      'server.tls.client_auth=require',
    ]);
    const without = await handshake(served.port, {});
    expect(without).toMatch(/alert certificate required/i);
    const withCert = await handshake(served.port, {
      cert: pki.read(pki.clientCert),
      key: pki.read(pki.clientKey),
    });
    expect(withCert).toBe('connected');
  });
});
