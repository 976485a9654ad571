/**
 * Test certificates made with the `openssl` CLI into a temp dir: a CA, two
 * server certificates for 127.0.0.1/localhost (for rotation), a client
 * certificate (mTLS), a self-signed client certificate no CA here issued,
 * and a key that matches none of them.
 */
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect, type TLSSocket } from 'node:tls';
import type { Registry } from 'prom-client';

export interface TestPki {
  dir: string;
  caCert: string;
  serverCert: string;
  serverKey: string;
  /** A second server certificate/key pair (rotation target). */
  server2Cert: string;
  server2Key: string;
  clientCert: string;
  clientKey: string;
  /** A key that belongs to no certificate here. */
  strayKey: string;
  /** A client certificate no CA here issued (self-signed), with its key. */
  selfSignedCert: string;
  selfSignedKey: string;
  read(file: string): Buffer;
  /** `--set`s serving TLS with the first server certificate: `server.tls.enabled`, `cert_file`, `key_file`. */
  tlsSets(): string[];
}

function openssl(dir: string, args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

type KeyType = 'ec' | 'rsa';

const serverExt = 'subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n';

function key(dir: string, name: string, type: KeyType = 'ec'): string {
  if (type === 'rsa')
    openssl(dir, ['genpkey', '-algorithm', 'RSA', '-pkeyopt', 'rsa_keygen_bits:2048', '-out', `${name}.key`]);
  else openssl(dir, ['ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', `${name}.key`]);
  // PKCS#8, the form every TLS stack reads.
  openssl(dir, ['pkcs8', '-topk8', '-nocrypt', '-in', `${name}.key`, '-out', `${name}.pk8.key`]);
  return join(dir, `${name}.pk8.key`);
}

function issue(dir: string, name: string, subject: string, ext: string, type: KeyType = 'ec'): string {
  key(dir, name, type);
  writeFileSync(join(dir, `${name}.ext`), ext);
  openssl(dir, ['req', '-new', '-key', `${name}.pk8.key`, '-subj', subject, '-out', `${name}.csr`]);
  openssl(dir, [
    'x509',
    '-req',
    '-in',
    `${name}.csr`,
    '-CA',
    'ca.crt',
    '-CAkey',
    'ca.pk8.key',
    '-CAcreateserial',
    '-days',
    '2',
    '-sha256',
    '-extfile',
    `${name}.ext`,
    '-out',
    `${name}.crt`,
  ]);
  return join(dir, `${name}.crt`);
}

/**
 * One more server certificate for 127.0.0.1 from the test CA, in `pki.dir`:
 * an RSA-2048 one (`rsa`) for specs that need the other key family than
 * the P-256 ones `makePki` issues.
 */
export function issueServerPair(pki: TestPki, name: string, type: KeyType): { cert: string; key: string } {
  const cert = issue(pki.dir, name, `/CN=hyp ${type} server`, serverExt, type);
  return { cert, key: join(pki.dir, `${name}.pk8.key`) };
}

export function makePki(): TestPki {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-pki-'));
  key(dir, 'ca');
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    'ca.pk8.key',
    '-subj',
    '/CN=hyp test CA',
    '-days',
    '2',
    '-sha256',
    '-out',
    'ca.crt',
  ]);
  const serverCert = issue(dir, 'server', '/CN=hyp server one', serverExt);
  const server2Cert = issue(dir, 'server2', '/CN=hyp server two', serverExt);
  const clientCert = issue(dir, 'client', '/CN=hyp client', 'extendedKeyUsage=clientAuth\n');
  const strayKey = key(dir, 'stray');
  const selfSignedKey = key(dir, 'self');
  openssl(dir, [
    'req',
    '-x509',
    '-new',
    '-key',
    'self.pk8.key',
    '-subj',
    '/CN=hyp impostor',
    '-days',
    '2',
    '-out',
    'self.crt',
  ]);
  return {
    dir,
    caCert: join(dir, 'ca.crt'),
    serverCert,
    serverKey: join(dir, 'server.pk8.key'),
    server2Cert,
    server2Key: join(dir, 'server2.pk8.key'),
    clientCert,
    clientKey: join(dir, 'client.pk8.key'),
    strayKey,
    selfSignedCert: join(dir, 'self.crt'),
    selfSignedKey,
    read: (file) => readFileSync(file),
    tlsSets: () => [
      'server.tls.enabled=true',
      `server.tls.cert_file=${serverCert}`,
      `server.tls.key_file=${join(dir, 'server.pk8.key')}`,
    ],
  };
}

/** Copies of the first server certificate and key in `dir` (default: a fresh directory), as `tls.crt` and `tls.key`. */
export function copyServerPair(
  pki: TestPki,
  dir = mkdtempSync(join(tmpdir(), 'hyp-certs-')),
): { dir: string; cert: string; key: string } {
  const cert = join(dir, 'tls.crt');
  const key = join(dir, 'tls.key');
  copyFileSync(pki.serverCert, cert);
  copyFileSync(pki.serverKey, key);
  return { dir, cert, key };
}

/** Common name of the certificate a new connection to `port` is served (verified against the test CA). */
export function servedCn(pki: TestPki, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket: TLSSocket = connect({ host: '127.0.0.1', port, ca: pki.read(pki.caCert) }, () => {
      const cn = socket.getPeerCertificate().subject.CN;
      socket.destroy();
      resolve(Array.isArray(cn) ? cn.join(',') : String(cn));
    });
    socket.on('error', reject);
  });
}

/** The CNs `n` sequential connections to `port` were served. */
export async function servedCns(pki: TestPki, port: number, n: number): Promise<Set<string>> {
  const cns = new Set<string>();
  for (let i = 0; i < n; i++) cns.add(await servedCn(pki, port));
  return cns;
}

/** The `--set`s that serve `pair` on the HTTP listener (`server.tls`). */
export function tlsSets(pair: { cert: string; key: string }): string[] {
  return ['server.tls.enabled=true', `server.tls.cert_file=${pair.cert}`, `server.tls.key_file=${pair.key}`];
}

/** `hyp_tls_reload_failures_total` of one listener (`server.tls`, `tcp.<name>.tls`); NaN when it has no series. */
export async function reloadFailures(registry: Registry, listener = 'server.tls'): Promise<number> {
  const metric = await registry.getSingleMetric('hyp_tls_reload_failures_total')?.get();
  return metric?.values.find((v) => v.labels.listener === listener)?.value ?? Number.NaN;
}
