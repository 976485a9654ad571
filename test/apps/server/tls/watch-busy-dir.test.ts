/**
 * The certificate directory also holds a file that changes all the time (a
 * log, a pid or status file written every 50 ms). Every event in a watched
 * directory restarts the 200 ms reload debounce; with no bound on that
 * wait, a certificate replaced in such a directory was never reloaded: the
 * quiet moment never came (docs/tls.md "Certificate checks and hot reload").
 */
import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { until } from '../../../helpers/supervisor.js';
import { type Served, serve } from '../http/harness.js';
import { copyServerPair, makePki, servedCn, type TestPki } from './certs.js';

let pki: TestPki;
let served: Served | undefined;
let noise: NodeJS.Timeout | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  clearInterval(noise);
  await served?.close();
  served = undefined;
});

function atomicWrite(file: string, content: Buffer): void {
  writeFileSync(`${file}.tmp`, content);
  renameSync(`${file}.tmp`, file);
}

describe('hot reload in a busy directory', () => {
  it('a pair replaced while another file of its directory changes every 50 ms: new connections get the new certificate', async () => {
    const { dir, cert, key } = copyServerPair(pki);
    let n = 0;
    noise = setInterval(() => writeFileSync(join(dir, 'app.log'), `line ${n++}\n`, { flag: 'a' }), 50);
    served = await serve([
      'server.tls.enabled=true',
      `server.tls.cert_file=${cert}`,
      `server.tls.key_file=${key}`,
    ]);
    expect(await servedCn(pki, served.port)).toBe('hyp server one');

    atomicWrite(key, pki.read(pki.server2Key));
    atomicWrite(cert, pki.read(pki.server2Cert));
    // The noise goes on all along: the reload must not wait for a quiet moment.
    await until(
      async () => (await servedCn(pki, served!.port)) === 'hyp server two' || undefined,
      'the new certificate while the directory stays busy',
      10_000,
    );
    expect(served.logs.some((l) => l.msg === 'TLS certificate reloaded')).toBe(true);
  });
});
