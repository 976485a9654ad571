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
import { connect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { demoApp, type Running, startSupervisor } from '../helpers/supervisor.js';

let pki: TestPki;
let sup: Running | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

interface Visit {
  reused: boolean;
  session: Buffer | undefined;
}

/** One TLS connection to the echo service offering `session`: send a line, read it back, close. */
function visit(port: number, session: Buffer | undefined, maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<Visit> {
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    let reused = false;
    let got = '';
    const socket = connect({ host: '127.0.0.1', port, ca: pki.read(pki.caCert), session, maxVersion });
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error('no echo within 10 s'));
    }, 10_000);
    socket.on('session', (s: Buffer) => {
      latest = s;
    });
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write('ping\n');
    });
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => {
      got += d;
      // The echo is back; TLS 1.3 tickets arrive before it. End politely.
      if (got === 'ping\n') socket.end();
    });
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      if (got !== 'ping\n') reject(new Error(`echo was ${JSON.stringify(got)}`));
      else resolve({ reused, session: latest });
    });
  });
}

async function sequential(port: number, n: number, maxVersion: 'TLSv1.2' | 'TLSv1.3'): Promise<number> {
  let session = (await visit(port, undefined, maxVersion)).session;
  let resumed = 0;
  for (let i = 0; i < n; i++) {
    const v = await visit(port, session, maxVersion);
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
