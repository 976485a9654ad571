/**
 * A certificate and its key replaced as two separate writes (or a file
 * removed, then written again), further apart
 * than the watch's debounce: `cp new.crt tls.crt; cp new.key tls.key` on a
 * slow disk, two Ansible `copy` tasks, an `scp` of each file. The reload in
 * between sees the new certificate with the old key. That half-updated pair
 * is a normal step of a rotation, not a broken replacement: hyp keeps the old
 * pair serving and waits (a few seconds) for the other file before it calls
 * it a failure. Before, it logged HYP_E_TLS_RELOAD and counted
 * hyp_tls_reload_failures_total on every such rotation, so an alert on the
 * counter fired for rotations that went fine.
 */
import { renameSync, rmSync, writeFileSync } from 'node:fs';
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

function atomicWrite(file: string, content: Buffer): void {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

async function serveCopies(): Promise<{ cert: string; key: string }> {
  const { cert, key } = copyServerPair(pki);
  served = await serve([
    'server.tls.enabled=true',
    `server.tls.cert_file=${cert}`,
    `server.tls.key_file=${key}`,
  ]);
  return { cert, key };
}

/** The reload between the two writes has looked at the half-updated pair (and waits, or, before, refused it). */
const sawHalfPair = (s: Served) =>
  s.logs.some((l) => l.msg?.startsWith('TLS files caught mid-rotation') || l.code === 'HYP_E_TLS_RELOAD');

describe('certificate and key replaced in two steps', () => {
  it('the key written after a reload saw the new certificate: no failure logged or counted, the new pair served', async () => {
    const { cert, key } = await serveCopies();
    atomicWrite(cert, pki.read(pki.server2Cert));
    await until(() => sawHalfPair(served!) || undefined, 'the reload of the half-updated pair');
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');

    atomicWrite(key, pki.read(pki.server2Key));
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new pair',
    );
    expect(served!.logs.filter((l) => l.code === 'HYP_E_TLS_RELOAD')).toEqual([]);
    expect(await reloadFailures(served!.registry)).toBe(0);
  });

  it('a file removed, then written again after a reload saw it missing: no failure logged or counted', async () => {
    const { cert, key } = await serveCopies();
    rmSync(cert);
    await until(() => sawHalfPair(served!) || undefined, 'the reload of the missing file');
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');

    atomicWrite(key, pki.read(pki.server2Key));
    atomicWrite(cert, pki.read(pki.server2Cert));
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new pair',
    );
    expect(served!.logs.filter((l) => l.code === 'HYP_E_TLS_RELOAD')).toEqual([]);
    expect(await reloadFailures(served!.registry)).toBe(0);
  });

  it('a pair that stays mismatched is refused once the wait is over: logged and counted once, the old pair kept', async () => {
    const { key } = await serveCopies();
    atomicWrite(key, pki.read(pki.strayKey));
    const refused = await until(
      () => served!.logs.find((l) => l.code === 'HYP_E_TLS_RELOAD'),
      'the refused pair',
      20_000,
    );
    expect(refused.msg).toContain(key);
    expect(await reloadFailures(served!.registry)).toBe(1);
    expect(await servedCn(pki, served!.port)).toBe('hyp server one');
  });
});
