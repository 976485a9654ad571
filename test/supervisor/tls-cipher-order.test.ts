/**
 * docs/tls.md: "The server's preference order is used (`honorCipherOrder`)."
 * A TLS 1.2 client offering allowed suites in an order other than the
 * server's gets the server's first choice among them. The documented order:
 * AES128-GCM, then AES256-GCM, then CHACHA20-POLY1305, each with ECDSA and
 * RSA certificates. The HTTP listener serves the test PKI's ECDSA
 * certificate, the TCP service an RSA one, so one supervisor shows both.
 * Real peers: node:tls and `openssl s_client`.
 */
import { spawn } from 'node:child_process';
import { connect } from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { issueServerPair, makePki, type TestPki } from '../apps/server/tls/certs.js';
import { demoApp, type Running, startSupervisor } from '../helpers/supervisor.js';

/** The TLS 1.2 order docs/tls.md gives, by certificate type. */
const serverOrder = {
  ecdsa: ['ECDHE-ECDSA-AES128-GCM-SHA256', 'ECDHE-ECDSA-AES256-GCM-SHA384', 'ECDHE-ECDSA-CHACHA20-POLY1305'],
  rsa: ['ECDHE-RSA-AES128-GCM-SHA256', 'ECDHE-RSA-AES256-GCM-SHA384', 'ECDHE-RSA-CHACHA20-POLY1305'],
};

let pki: TestPki;
let sup: Running;
let echoPort: number;

beforeAll(async () => {
  pki = makePki();
  const rsa = issueServerPair(pki, 'rsa', 'rsa');
  sup = await startSupervisor({
    app: demoApp,
    workers: 1,
    sets: [
      ...pki.tlsSets(),
      'tcp.echo.addr=127.0.0.1:0',
      'tcp.echo.tls.enabled=true',
      `tcp.echo.tls.cert_file=${rsa.cert}`,
      `tcp.echo.tls.key_file=${rsa.key}`,
    ],
  });
  const echo = await sup.waitLog(
    (l) => l.msg === 'holding listener' && l.listener === 'echo',
    'echo listener',
  );
  echoPort = Number(echo.port);
});
afterAll(async () => {
  await sup?.stop();
});

/** The suite a TLS 1.2 handshake with `port` settles on when the client offers `offer`, in that order. */
function negotiated(port: number, offer: string[]): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = connect(
      { host: '127.0.0.1', port, ca: pki.read(pki.caCert), maxVersion: 'TLSv1.2', ciphers: offer.join(':') },
      () => {
        const protocol = socket.getProtocol();
        const { name } = socket.getCipher();
        socket.destroy();
        if (protocol === 'TLSv1.2') resolve(name);
        else reject(new Error(`negotiated ${protocol}, not TLS 1.2`));
      },
    );
    socket.on('error', reject);
  });
}

/** Every pair of the server's suites offered in reverse, then all three reversed: the server's first of each. */
async function expectServerChoice(port: number, order: string[]): Promise<void> {
  const offers: string[][] = [];
  for (let i = 0; i < order.length; i++)
    for (let j = i + 1; j < order.length; j++) offers.push([order[j]!, order[i]!]);
  offers.push([...order].reverse());
  const got: Array<[string[], string]> = [];
  for (const offer of offers) got.push([offer, await negotiated(port, offer)]);
  const want = offers.map((offer): [string[], string] => [offer, order.find((s) => offer.includes(s))!]);
  expect(got).toEqual(want);
}

describe("TLS 1.2: the server's cipher order wins over the client's", () => {
  it('HTTP listener (ECDSA certificate), node:tls offering the suites in reverse: AES128-GCM, then AES256-GCM, then CHACHA20', async () => {
    await expectServerChoice(sup.httpPort, serverOrder.ecdsa);
  });

  it('HTTP listener, openssl s_client -tls1_2 preferring CHACHA20 then AES256: the server picks AES128-GCM', async () => {
    const client = spawn(
      'openssl',
      [
        's_client',
        '-tls1_2',
        '-connect',
        `127.0.0.1:${sup.httpPort}`,
        '-CAfile',
        pki.caCert,
        '-cipher',
        [...serverOrder.ecdsa].reverse().join(':'),
      ],
      // stdin at EOF: s_client handshakes, prints the session, and quits.
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    let out = '';
    client.stdout.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    client.stderr.on('data', (d: Buffer) => {
      out += d.toString('utf8');
    });
    const timer = setTimeout(() => client.kill('SIGKILL'), 15_000);
    const code = await new Promise<number | null>((res) => client.once('exit', (c) => res(c)));
    clearTimeout(timer);
    expect(code, out).toBe(0);
    expect(out).toMatch(/Verify return code: 0 \(ok\)/);
    expect(out).toMatch(/Protocol\s*: TLSv1\.2/);
    expect(out).toMatch(/Cipher\s*: ECDHE-ECDSA-AES128-GCM-SHA256/);
  });

  it('TCP service with TLS (RSA certificate), node:tls offering the suites in reverse: AES128-GCM, then AES256-GCM, then CHACHA20', async () => {
    await expectServerChoice(echoPort, serverOrder.rsa);
  });
});
