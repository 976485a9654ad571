/**
 * A certificate reload does not cost clients their session tickets. With
 * the supervisor's keys (the ticket-key ring is installed on the new
 * context) and without them (a worker run on its own, or
 * `share_ticket_keys: false`): Node gives every new secure context fresh
 * random ticket keys, so before, each reload of a standalone worker turned
 * every returning client into a full handshake.
 */
import { renameSync, writeFileSync } from 'node:fs';
import { connect, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { newTicketKey } from '../../../../supervisor/tlskeys.js';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from '../http/harness.js';
import { copyServerPair, makePki, type TestPki } from './certs.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

interface Visit {
  cn: string;
  reused: boolean;
  session: Buffer | undefined;
}

function visit(port: number, session?: Buffer): Promise<Visit> {
  return new Promise((resolve, reject) => {
    let got: Buffer | undefined;
    let cn = '';
    let reused = false;
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.read(pki.caCert),
      ...(session ? { session } : {}),
    });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      cn = String(socket.getPeerCertificate().subject?.CN ?? '');
      socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    socket.on('session', (s: Buffer) => {
      got = s;
    });
    socket.resume();
    socket.on('error', reject);
    socket.on('close', () => resolve({ cn, reused, session: got }));
  });
}

function atomicWrite(file: string, content: Buffer): void {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

describe('session tickets across a certificate reload', () => {
  for (const mode of ['without supervisor keys', 'with supervisor keys'] as const) {
    it(`${mode}: a ticket issued before the reload resumes after it`, async () => {
      const { cert, key } = copyServerPair(pki);
      const keys = mode === 'with supervisor keys' ? { current: newTicketKey(), previous: [] } : undefined;
      served = await serve(
        ['server.tls.enabled=true', `server.tls.cert_file=${cert}`, `server.tls.key_file=${key}`],
        keys,
      );
      const first = await visit(served.port);
      expect(first.cn).toBe('hyp server one');
      expect(first.session).toBeDefined();

      atomicWrite(key, pki.read(pki.server2Key));
      atomicWrite(cert, pki.read(pki.server2Cert));
      await until(
        async () => (await visit(served!.port)).cn === 'hyp server two' || undefined,
        'the new certificate',
      );

      // Before (without supervisor keys): false, the new context had new random ticket keys.
      expect((await visit(served.port, first.session)).reused).toBe(true);
    });
  }
});
