/**
 * mTLS on the HTTP listener (`server.tls.client_auth: require`): a client
 * whose certificate does not verify against `ca_file` is refused, and the
 * log says why. Node refuses such a certificate after the handshake, by
 * closing the socket, and reports it to 'tlsClientError' as "socket hang up"
 * (ECONNRESET), as if the client had left; the reason is only in the
 * socket's `authorizationError`. The TCP services say the same
 * (test/apps/server/tcp/mtls-untrusted.test.ts).
 */
import { connect as h2connect } from 'node:http2';
import { connect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { closedBy, type LogRecord, rawConnect, type Served, serve } from './harness.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

const warn = 40;

async function serveRequire(): Promise<Served> {
  return serve([
    ...pki.tlsSets(),
    'server.protocol=auto',
    `server.tls.ca_file=${pki.caCert}`,
    'server.tls.client_auth=require',
  ]);
}

/** A raw TLS client offering `alpn`; resolves once the server has closed the connection, with what it read. */
function visit(port: number, alpn: string, maxVersion: 'TLSv1.2' | 'TLSv1.3', cert: string, key: string) {
  return new Promise<string>((resolve) => {
    const client = connect({
      host: '127.0.0.1',
      port,
      ca: pki.read(pki.caCert),
      cert: pki.read(cert),
      key: pki.read(key),
      maxVersion,
      ALPNProtocols: [alpn],
    });
    let got = '';
    client.on('error', () => {});
    client.on('data', (d: Buffer) => {
      got += d.toString('latin1');
    });
    client.on('secureConnect', () => {
      // TLS 1.3: the server checks the certificate after the client's Finished; write to see the close.
      client.write(
        alpn === 'h2'
          ? 'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00'
          : 'GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n',
      );
    });
    client.on('close', () => resolve(got));
    setTimeout(() => client.destroy(), 10_000).unref();
  });
}

function refusals(logs: LogRecord[]): LogRecord[] {
  return logs.filter((l) => String(l.msg).includes('client certificate does not verify'));
}

describe('client_auth require on the HTTP listener', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    for (const alpn of ['http/1.1', 'h2']) {
      it(`${version}, ALPN ${alpn}: a client certificate no CA here issued is refused, logged at warn with the reason`, async () => {
        served = await serveRequire();
        const got = await visit(served.port, alpn, version, pki.selfSignedCert, pki.selfSignedKey);
        expect(got).not.toContain('HTTP/1.1 200');
        const logs = served.logs;
        const line = await until(() => refusals(logs)[0], 'the refusal logged', 3000);
        expect(line.level).toBe(warn);
        expect(line.msg).toContain('client certificate does not verify against server.tls.ca_file');
        expect(line.msg).toContain('DEPTH_ZERO_SELF_SIGNED_CERT');
        expect(line.msg).toContain('127.0.0.1:');
        expect(line.msg).not.toContain('socket hang up');
        expect(line).toMatchObject({ code: 'HYP_E_TLS_CLIENT_CERT', reason: 'DEPTH_ZERO_SELF_SIGNED_CERT' });
        expect(String(line.remote)).toMatch(/^127\.0\.0\.1:\d+$/);
        expect(refusals(logs)).toHaveLength(1);
      });
    }
  }

  it('an HTTP/2 client (node:http2) with a self-signed certificate: same line', async () => {
    served = await serveRequire();
    const session = h2connect(`https://127.0.0.1:${served.port}`, {
      ca: pki.read(pki.caCert),
      cert: pki.read(pki.selfSignedCert),
      key: pki.read(pki.selfSignedKey),
    });
    session.on('error', () => {});
    const req = session.request({ ':path': '/' });
    req.on('error', () => {});
    req.resume();
    await new Promise((resolve) => session.once('close', resolve));
    const line = await until(() => refusals(served!.logs)[0], 'the refusal logged', 3000);
    expect(line.level).toBe(warn);
    expect(line.msg).toContain('DEPTH_ZERO_SELF_SIGNED_CERT');
  });

  it('other handshake failures stay at debug (a client with no certificate; a CA-issued one is served)', async () => {
    served = await serveRequire();
    expect(await visit(served.port, 'http/1.1', 'TLSv1.3', pki.clientCert, pki.clientKey)).toContain(
      'HTTP/1.1 200',
    );
    await new Promise<void>((resolve) => {
      const client = connect({ host: '127.0.0.1', port: served!.port, ca: pki.read(pki.caCert) });
      client.on('error', () => {});
      client.on('secureConnect', () => client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n'));
      client.on('close', () => resolve());
    });
    const logs = served.logs;
    await until(
      () => logs.find((l) => l.msg === 'TLS handshake failed'),
      'the failed handshake logged',
      3000,
    );
    expect(logs.find((l) => l.msg === 'TLS handshake failed')?.level).toBe(20);
    expect(refusals(logs)).toEqual([]);
    expect(logs.filter((l) => (l.level ?? 0) >= warn)).toEqual([]);
  });

  it('a handshake OpenSSL refuses is logged with its reason and code, not its error line', async () => {
    served = await serve([...pki.tlsSets()]);
    const socket = await rawConnect(served.port);
    socket.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
    await closedBy(socket);
    const logs = served.logs;
    const line = await until(
      () => logs.find((l) => l.msg === 'TLS handshake failed'),
      'the failed handshake logged',
      3000,
    );
    expect(line.err).toBe('http request (ERR_SSL_HTTP_REQUEST)');
  });
});
