/**
 * A resumed TLS session carries the trust decision of the handshake that
 * created it: no certificate is asked for again. The HTTP listener and every
 * TCP service of a worker share the supervisor's session-ticket keys, so a
 * session must resume only where the same client-certificate policy (mode
 * and CA bundle) applies — never on a `client_auth: require` service when it
 * was made without a certificate, nor after the CA bundle it was verified
 * against has been replaced.
 */
import { copyFileSync, mkdtempSync, renameSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { newTicketKey } from '../../../../supervisor/tlskeys.js';
import { until } from '../../../helpers/supervisor.js';
import { startService } from '../tcp/helpers.js';
import { makePki, type TestPki } from './certs.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

const services: TcpService<object>[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

/** One worker's shared key set, as the supervisor sends it. */
const keys = { current: newTicketKey(), previous: [] };

interface Seen {
  /** What the handler saw of each connection: authorized, client CN. */
  connections: Array<{ authorized: boolean; cn: string }>;
}

async function startTlsService(
  name: string,
  clientAuth: 'none' | 'request' | 'require',
  caFile = pki.caCert,
  watch = false,
): Promise<{ port: number; seen: Seen }> {
  const seen: Seen = { connections: [] };
  const started = await startService(
    async (conn) => {
      const socket = conn.socket as TLSSocket;
      seen.connections.push({
        authorized: socket.authorized,
        cn: String(conn.clientCert?.subject.CN ?? 'none'),
      });
      await conn.write('hello');
      await conn.close();
    },
    {
      tls: {
        enabled: true,
        cert_file: pki.serverCert,
        key_file: pki.serverKey,
        ca_file: caFile,
        client_auth: clientAuth,
        watch,
      },
    },
    {},
    { name, ticketKeys: keys },
  );
  services.push(started.service as TcpService<object>);
  return { port: started.port, seen };
}

interface Visit {
  /** Bytes the service answered (empty when it refused the client). */
  text: string;
  reused: boolean;
  session: Buffer | undefined;
}

/** One connection; `cert` presents the CA-issued client certificate. */
function visit(
  port: number,
  maxVersion: 'TLSv1.2' | 'TLSv1.3',
  session?: Buffer,
  cert = false,
): Promise<Visit> {
  return new Promise((resolve) => {
    let text = '';
    let got: Buffer | undefined;
    let reused = false;
    const socket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.read(pki.caCert),
      maxVersion,
      ...(session ? { session } : {}),
      ...(cert ? { cert: pki.read(pki.clientCert), key: pki.read(pki.clientKey) } : {}),
    });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
    });
    socket.on('session', (s: Buffer) => {
      got = s;
    });
    socket.on('data', (d: Buffer) => {
      text += d.toString();
    });
    socket.on('error', () => {}); // a refused client: `text` stays empty
    socket.on('close', () => resolve({ text, reused, session: got }));
  });
}

describe('TLS resumption keeps the client-certificate policy', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${version}: a session from a client_auth none service does not open a client_auth require service without a certificate`, async () => {
      const open = await startTlsService('open', 'none');
      const secure = await startTlsService('secure', 'require');

      const first = await visit(open.port, version);
      expect(first.text).toBe('hello');
      expect(first.session).toBeDefined();

      const second = await visit(secure.port, version, first.session);
      // Before: TLS 1.3 resumed the open service's session on the require
      // service — no certificate asked for, socket.authorized true, handler run.
      expect(second.reused).toBe(false);
      expect(second.text).toBe('');
      expect(secure.seen.connections).toEqual([]);

      // A client with its certificate still gets in.
      const withCert = await visit(secure.port, version, undefined, true);
      expect(withCert.text).toBe('hello');
      expect(secure.seen.connections).toEqual([{ authorized: true, cn: 'hyp client' }]);
    });
  }

  it('sessions still resume on the same service, and on a twin with the same policy (other workers)', async () => {
    const a = await startTlsService('secure', 'require');
    const b = await startTlsService('secure', 'require');
    const first = await visit(a.port, 'TLSv1.3', undefined, true);
    expect(first.session).toBeDefined();
    const again = await visit(a.port, 'TLSv1.3', first.session);
    expect(again.reused).toBe(true);
    expect(again.text).toBe('hello');
    const twin = await visit(b.port, 'TLSv1.3', first.session);
    expect(twin.reused).toBe(true);
    expect(twin.text).toBe('hello');
  });

  it('a replaced CA bundle (hot reload) ends resumption of sessions verified against the old one', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-ca-'));
    const ca = join(dir, 'ca.crt');
    copyFileSync(pki.caCert, ca);
    const secure = await startTlsService('secure', 'require', ca, true);
    const first = await visit(secure.port, 'TLSv1.3', undefined, true);
    expect(first.text).toBe('hello');
    expect(first.session).toBeDefined();

    // The CA that issued the client's certificate is dropped from the bundle
    // (compromised intermediate, new PKI): only the server's own CA stays trusted.
    copyFileSync(pki.selfSignedCert, `${ca}.tmp`);
    renameSync(`${ca}.tmp`, ca);
    // The reload is visible once a fresh client with the old CA's certificate is refused.
    await until(
      async () => (await visit(secure.port, 'TLSv1.3', undefined, true)).text === '' || undefined,
      'the new CA bundle',
    );

    const resumed = await visit(secure.port, 'TLSv1.3', first.session);
    // Before: the old session resumed (authorized, the dropped CA's client served).
    expect(resumed.reused).toBe(false);
    expect(resumed.text).toBe('');
  });
});
