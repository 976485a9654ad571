/**
 * `hyp run` checks certificate and key files before binding anything or
 * starting a worker: an unusable file stops it with exit 2, naming the file.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { checkTlsFiles } from '../../supervisor/tlscheck.js';
import { configWith } from '../apps/server/http/harness.js';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { cli, fixtureApp } from '../helpers/supervisor.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

function run(sets: string[]) {
  const dir = mkdtempSync(join(tmpdir(), 'hyp-tlscheck-'));
  const args = [
    cli,
    'run',
    fixtureApp('basic'),
    ...[
      'server.addr=127.0.0.1:0',
      'admin.addr=127.0.0.1:0',
      `supervisor.pid_file=${join(dir, 'hyp.pid')}`,
      'server.tls.enabled=true',
      ...sets,
    ].flatMap((s) => ['--set', s]),
  ];
  return spawnSync(process.execPath, args, { cwd: dir, encoding: 'utf8', timeout: 20_000 });
}

describe('hyp run: TLS files checked before any worker starts', () => {
  it('a missing certificate file: exit 2, HYP_E_TLS_FILE naming the file and its key', () => {
    const missing = join(pki.dir, 'nope.crt');
    const r = run([`server.tls.cert_file=${missing}`, `server.tls.key_file=${pki.serverKey}`]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HYP_E_TLS_FILE');
    expect(r.stderr).toContain(missing);
    expect(r.stderr).toContain('server.tls.cert_file');
    expect(r.stdout).not.toContain('worker spawned');
  });

  it('a key that does not match the certificate: exit 2, HYP_E_TLS_MISMATCH naming both files', () => {
    const r = run([`server.tls.cert_file=${pki.serverCert}`, `server.tls.key_file=${pki.strayKey}`]);
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HYP_E_TLS_MISMATCH');
    expect(r.stderr).toContain(pki.strayKey);
    expect(r.stderr).toContain(pki.serverCert);
  });

  it('an unreadable or unparsable key: exit 2, HYP_E_TLS_FILE naming the key file', () => {
    const garbage = join(pki.dir, 'garbage.key');
    writeFileSync(garbage, 'not a key\n');
    const r = run([`server.tls.cert_file=${pki.serverCert}`, `server.tls.key_file=${garbage}`]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/HYP_E_TLS_FILE: TLS file .*garbage\.key \(server\.tls\.key_file\)/);
  });

  it('checkTlsFiles: mTLS without a CA file is refused; a good pair passes; disabled TLS is not checked', () => {
    const good = [`server.tls.cert_file=${pki.serverCert}`, `server.tls.key_file=${pki.serverKey}`];
    expect(() => checkTlsFiles(configWith(['server.tls.enabled=true', ...good]))).not.toThrow();
    expect(() =>
      checkTlsFiles(configWith(['server.tls.enabled=true', ...good, 'server.tls.client_auth=require'])),
    ).toThrow(/server\.tls\.ca_file/);
    expect(() => checkTlsFiles(configWith(['server.tls.cert_file=/nope']))).not.toThrow();
  });
});
