/**
 * Every certificate in a CA bundle or a certificate chain is checked, not
 * only the first. OpenSSL stops reading a CA bundle at the first block it
 * cannot decode and says nothing, so a bundle whose new CA was appended
 * damaged (a broken copy, a truncated write) silently dropped that CA and
 * every one after it: clients with certificates from them were refused, with
 * no error anywhere. Now such a file is refused at start (exit 2 in `hyp
 * run`) and by a reload (the old bundle keeps serving), naming the file, the
 * block and its byte offset.
 */
import { copyFileSync, mkdtempSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { isHypError } from '../../../../supervisor/errors.js';
import { readTlsMaterial } from '../../../../supervisor/tlscheck.js';
import { until } from '../../../helpers/supervisor.js';
import { configWith, type Served, serve } from '../http/harness.js';
import { makePki, type TestPki } from './certs.js';

let pki: TestPki;
let dir = '';
let served: Served | undefined;
beforeAll(() => {
  pki = makePki();
  dir = mkdtempSync(join(tmpdir(), 'hyp-bundles-'));
});
afterEach(async () => {
  await served?.close();
  served = undefined;
});

/** `pem` with one base64 character of its first certificate's body changed to '!'. */
function damaged(pem: Buffer): string {
  const lines = pem.toString('latin1').split('\n');
  const line = lines[2] ?? '';
  lines[2] = `${line.slice(0, 10)}!${line.slice(11)}`;
  return lines.join('\n');
}

function write(name: string, content: string | Buffer): string {
  const file = join(dir, name);
  writeFileSync(file, content);
  return file;
}

function mtlsConfig(caFile: string) {
  return configWith([...pki.tlsSets(), `server.tls.ca_file=${caFile}`, 'server.tls.client_auth=require'])
    .server.tls;
}

describe('PEM bundles are checked block by block', () => {
  it('a CA bundle whose second certificate is damaged: HYP_E_TLS_FILE naming the file, block 2 and its byte offset', () => {
    const first = pki.read(pki.caCert).toString('latin1');
    const bundle = write('damaged-ca.pem', first + damaged(pki.read(pki.selfSignedCert)));
    let thrown: unknown;
    try {
      readTlsMaterial(mtlsConfig(bundle), 'server.tls');
    } catch (err) {
      thrown = err;
    }
    // Before: accepted; OpenSSL loaded the first CA only.
    expect(isHypError(thrown, 'HYP_E_TLS_FILE')).toBe(true);
    const message = (thrown as Error).message;
    expect(message).toContain(bundle);
    expect(message).toContain('server.tls.ca_file');
    expect(message).toContain('certificate 2');
    expect(message).toContain(`byte ${Buffer.byteLength(first)}`);
  });

  it('a CA bundle cut in the middle of a certificate (no END line): refused, naming the block', () => {
    const first = pki.read(pki.caCert).toString('latin1');
    const second = pki.read(pki.selfSignedCert).toString('latin1');
    const bundle = write('truncated-ca.pem', first + second.slice(0, 200));
    expect(() => readTlsMaterial(mtlsConfig(bundle), 'server.tls')).toThrow(/certificate 2 .*no END line/);
  });

  it('a bundle with comments and several good certificates passes', () => {
    const bundle = write(
      'good-ca.pem',
      `# hyp test CA\n${pki.read(pki.caCert).toString('latin1')}\n# impostor\n${pki.read(pki.selfSignedCert).toString('latin1')}`,
    );
    expect(readTlsMaterial(mtlsConfig(bundle), 'server.tls').ca?.length).toBeGreaterThan(0);
  });

  it('a reload to a damaged CA bundle keeps the old one serving, HYP_E_TLS_RELOAD names the CA file', async () => {
    const certs = mkdtempSync(join(tmpdir(), 'hyp-certs-'));
    const ca = join(certs, 'ca.crt');
    copyFileSync(pki.caCert, ca);
    served = await serve([...pki.tlsSets(), `server.tls.ca_file=${ca}`, 'server.tls.client_auth=require']);

    // The new CA appended, damaged on the way.
    writeFileSync(`${ca}.tmp`, readFileSync(pki.caCert, 'latin1') + damaged(pki.read(pki.selfSignedCert)));
    renameSync(`${ca}.tmp`, ca);
    const refused = await until(
      () => served!.logs.find((l) => l.code === 'HYP_E_TLS_RELOAD'),
      'the refused reload',
      10_000,
    );
    expect(refused.msg).toContain(ca);
    expect(refused.msg).toContain('certificate 2');
    expect(served.logs.some((l) => l.msg === 'TLS certificate reloaded')).toBe(false);
  });
});
