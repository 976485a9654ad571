/**
 * HYP_E_TLS_MISMATCH names the config key of the key file, as HYP_E_TLS_FILE
 * names its file's: `server.tls.key_file`, or `tcp.<name>.tls.key_file` for a
 * TCP service (docs/tls.md "Certificate checks and hot reload"). Its message
 * keeps its start ("TLS key … does not match certificate …"); the key paths
 * follow in parentheses.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { type HypError, isHypError } from '../../supervisor/errors.js';
import { checkTlsFiles } from '../../supervisor/tlscheck.js';
import { configWith } from '../apps/server/http/harness.js';
import { makePki, type TestPki } from '../apps/server/tls/certs.js';
import { cli, fixtureApp } from '../helpers/supervisor.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

function mismatchOf(sets: string[]): HypError {
  try {
    checkTlsFiles(configWith(sets));
  } catch (err) {
    if (isHypError(err, 'HYP_E_TLS_MISMATCH')) return err as HypError;
    throw err;
  }
  throw new Error('no HYP_E_TLS_MISMATCH');
}

describe('HYP_E_TLS_MISMATCH names the config key', () => {
  it('server.tls: params and message name server.tls.key_file (and server.tls.cert_file)', () => {
    const err = mismatchOf([
      'server.tls.enabled=true',
      `server.tls.cert_file=${pki.serverCert}`,
      `server.tls.key_file=${pki.strayKey}`,
    ]);
    expect(err.params).toMatchObject({
      key_file: pki.strayKey,
      cert_file: pki.serverCert,
      key: 'server.tls.key_file',
      cert_key: 'server.tls.cert_file',
    });
    expect(err.message).toBe(
      `TLS key ${pki.strayKey} does not match certificate ${pki.serverCert} (server.tls.key_file, server.tls.cert_file)`,
    );
  });

  it('a TCP service: tcp.<name>.tls.key_file', () => {
    const err = mismatchOf([
      'tcp.echo.addr=127.0.0.1:0',
      'tcp.echo.tls.enabled=true',
      `tcp.echo.tls.cert_file=${pki.serverCert}`,
      `tcp.echo.tls.key_file=${pki.strayKey}`,
    ]);
    expect(err.params).toMatchObject({ key: 'tcp.echo.tls.key_file', cert_key: 'tcp.echo.tls.cert_file' });
    expect(err.message).toMatch(
      /^TLS key .* does not match certificate .* \(tcp\.echo\.tls\.key_file, tcp\.echo\.tls\.cert_file\)$/,
    );
  });

  it('hyp run: exit 2, stderr names the key path', () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-tlsmismatch-'));
    const sets = [
      'server.addr=127.0.0.1:0',
      'admin.addr=127.0.0.1:0',
      `supervisor.pid_file=${join(dir, 'hyp.pid')}`,
      'server.tls.enabled=true',
      `server.tls.cert_file=${pki.serverCert}`,
      `server.tls.key_file=${pki.strayKey}`,
    ];
    const r = spawnSync(
      process.execPath,
      [cli, 'run', fixtureApp('basic'), ...sets.flatMap((s) => ['--set', s])],
      {
        cwd: dir,
        encoding: 'utf8',
        timeout: 20_000,
      },
    );
    expect(r.status).toBe(2);
    expect(r.stderr).toContain(
      `HYP_E_TLS_MISMATCH: TLS key ${pki.strayKey} does not match certificate ${pki.serverCert} (server.tls.key_file, server.tls.cert_file)`,
    );
  });
});
