/**
 * An expired (or not yet valid) certificate is the most common TLS outage,
 * and one hyp cannot fix: it serves what it is given. It says so instead: a
 * HYP_W_TLS_CERT_VALIDITY warning when such a certificate is loaded (at start
 * or by a reload), and the gauge
 * `hyp_tls_certificate_expiry_timestamp_seconds{listener}` (not-after, Unix
 * seconds; the earliest among a pod's workers) to alert on before it happens.
 */
import { execFileSync } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { copyFileSync, renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from '../http/harness.js';
import { copyServerPair, makePki, type TestPki } from './certs.js';

let pki: TestPki;
let expiredCert = '';
let served: Served | undefined;

beforeAll(() => {
  pki = makePki();
  // The first server key, certified by the test CA with a validity that ended yesterday.
  const dir = pki.dir;
  execFileSync(
    'openssl',
    ['req', '-new', '-key', pki.serverKey, '-subj', '/CN=hyp expired', '-out', 'expired.csr'],
    {
      cwd: dir,
      stdio: 'pipe',
    },
  );
  writeFileSync(join(dir, 'expired.ext'), 'subjectAltName=IP:127.0.0.1\n');
  expiredCert = join(dir, 'expired.crt');
  writeFileSync(
    expiredCert,
    execFileSync(
      'openssl',
      [
        'x509',
        '-req',
        '-in',
        'expired.csr',
        '-CA',
        'ca.crt',
        '-CAkey',
        'ca.pk8.key',
        '-CAcreateserial',
        '-days',
        '-1',
        '-extfile',
        'expired.ext',
      ],
      { cwd: dir },
    ),
  );
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

async function expiry(s: Served): Promise<number | undefined> {
  const metric = await s.registry.getSingleMetric('hyp_tls_certificate_expiry_timestamp_seconds')?.get();
  return metric?.values.find((v) => v.labels.listener === 'server.tls')?.value;
}

const notAfter = (file: string) => Math.floor(Date.parse(new X509Certificate(pki.read(file)).validTo) / 1000);

describe('certificate validity', () => {
  it('a valid certificate: its not-after time is exported, no warning', async () => {
    served = await serve(pki.tlsSets());
    expect(await expiry(served)).toBe(notAfter(pki.serverCert));
    expect(served.logs.some((l) => l.code === 'HYP_W_TLS_CERT_VALIDITY')).toBe(false);
  });

  it('an expired certificate at start: served, with a HYP_W_TLS_CERT_VALIDITY warning naming the file and its expiry', async () => {
    served = await serve([
      'server.tls.enabled=true',
      `server.tls.cert_file=${expiredCert}`,
      `server.tls.key_file=${pki.serverKey}`,
    ]);
    const warning = served.logs.find((l) => l.code === 'HYP_W_TLS_CERT_VALIDITY');
    expect(warning?.msg).toContain(expiredCert);
    expect(warning?.msg).toContain('expired');
    expect(await expiry(served)).toBe(notAfter(expiredCert));
  });

  it('a reload to an expired certificate: installed (it matches its key), warned about, the gauge follows', async () => {
    const { cert, key } = copyServerPair(pki);
    served = await serve([
      'server.tls.enabled=true',
      `server.tls.cert_file=${cert}`,
      `server.tls.key_file=${key}`,
    ]);
    expect(await expiry(served)).toBe(notAfter(pki.serverCert));

    copyFileSync(expiredCert, `${cert}.tmp`);
    renameSync(`${cert}.tmp`, cert);
    await until(
      () => served!.logs.some((l) => l.code === 'HYP_W_TLS_CERT_VALIDITY') || undefined,
      'the validity warning',
    );
    expect(await expiry(served)).toBe(notAfter(expiredCert));
  });
});
