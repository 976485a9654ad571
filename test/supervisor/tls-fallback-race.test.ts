/**
 * A rotation followed at once by a broken write: the supervisor's last good
 * pair is the one the workers reloaded (the bytes their `tls-reloaded`
 * report carries), not whatever the files hold by the time it reads the
 * report. Before, it re-read the files, found them broken, kept the pair
 * from before the rotation, and a replacement worker served that old
 * certificate beside workers serving the new one.
 */
import { X509Certificate } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../supervisor/config/schema.js';
import type { LastGoodTls, TlsFiles } from '../../supervisor/tlscheck.js';
import { configWith } from '../apps/server/http/harness.js';
import { copyServerPair, makePki, servedCns, type TestPki, tlsSets } from '../apps/server/tls/certs.js';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';
import { holdingPairOne } from './tls-helpers.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});

const brokenCert = '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n';

/** The files rotated to pair two, then overwritten with a broken certificate. */
function rotateThenBreak(pair: { cert: string; key: string }): void {
  copyFileSync(pki.server2Cert, pair.cert);
  copyFileSync(pki.server2Key, pair.key);
  writeFileSync(pair.cert, brokenCert);
}

const fingerprint = (file: string) => new X509Certificate(pki.read(file)).fingerprint256;
const pairTwo = (): TlsFiles => ({ cert: pki.read(pki.server2Cert), key: pki.read(pki.server2Key) });
/** What a new worker gets for server.tls (a fresh config object: the files are read again). */
const handedOut = (good: LastGoodTls, config: Config) =>
  Buffer.from(good.refresh({ ...config })['server.tls']!.cert).toString();

describe('LastGoodTls: a worker reports the pair it reloaded', () => {
  it('files broken again before the report is read: the reported pair is held, and a new worker gets it', () => {
    const { config, good, pair } = holdingPairOne(pki);
    rotateThenBreak(pair);
    const got = good.reloaded(config, 'server.tls', { files: pairTwo(), config, worker: 1 });
    expect(got).toMatchObject({ from: 'report' });
    expect('leaf' in got && got.leaf.fingerprint256).toBe(fingerprint(pki.server2Cert));
    expect(handedOut(good, config)).toBe(pki.read(pki.server2Cert).toString());
  });

  const big = () => new Uint8Array(16 * 1024 * 1024 + 1);
  it.each([
    ['no object', () => 'cert', 'HYP_E_IPC_MESSAGE', 'files is not an object'],
    [
      'a certificate that is text',
      () => ({ ...pairTwo(), cert: 'pem' }),
      'HYP_E_IPC_MESSAGE',
      'files.cert is not bytes',
    ],
    ['no key', () => ({ cert: pairTwo().cert }), 'HYP_E_IPC_MESSAGE', 'files.key is not bytes'],
    [
      'a CA the config does not name',
      () => ({ ...pairTwo(), ca: pki.read(pki.caCert) }),
      'HYP_E_IPC_MESSAGE',
      'files.ca is present',
    ],
    ['a key past 16 MiB', () => ({ ...pairTwo(), key: big() }), 'HYP_E_IPC_MESSAGE', '16777217 bytes'],
    [
      'a key of another certificate',
      () => ({ ...pairTwo(), key: pki.read(pki.serverKey) }),
      'HYP_E_TLS_MISMATCH',
      'does not match',
    ],
    [
      'a certificate that does not parse',
      () => ({ ...pairTwo(), cert: Buffer.from(brokenCert) }),
      'HYP_E_TLS_FILE',
      'not a PEM certificate',
    ],
  ])('a report with %s: refused, the previous pair kept', (_, files, code, detail) => {
    const { config, good, pair } = holdingPairOne(pki);
    rotateThenBreak(pair);
    const got = good.reloaded(config, 'server.tls', { files: files(), config, worker: 3 });
    expect(got).toMatchObject({ from: 'report', error: { code } });
    expect(String((got as { error: Error }).error.message)).toContain(detail);
    expect(handedOut(good, config)).toBe(pki.read(pki.serverCert).toString());
  });

  it('a report without bytes (a worker of the version before): the files are read, as before', () => {
    const { config, good, pair } = holdingPairOne(pki);
    copyFileSync(pki.server2Cert, pair.cert);
    copyFileSync(pki.server2Key, pair.key);
    const got = good.reloaded(config, 'server.tls');
    expect('leaf' in got && got.leaf.fingerprint256).toBe(fingerprint(pki.server2Cert));
    expect(got.from).toBe('disk');

    writeFileSync(pair.cert, brokenCert);
    expect(good.reloaded(config, 'server.tls')).toMatchObject({
      from: 'disk',
      error: { code: 'HYP_E_TLS_FILE' },
    });
    expect(handedOut(good, config)).toBe(pki.read(pki.server2Cert).toString());
  });

  it('a worker whose config names other files (a SIGHUP changed them): its bytes are not taken for the new files', () => {
    const { config, good } = holdingPairOne(pki);
    const older = configWith([
      'server.tls.enabled=true',
      `server.tls.cert_file=${pki.server2Cert}`,
      `server.tls.key_file=${pki.server2Key}`,
    ]);
    const got = good.reloaded(config, 'server.tls', { files: pairTwo(), config: older, worker: 2 });
    expect(got.from).toBe('disk');
    expect('leaf' in got && got.leaf.fingerprint256).toBe(fingerprint(pki.serverCert));
    expect(handedOut(good, config)).toBe(pki.read(pki.serverCert).toString());
  });
});

let sup: Running | undefined;
afterEach(async () => {
  if (sup !== undefined && sup.proc.exitCode === null) sup.proc.kill('SIGCONT');
  await sup?.stop();
  sup = undefined;
});

describe('a real supervisor: files rotated, then broken before it reads the reload reports', () => {
  // The race is held open, not timed: the supervisor is stopped (SIGSTOP) while the
  // workers reload and report, the files are broken, and only then does it read the reports.
  it('it holds the rotated pair the workers reported, and a replacement worker serves it', async () => {
    const pair = copyServerPair(pki);
    // debug: a report read before the other worker's, arriving after it, is logged (kept) at debug
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      sets: [...tlsSets(pair), 'log.level=debug'],
    });
    const running = sup;
    const port = running.httpPort;
    expect(await servedCns(pki, port, 4)).toEqual(new Set(['hyp server one']));

    // The workers log straight to the shared stdout: they reload and report while the supervisor sleeps.
    running.proc.kill('SIGSTOP');
    try {
      copyFileSync(pki.server2Cert, pair.cert);
      copyFileSync(pki.server2Key, pair.key);
      await until(
        () => running.logs.filter((l) => l.msg === 'TLS certificate reloaded').length >= 2 || undefined,
        'both workers reloaded the second pair',
      );
      writeFileSync(pair.cert, brokenCert);
      await until(
        () => running.logs.filter((l) => l.code === 'HYP_E_TLS_RELOAD').length >= 2 || undefined,
        'both workers refused the broken file',
      );
    } finally {
      running.proc.kill('SIGCONT');
    }

    // Now the supervisor reads the two reports, with the files on disk broken.
    const handled = await until(() => {
      const lines = running.logs.filter((l) => String(l.msg).startsWith('last good TLS files of server.tls'));
      return lines.length >= 2 ? lines : undefined;
    }, 'the supervisor handling both reports');
    expect(await servedCns(pki, port, 8)).toEqual(new Set(['hyp server two']));

    // A worker killed now: its replacement starts on the supervisor's pair, the second one.
    const victim = (await running.status()).workers[0]!;
    process.kill(victim.pid, 'SIGKILL');
    await running.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.state === 'ready' && w.pid !== victim.pid),
      'a replacement worker ready',
    );
    await running.waitLog((l) => l.code === 'HYP_E_TLS_FALLBACK', 'the replacement falling back');
    expect(await servedCns(pki, port, 8)).toEqual(new Set(['hyp server two']));

    // The first report read updated the pair from its bytes; the second did too, or, when it was
    // read by its worker before the first one's (tls-fallback-order), was ignored. None kept the first pair.
    const updated = ['info', 'last good TLS files of server.tls updated', 'report'];
    const older = [
      'debug',
      'last good TLS files of server.tls kept: an older pair than the one held',
      undefined,
    ];
    const outcomes = handled.map((l) => [l.level, l.msg, l.from]);
    expect(outcomes[0]).toEqual(updated);
    expect([updated, older]).toContainEqual(outcomes[1]);
    const fingerprints = handled.filter((l) => l.level === 'info').map((l) => l.fingerprint);
    expect(new Set(fingerprints)).toEqual(new Set([fingerprint(pki.server2Cert)]));
  });
});
