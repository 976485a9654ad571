import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { closedByPeer, echo, metricValue, readBytes, startService, until } from './helpers.js';

let dir = '';
const file = (name: string) => join(dir, name);

function openssl(...args: string[]) {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

/** A CA, a server certificate for 127.0.0.1 and a client certificate, all signed by the CA. */
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hyp-tcp-tls-'));
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl(
    'req',
    '-x509',
    ...ec,
    '-keyout',
    'ca.key',
    '-out',
    'ca.pem',
    '-days',
    '1',
    '-subj',
    '/CN=hyp test CA',
  );
  for (const who of ['server', 'client']) {
    openssl('req', ...ec, '-keyout', `${who}.key`, '-out', `${who}.csr`, '-subj', `/CN=${who}`);
    writeFileSync(
      file(`${who}.ext`),
      who === 'server'
        ? 'subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n'
        : 'extendedKeyUsage=clientAuth\n',
    );
    openssl(
      'x509',
      '-req',
      '-in',
      `${who}.csr`,
      '-CA',
      'ca.pem',
      '-CAkey',
      'ca.key',
      '-CAcreateserial',
      '-out',
      `${who}.pem`,
      '-days',
      '1',
      '-extfile',
      `${who}.ext`,
    );
  }
});
beforeAll(() => {
  writeFileSync(file('live.pem'), readFileSync(file('server.pem')));
  writeFileSync(file('live.key'), readFileSync(file('server.key')));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const services: TcpService<object>[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

async function startTls(
  clientAuth: 'none' | 'request' | 'require',
  minVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.2',
) {
  const errors: Error[] = [];
  const seen: { network?: string; remoteHost?: string; authorized?: boolean; cn?: string } = {};
  const started = await startService(
    async (conn) => {
      seen.network = conn.network;
      seen.remoteHost = conn.remoteHost;
      seen.authorized = (conn.socket as TLSSocket).authorized;
      seen.cn = String(conn.clientCert?.subject.CN ?? 'none');
      for await (const chunk of conn) await conn.write(chunk);
    },
    {
      tls: {
        enabled: true,
        cert_file: file('server.pem'),
        key_file: file('server.key'),
        ca_file: clientAuth === 'none' ? '' : file('ca.pem'),
        client_auth: clientAuth,
        min_version: minVersion,
        watch: false,
      },
    },
    { onError: (...e) => errors.push(...e) },
  );
  services.push(started.service as TcpService<object>);
  return { ...started, errors, seen };
}

function dialTls(port: number, withClientCert: boolean, extra: Record<string, unknown> = {}): TLSSocket {
  return connect({
    port,
    host: '127.0.0.1',
    ca: readFileSync(file('ca.pem')),
    ...(withClientCert
      ? { cert: readFileSync(file('client.pem')), key: readFileSync(file('client.key')) }
      : {}),
    ...extra,
  });
}

describe('TLS on a TCP service', () => {
  it('completes the handshake and echoes through TLS, reporting tcp+tls', async () => {
    const { port, seen } = await startTls('none');
    const client = dialTls(port, false);
    await once(client, 'secureConnect');
    expect(client.authorized).toBe(true);
    client.write('secret bytes');
    expect((await readBytes(client, 12)).toString()).toBe('secret bytes');
    expect(seen.network).toBe('tcp+tls');
    expect(seen.remoteHost).toMatch(/^tcp\+tls:\/\/127\.0\.0\.1:\d+$/);
    expect(seen.cn).toBe('none'); // no client certificate asked for
    client.end();
    await closedByPeer(client);
  });

  it('moves a large payload intact in both directions', async () => {
    const { port } = await startTls('none', 'TLSv1.3');
    const client = dialTls(port, false);
    await once(client, 'secureConnect');
    expect(client.getProtocol()).toBe('TLSv1.3');
    const payload = Buffer.alloc(2 * 1024 * 1024);
    for (let i = 0; i < payload.length; i++) payload[i] = (i * 31) & 0xff;
    client.write(payload);
    const back = await readBytes(client, payload.length);
    expect(back.equals(payload)).toBe(true);
    client.destroy();
  });

  it('refuses a TLS 1.2 client when min_version is TLSv1.3', async () => {
    const { port, service, errors } = await startTls('none', 'TLSv1.3');
    const client = dialTls(port, false, { maxVersion: 'TLSv1.2' });
    const [err] = (await once(client, 'error')) as [Error];
    expect(err.message).toMatch(/protocol version|alert/i);
    await until(() => service.openConnections() === 0, 'handshake failure cleaned up');
    expect(
      errors.some((e) => isHypError(e, 'HYP_E_TCP_HANDSHAKE') && /unsupported protocol/.test(e.message)),
    ).toBe(true);
  });

  it('closes a connection whose peer half-closes in the middle of the handshake, with HYP_E_TCP_HANDSHAKE', async () => {
    const { port, service, errors } = await startTls('none');
    const client = netConnect({ port, host: '127.0.0.1', allowHalfOpen: true });
    await once(client, 'connect');
    await until(() => service.openConnections() === 1, 'accepted');
    // the first bytes of a ClientHello record, then FIN
    client.end(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01]));
    client.on('error', () => {});
    client.resume();
    await until(() => service.openConnections() === 0, 'half-closed handshake cleaned up', 10_000);
    expect(errors.some((e) => isHypError(e, 'HYP_E_TCP_HANDSHAKE'))).toBe(true);
    client.destroy();
  });

  it('names the peer in HYP_E_TCP_HANDSHAKE even when it reset the connection mid-handshake', async () => {
    const { port, service, errors } = await startTls('none');
    const client = netConnect({ port, host: '127.0.0.1' });
    await once(client, 'connect');
    const local = `127.0.0.1:${client.localPort}`;
    await until(() => service.openConnections() === 1, 'accepted');
    client.on('error', () => {});
    // the first bytes of a ClientHello record, then RST
    client.write(Buffer.from([0x16, 0x03, 0x01, 0x00, 0xff, 0x01]), () => client.resetAndDestroy());
    await until(() => service.openConnections() === 0, 'reset handshake cleaned up', 10_000);
    const handshake = errors.filter((e) => isHypError(e, 'HYP_E_TCP_HANDSHAKE'));
    expect(handshake.length).toBeGreaterThan(0);
    // Before: "TLS handshake with a client failed" (the reset socket no longer knows its peer).
    for (const e of handshake) expect(e.message).toContain(`TLS handshake with ${local} failed`);
  });

  it('still answers a TLS peer that half-closes after the handshake', async () => {
    const { service, port: p2 } = await startService(
      async (conn) => {
        let total = 0;
        for await (const chunk of conn) total += chunk.length;
        await conn.write(`total ${total}`);
      },
      {
        tls: {
          enabled: true,
          cert_file: file('server.pem'),
          key_file: file('server.key'),
          watch: false,
        },
      },
    );
    services.push(service as TcpService<object>);
    const client = dialTls(p2, false, { allowHalfOpen: true });
    await once(client, 'secureConnect');
    client.end('abcdef');
    const { data } = await closedByPeer(client);
    expect(data.toString()).toBe('total 6');
  });

  it('refuses to start with an unreadable certificate, naming the config key', async () => {
    await expect(
      startService(echo, {
        tls: { enabled: true, cert_file: file('missing.pem'), key_file: file('server.key') },
      }),
    ).rejects.toMatchObject({
      code: 'HYP_E_TLS_FILE',
      message: expect.stringContaining('tcp.echo.tls.cert_file'),
    });
    await expect(
      startService(echo, {
        tls: {
          enabled: true,
          cert_file: file('server.pem'),
          key_file: file('server.key'),
          client_auth: 'require',
        },
      }),
    ).rejects.toMatchObject({
      code: 'HYP_E_TLS_FILE',
      message: expect.stringContaining('tcp.echo.tls.ca_file'),
    });
  });

  it('accepts a client certificate signed by the CA when client_auth is require', async () => {
    const { port, seen } = await startTls('require');
    const client = dialTls(port, true);
    await once(client, 'secureConnect');
    client.write('mutual');
    expect((await readBytes(client, 6)).toString()).toBe('mutual');
    expect(seen.authorized).toBe(true);
    expect(seen.cn).toBe('client');
    client.destroy();
  });

  it('refuses a client without a certificate when client_auth is require (mTLS)', async () => {
    const { port, service, errors, seen } = await startTls('require');
    const client = dialTls(port, false);
    client.on('secureConnect', () => client.write('let me in'));
    const { data } = await closedByPeer(client);
    expect(data.length).toBe(0);
    await until(() => service.openConnections() === 0, 'refused connection cleaned up');
    expect(seen.network).toBeUndefined();
    expect(errors.some((e) => isHypError(e, 'HYP_E_TCP_HANDSHAKE') && /certificate/i.test(e.message))).toBe(
      true,
    );
  });

  it('reloads a replaced certificate for new connections without a restart (shared TlsManager)', async () => {
    const started = await startService(echo, {
      tls: { enabled: true, cert_file: file('live.pem'), key_file: file('live.key'), watch: true },
    });
    services.push(started.service as TcpService<object>);
    const peerCN = async () => {
      const client = dialTls(started.port, false, { rejectUnauthorized: false });
      await once(client, 'secureConnect');
      const cn = client.getPeerCertificate().subject.CN;
      client.destroy();
      return cn;
    };
    expect(await peerCN()).toBe('server');
    const open = dialTls(started.port, false, { rejectUnauthorized: false });
    await once(open, 'secureConnect');
    writeFileSync(file('live.key'), readFileSync(file('client.key')));
    writeFileSync(file('live.pem'), readFileSync(file('client.pem')));
    let cn = await peerCN();
    for (let i = 0; i < 250 && cn !== 'client'; i++) {
      await new Promise((r) => setTimeout(r, 20));
      cn = await peerCN();
    }
    expect(cn).toBe('client');
    // The connection opened before the reload keeps working on its certificate.
    open.write('old');
    expect((await readBytes(open, 3)).toString()).toBe('old');
    open.destroy();
  });

  it('counts a refused reload under its own listener label, apart from the HTTP listener', async () => {
    writeFileSync(file('labelled.pem'), readFileSync(file('server.pem')));
    writeFileSync(file('labelled.key'), readFileSync(file('server.key')));
    const started = await startService(echo, {
      tls: { enabled: true, cert_file: file('labelled.pem'), key_file: file('labelled.key'), watch: true },
    });
    services.push(started.service as TcpService<object>);
    const failures = (listener: string) =>
      metricValue(started.registry, 'hyp_tls_reload_failures_total', { listener });
    expect(await failures('tcp.echo.tls')).toBe(0);
    writeFileSync(file('labelled.pem'), 'not a certificate\n');
    let n = 0;
    for (let i = 0; i < 500 && n === 0; i++) {
      await new Promise((r) => setTimeout(r, 20));
      n = await failures('tcp.echo.tls');
    }
    // Before: one series without labels, so which listener failed was the log's to say.
    expect(n).toBe(1);
    expect(await failures('server.tls')).toBe(0);
  });
});
