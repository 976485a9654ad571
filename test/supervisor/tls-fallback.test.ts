/**
 * A worker started while the TLS files on disk are broken (a restart after
 * a crash, in the middle of a bad rotation) serves the last good pair the
 * supervisor holds, instead of failing to start again and again; the
 * supervisor's pair follows the rotations the workers pick up.
 */
import { copyFileSync, writeFileSync } from 'node:fs';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { copyServerPair, makePki, servedCns, type TestPki, tlsSets } from '../apps/server/tls/certs.js';
import { fixtureApp, type Running, startSupervisor, until } from '../helpers/supervisor.js';

let pki: TestPki;
let sup: Running | undefined;
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await sup?.stop();
  sup = undefined;
});

describe('TLS files broken on disk when a worker starts', () => {
  it('a worker restarted after a crash serves the last good pair (the rotated one), and picks up fixed files', async () => {
    const pair = copyServerPair(pki);
    // Debug: a report read before the one already held is ignored, and says so only at debug.
    sup = await startSupervisor({
      app: fixtureApp('basic'),
      workers: 2,
      sets: [...tlsSets(pair), 'log.level=debug'],
    });
    const port = sup.httpPort;
    expect(await servedCns(pki, port, 4)).toEqual(new Set(['hyp server one']));

    // A good rotation: every worker reloads, and the supervisor's last good pair follows.
    copyFileSync(pki.server2Cert, pair.cert);
    copyFileSync(pki.server2Key, pair.key);
    await until(
      () => sup!.logs.filter((l) => l.msg === 'TLS certificate reloaded').length >= 2 || undefined,
      'both workers reloaded',
    );
    // The supervisor handled both reports (before, the spec broke the files as soon as
    // the workers logged, and could beat the supervisor's read): the first updated its
    // pair; the second too, or was ignored as read before the one held (reports are
    // ordered by when their files were read, not by arrival).
    const handled = await until(() => {
      const lines = sup!.logs.filter(
        (l) =>
          l.msg === 'last good TLS files of server.tls updated' ||
          l.msg === 'last good TLS files of server.tls kept: an older pair than the one held',
      );
      return lines.length >= 2 ? lines : undefined;
    }, 'the supervisor holding the rotated pair');
    expect(handled.every((l) => l.role === 'supervisor' && l.at === 'server.tls')).toBe(true);
    const updated = handled.filter((l) => l.msg === 'last good TLS files of server.tls updated');
    expect(updated.length).toBeGreaterThanOrEqual(1);
    expect(new Set(updated.map((l) => l.fingerprint)).size).toBe(1);

    // Then a broken one: the running workers keep serving the second pair.
    writeFileSync(pair.cert, '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n');
    await sup.waitLog((l) => l.code === 'HYP_E_TLS_RELOAD', 'the broken file refused');
    const before = await sup.status();
    const victim = before.workers[0]!;
    process.kill(victim.pid, 'SIGKILL');

    // Its replacement starts on the supervisor's pair instead of failing on the files.
    const after = await sup.waitFor(
      (s) => s.workers.length === 2 && s.workers.every((w) => w.state === 'ready' && w.pid !== victim.pid),
      'a replacement worker ready',
    );
    expect(after.workers.map((w) => w.pid)).not.toContain(victim.pid);
    const fellBack = await sup.waitLog((l) => l.code === 'HYP_E_TLS_FALLBACK', 'the fallback logged');
    expect(String(fellBack.msg)).toContain('server.tls');
    expect(sup.logs.filter((l) => l.code === 'HYP_E_APP_START')).toEqual([]);
    expect(await servedCns(pki, port, 8)).toEqual(new Set(['hyp server two']));

    // Fixed files: every worker, the replacement too, serves them.
    copyFileSync(pki.serverCert, pair.cert);
    copyFileSync(pki.serverKey, pair.key);
    const cns = await until(async () => {
      const seen = await servedCns(pki, port, 8);
      return seen.size === 1 && seen.has('hyp server one') ? seen : undefined;
    }, 'every worker serving the fixed files');
    expect(cns).toEqual(new Set(['hyp server one']));
  });
});
