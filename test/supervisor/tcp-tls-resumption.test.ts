/**
 * TLS resumption across the workers of a real supervisor, on a raw TCP
 * service (`tcp.echo.tls`): the supervisor's shared ticket keys reach the
 * TCP services too, so a returning client resumes whichever worker accepts
 * (docs/tcp.md "TLS", docs/tls.md "Session resumption across workers").
 *
 * The supervisor sends its first `tls-keys` message right after `config`,
 * before the worker builds its services. The worker kept them and handed
 * them to the HTTP listener only: the TCP services sealed tickets with
 * per-worker random keys until the first rotation (12 h by default), and a
 * reconnect resumed only when it reached the worker that issued its ticket.
 */
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { demoApp, type Running, startSupervisor } from '../helpers/supervisor.js';
import { tlsVisit } from '../helpers/tls-visit.js';

let pki: TestPki;
let sup: Running | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

async function sequential(port: number, n: number, maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<number> {
  const echo = { send: 'ping\n', until: 'ping\n', maxVersion };
  const ca = pki.read(pki.caCert);
  let session = (await tlsVisit(port, ca, undefined, '', echo)).session;
  let resumed = 0;
  for (let i = 0; i < n; i++) {
    const v = await tlsVisit(port, ca, session, '', echo);
    expect(v.body).toBe('ping\n');
    if (v.reused) resumed++;
    session = v.session ?? session;
  }
  return resumed;
}

describe('TLS resumption on a TCP service with 2 workers', () => {
  it('shared ticket keys reach the TCP service: at least 38 of 40 reconnects resume, TLS 1.3 and 1.2', async () => {
    sup = await startSupervisor({
      app: demoApp,
      workers: 2,
      sets: [
        'tcp.echo.addr=127.0.0.1:0',
        'tcp.echo.tls.enabled=true',
        `tcp.echo.tls.cert_file=${pki.serverCert}`,
        `tcp.echo.tls.key_file=${pki.serverKey}`,
      ],
    });
    const port = (await sup.status()).listeners.find((l) => l.name === 'echo')!.port;
    const tls13 = await sequential(port, 40, 'TLSv1.3');
    const tls12 = await sequential(port, 40, 'TLSv1.2');
    console.log(`tcp.echo.tls with 2 workers: TLS 1.3 ${tls13}/40 resumed, TLS 1.2 ${tls12}/40 resumed`);
    // With per-worker keys about half resume (each worker sees about half the reconnects).
    expect(tls13).toBeGreaterThanOrEqual(38);
    expect(tls12).toBeGreaterThanOrEqual(38);
  });
});
