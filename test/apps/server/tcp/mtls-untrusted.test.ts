/**
 * mTLS on a TCP service (`client_auth: require`): a client whose
 * certificate does not verify against `ca_file` is refused like one that
 * sent none — HYP_E_TCP_HANDSHAKE to onError, the handler never runs
 * (docs/tcp.md "TLS") — and the error says why. Node refuses such a
 * certificate after the handshake, by closing the socket, and reports it
 * to 'tlsClientError' as "socket hang up" (ECONNRESET), as if the client
 * had left; the reason is only in the socket's `authorizationError`.
 */
import { connect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { isHypError } from '../../../../supervisor/errors.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { startService, until } from './helpers.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});
const services: TcpService<object>[] = [];
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

describe('client_auth require on a TCP service', () => {
  for (const version of ['TLSv1.2', 'TLSv1.3'] as const) {
    it(`${version}: a client certificate no CA here issued is refused with HYP_E_TCP_HANDSHAKE; the handler never runs`, async () => {
      const errors: Error[] = [];
      let handled = 0;
      const { service, port } = await startService(
        async (conn) => {
          handled++;
          for await (const chunk of conn) await conn.write(chunk);
        },
        {
          tls: {
            enabled: true,
            cert_file: pki.serverCert,
            key_file: pki.serverKey,
            ca_file: pki.caCert,
            client_auth: 'require',
            watch: false,
          },
        },
        { onError: (...e) => errors.push(...e) },
      );
      services.push(service as TcpService<object>);
      const client = connect({
        host: '127.0.0.1',
        port,
        ca: pki.read(pki.caCert),
        cert: pki.read(pki.selfSignedCert),
        key: pki.read(pki.selfSignedKey),
        maxVersion: version,
      });
      client.on('error', () => {});
      client.on('secureConnect', () => client.write('let me in'));
      let echoed = '';
      client.on('data', (d: Buffer) => {
        echoed += d.toString();
      });
      await new Promise((resolve) => client.once('close', resolve));
      await until(() => service.openConnections() === 0, 'refused connection cleaned up');
      expect(echoed).toBe('');
      expect(handled).toBe(0);
      await until(
        () => errors.some((e) => isHypError(e, 'HYP_E_TCP_HANDSHAKE')) || undefined,
        'HYP_E_TCP_HANDSHAKE reported',
        3000,
      );
      const refused = errors.find((e) => isHypError(e, 'HYP_E_TCP_HANDSHAKE'))!;
      // It says why: Node reports this refusal as "socket hang up", as if the client had left.
      expect(refused.message).toContain('127.0.0.1:');
      expect(refused.message).toContain('client certificate does not verify against tcp.echo.tls.ca_file');
      expect(refused.message).toContain('DEPTH_ZERO_SELF_SIGNED_CERT');
      expect(refused.message).not.toContain('socket hang up');
    });
  }
});
