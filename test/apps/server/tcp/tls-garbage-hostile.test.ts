/**
 * Bytes that are no TLS handshake, sent to a TLS TCP service: each is
 * refused with HYP_E_TCP_HANDSHAKE naming the peer and OpenSSL's reason with
 * Node's code, not OpenSSL's raw error line (a packed library code and a
 * source path of Node's build); the service keeps serving TLS clients.
 */
import { join } from 'node:path';
import { connect as tlsConnect } from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import type { HypError } from '../../../../supervisor/errors.js';
import { closeTracked, dial, echo, selfSignedCertDir, start, until } from './helpers.js';

afterEach(async () => {
  await closeTracked();
});

// A fixed pseudo-random sequence: the same garbage every run.
function garbage(length: number, seed: number): Buffer {
  const out = Buffer.alloc(length);
  let x = seed;
  for (let i = 0; i < length; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    out[i] = x & 0xff;
  }
  return out;
}

describe('a TLS TCP service fed bytes that are no handshake', () => {
  const inputs: Array<[string, Buffer, RegExp]> = [
    [
      'an HTTP request',
      Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'),
      /^http request \(ERR_SSL_HTTP_REQUEST\)$/,
    ],
    ['512 random bytes', garbage(512, 7), /^[a-z ]+ \(ERR_SSL_[A-Z_]+\)$/],
    [
      'a handshake record header announcing 65 535 bytes',
      Buffer.from([0x16, 0x03, 0x01, 0xff, 0xff, 0x01]),
      // OpenSSL 3.0 (Node 20) says packet, 3.5 (Node 26) data.
      /^(packet|data) length too long \(ERR_SSL_(PACKET|DATA)_LENGTH_TOO_LONG\)$/,
    ],
  ];
  for (const [name, bytes, detail] of inputs) {
    it(`${name}: HYP_E_TCP_HANDSHAKE with OpenSSL's reason and code; a TLS client is served after`, async () => {
      const dir = selfSignedCertDir('hyp-tls-garbage-');
      const errors: HypError[] = [];
      const { service, port } = await start(
        echo,
        {
          tls: {
            enabled: true,
            cert_file: join(dir, 'server.pem'),
            key_file: join(dir, 'server.key'),
            watch: false,
          },
        },
        { onError: (err) => errors.push(err as HypError) },
      );
      const client = await dial(port);
      const local = `127.0.0.1:${client.localPort}`;
      client.on('error', () => {});
      client.write(bytes);
      await until(() => errors.length > 0, 'handshake failure reported');
      client.destroy();
      expect(errors[0]!.code).toBe('HYP_E_TCP_HANDSHAKE');
      expect(errors[0]!.params.remote).toBe(local);
      expect(String(errors[0]!.params.detail)).toMatch(detail);
      expect(errors[0]!.message).not.toMatch(/deps\/openssl|\.c:\d+|:error:/);

      const tls = tlsConnect({ port, host: '127.0.0.1', rejectUnauthorized: false });
      await new Promise((r) => tls.once('secureConnect', r));
      tls.write('ping');
      const echoed = await new Promise<Buffer>((r) => tls.once('data', r));
      tls.destroy();
      expect(echoed.toString()).toBe('ping');
      await until(() => service.openConnections() === 0, 'connections closed');
    });
  }
});
