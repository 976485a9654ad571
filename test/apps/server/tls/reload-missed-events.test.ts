/**
 * Certificate rotations that no directory event announces are still picked
 * up. The watch is on the directories that hold the files; some rotations
 * change nothing inside those directories:
 *
 * - the directory is reached through a symlink that a deploy swaps
 *   (`current -> releases/v2`, `ln -sfn`-style, as Capistrano or a
 *   Vault/consul-template sidecar with versioned directories do): the event
 *   happens in the parent, the watch stays on the old target;
 * - the file lives on a filesystem whose changes inotify never reports
 *   (NFS/EFS, many FUSE and CSI mounts), changed by another host.
 *
 * A cheap periodic check of the files' identity (stat) catches both.
 */
import { copyFileSync, mkdirSync, mkdtempSync, renameSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from '../http/harness.js';
import { makePki, servedCn, type TestPki } from './certs.js';

let pki: TestPki;
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

function release(root: string, name: string, cert: string, key: string): string {
  const dir = join(root, 'releases', name);
  mkdirSync(dir, { recursive: true });
  copyFileSync(cert, join(dir, 'tls.crt'));
  copyFileSync(key, join(dir, 'tls.key'));
  return dir;
}

describe('certificate rotation no directory event announces', () => {
  it('the certificate directory is a symlink swapped to a new release: the new certificate is served', async () => {
    const root = mkdtempSync(join(tmpdir(), 'hyp-certs-'));
    release(root, 'v1', pki.serverCert, pki.serverKey);
    symlinkSync('releases/v1', join(root, 'current'));
    served = await serve([
      'server.tls.enabled=true',
      `server.tls.cert_file=${join(root, 'current', 'tls.crt')}`,
      `server.tls.key_file=${join(root, 'current', 'tls.key')}`,
    ]);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');

    release(root, 'v2', pki.server2Cert, pki.server2Key);
    // `ln -sfn releases/v2 current`, atomically: a new link renamed over the old.
    symlinkSync('releases/v2', join(root, 'current.tmp'));
    renameSync(join(root, 'current.tmp'), join(root, 'current'));

    // Before: the watch stayed on releases/v1, which never changed: "hyp server one" forever.
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new release certificate',
      15_000,
    );
    expect(served.logs.some((l) => l.msg === 'TLS certificate reloaded')).toBe(true);
  });
});
