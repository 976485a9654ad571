/**
 * Certificate rotation on disk: new connections get the new certificate
 * without a restart; a broken replacement keeps the old certificate, logs
 * HYP_E_TLS_RELOAD and counts hyp_tls_reload_failures_total.
 */
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  renameSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from '../http/harness.js';
import { copyServerPair, makePki, reloadFailures, servedCn, type TestPki } from './certs.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function atomicWrite(file: string, content: Buffer | string): void {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

async function serveFrom(cert: string, key: string): Promise<Served> {
  return serve(['server.tls.enabled=true', `server.tls.cert_file=${cert}`, `server.tls.key_file=${key}`]);
}

/** Serve copies of the first server certificate and key, from a fresh directory (`served`). */
async function serveCopies(): Promise<{ dir: string; cert: string; key: string }> {
  const { dir, cert, key } = copyServerPair(pki);
  served = await serveFrom(cert, key);
  return { dir, cert, key };
}

describe('certificate rotation on disk', () => {
  it('files replaced by rename: new connections see the new certificate, no restart', async () => {
    const { cert, key } = await serveCopies();
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');

    atomicWrite(key, pki.read(pki.server2Key));
    atomicWrite(cert, pki.read(pki.server2Cert));
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new certificate',
    );
    expect(served!.logs.some((l) => l.msg === 'TLS certificate reloaded')).toBe(true);
    expect(await reloadFailures(served!.registry)).toBe(0);
  });

  it('a Kubernetes secret volume (..data symlink swapped atomically) is followed', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-secret-'));
    const version = (name: string, c: string, k: string) => {
      mkdirSync(join(dir, name));
      copyFileSync(c, join(dir, name, 'tls.crt'));
      copyFileSync(k, join(dir, name, 'tls.key'));
    };
    version('..v1', pki.serverCert, pki.serverKey);
    symlinkSync('..v1', join(dir, '..data'));
    symlinkSync('..data/tls.crt', join(dir, 'tls.crt'));
    symlinkSync('..data/tls.key', join(dir, 'tls.key'));
    served = await serveFrom(join(dir, 'tls.crt'), join(dir, 'tls.key'));
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');

    version('..v2', pki.server2Cert, pki.server2Key);
    symlinkSync('..v2', join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new certificate',
    );
  });

  it('the certificate directory removed, then created again with new files: the new certificate is served', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'hyp-certs-')), 'tls');
    mkdirSync(dir);
    const cert = join(dir, 'tls.crt');
    const key = join(dir, 'tls.key');
    copyFileSync(pki.serverCert, cert);
    copyFileSync(pki.serverKey, key);
    served = await serveFrom(cert, key);
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');

    rmSync(dir, { recursive: true });
    // The refused reload of the missing files: the removal was seen.
    await until(() => served!.logs.find((l) => l.code === 'HYP_E_TLS_RELOAD'), 'the reload error');
    mkdirSync(dir);
    copyFileSync(pki.server2Key, key);
    copyFileSync(pki.server2Cert, cert);
    // Before: the watch stayed on the removed directory's inode and never fired again.
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new certificate',
      15_000,
    );
  });

  it('a corrupt replacement: the old certificate keeps being served, HYP_E_TLS_RELOAD logged, metric counted', async () => {
    const { cert, key } = await serveCopies();

    atomicWrite(cert, '-----BEGIN CERTIFICATE-----\nnot base64 at all\n-----END CERTIFICATE-----\n');
    const logged = await until(
      () => served!.logs.find((l) => l.code === 'HYP_E_TLS_RELOAD'),
      'the reload error',
    );
    expect(logged.msg).toContain(cert);
    expect(await reloadFailures(served!.registry)).toBe(1);
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');

    // A key that does not match the certificate is refused too, naming the key file.
    atomicWrite(cert, pki.read(pki.serverCert));
    atomicWrite(key, pki.read(pki.strayKey));
    await until(
      async () => ((await reloadFailures(served!.registry)) === 2 ? true : undefined),
      'the mismatch refused',
    );
    expect(served!.logs.filter((l) => l.code === 'HYP_E_TLS_RELOAD').at(-1)?.msg).toContain(key);
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');
  });

  it('while a broken file waits for its fix, unrelated changes in its directory are not refused again and again', async () => {
    const { dir, cert, key } = await serveCopies();

    atomicWrite(cert, 'not a certificate\n');
    await until(
      async () => ((await reloadFailures(served!.registry)) === 1 ? true : undefined),
      'the broken file refused',
    );
    // A log file (or any other) written next to the certificates, each write past the watch's debounce.
    for (let i = 0; i < 3; i++) {
      writeFileSync(join(dir, 'app.log'), `line ${i}\n`, { flag: 'a' });
      await new Promise((r) => setTimeout(r, 400));
    }
    // The same broken bytes again (touched, not changed) are not news either.
    atomicWrite(cert, 'not a certificate\n');
    await new Promise((r) => setTimeout(r, 400));
    atomicWrite(key, pki.read(pki.server2Key));
    atomicWrite(cert, pki.read(pki.server2Cert));
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the fixed certificate',
    );
    expect(await reloadFailures(served!.registry)).toBe(1);
    expect(served!.logs.filter((l) => l.code === 'HYP_E_TLS_RELOAD')).toHaveLength(1);
  });
});
