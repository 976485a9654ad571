/**
 * Files that parse but that OpenSSL refuses to serve (an RSA key below the
 * security level, a DSA key no hyp cipher suite can use, a passphrase-protected
 * key), and paths that are not regular files (a named pipe), stop `hyp run`
 * before any worker starts: exit 2, the file and its config key named. Before, the supervisor's check passed them and every
 * worker failed to start ("app failed to start: ee key too small"), restarted
 * in a loop, naming no file.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { cli, fixtureApp } from '../helpers/supervisor.js';

let dir = '';
const file = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync('openssl', args, { cwd: dir, stdio: 'pipe' });
}

beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hyp-tls-refused-'));
  // RSA 512: parses, matches, but "ee key too small" at every OpenSSL security level.
  openssl(
    'req',
    '-x509',
    '-newkey',
    'rsa:512',
    '-nodes',
    '-keyout',
    'rsa512.key',
    '-out',
    'rsa512.crt',
    '-days',
    '2',
    '-subj',
    '/CN=weak',
  );
  // DSA: OpenSSL loads it, but no TLS 1.3 or ECDHE suite signs with DSA: every handshake would fail.
  openssl('dsaparam', '-out', 'dsa.params', '2048');
  openssl('gendsa', '-out', 'dsa.key', 'dsa.params');
  openssl('req', '-x509', '-new', '-key', 'dsa.key', '-out', 'dsa.crt', '-days', '2', '-subj', '/CN=dsa');
  // A passphrase-protected EC key and its certificate.
  openssl('ecparam', '-name', 'prime256v1', '-genkey', '-noout', '-out', 'ec.key');
  openssl('req', '-x509', '-new', '-key', 'ec.key', '-out', 'ec.crt', '-days', '2', '-subj', '/CN=ec');
  openssl('pkcs8', '-topk8', '-in', 'ec.key', '-passout', 'pass:secret', '-out', 'ec.enc.key');
}, 60_000);

function run(cert: string, key: string) {
  const cwd = mkdtempSync(join(tmpdir(), 'hyp-tlscheck-'));
  const sets = [
    'server.addr=127.0.0.1:0',
    'admin.addr=127.0.0.1:0',
    `supervisor.pid_file=${join(cwd, 'hyp.pid')}`,
    'server.tls.enabled=true',
    `server.tls.cert_file=${cert}`,
    `server.tls.key_file=${key}`,
  ];
  return spawnSync(
    process.execPath,
    [cli, 'run', fixtureApp('basic'), ...sets.flatMap((s) => ['--set', s])],
    {
      cwd,
      encoding: 'utf8',
      timeout: 15_000,
      // A supervisor blocked in a synchronous read cannot run its SIGTERM handler.
      killSignal: 'SIGKILL',
    },
  );
}

describe('hyp run: TLS files OpenSSL would refuse are refused before any worker starts', () => {
  it('an RSA key too small to serve: exit 2, HYP_E_TLS_FILE naming the certificate and OpenSSL reason', () => {
    const r = run(file('rsa512.crt'), file('rsa512.key'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HYP_E_TLS_FILE');
    expect(r.stderr).toContain(file('rsa512.crt'));
    expect(r.stderr).toContain('server.tls.cert_file');
    expect(r.stderr).toContain('key too small');
    expect(r.stdout).not.toContain('worker spawned');
  });

  it('a DSA key: exit 2, HYP_E_TLS_FILE naming the key file and the key types hyp can serve', () => {
    const r = run(file('dsa.crt'), file('dsa.key'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HYP_E_TLS_FILE');
    expect(r.stderr).toContain(file('dsa.key'));
    expect(r.stderr).toContain('server.tls.key_file');
    expect(r.stderr).toMatch(/dsa/i);
    expect(r.stdout).not.toContain('worker spawned');
  });

  it('a named pipe as the certificate (never read: it would block, or be read once): exit 2, naming it', () => {
    const fifo = file('cert.fifo');
    execFileSync('mkfifo', [fifo]);
    const r = run(fifo, file('ec.key'));
    // Before: the supervisor blocked reading the FIFO, silent, until killed.
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HYP_E_TLS_FILE');
    expect(r.stderr).toContain(fifo);
    expect(r.stderr).toContain('not a regular file');
  });

  it('a passphrase-protected key: exit 2, the message says so', () => {
    const r = run(file('ec.crt'), file('ec.enc.key'));
    expect(r.status).toBe(2);
    expect(r.stderr).toContain('HYP_E_TLS_FILE');
    expect(r.stderr).toContain(file('ec.enc.key'));
    expect(r.stderr).toContain('passphrase-protected');
  });
});
