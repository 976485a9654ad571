/**
 * Reports of different workers cross: the files rotate twice in a short
 * time (pair one → two → three), worker A reads pair two, worker B pair
 * three, and A's report arrives last. The supervisor's last good pair is
 * the one read last (each report says when, on the host's monotonic
 * clock), not the one reported last. Before, it kept pair two, and a
 * replacement worker served it beside workers serving three.
 */
import { X509Certificate } from 'node:crypto';
import { copyFileSync, writeFileSync } from 'node:fs';
import { beforeAll, describe, expect, it } from 'vitest';
import type { Config } from '../../supervisor/config/schema.js';
import { type LastGoodTls, type TlsFiles, tlsReadClock } from '../../supervisor/tlscheck.js';
import { issueServerPair, makePki, type TestPki } from '../apps/server/tls/certs.js';
import { holdingPairOne } from './tls-helpers.js';

let pki: TestPki;
let three: { cert: string; key: string };
beforeAll(() => {
  pki = makePki();
  three = issueServerPair(pki, 'server3', 'ec');
});

const pairOf = (p: { cert: string; key: string }): TlsFiles => ({
  cert: pki.read(p.cert),
  key: pki.read(p.key),
});
const one = () => pairOf({ cert: pki.serverCert, key: pki.serverKey });
const two = () => pairOf({ cert: pki.server2Cert, key: pki.server2Key });

const brokenCert = '-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n';

/**
 * The certificate a new worker gets for server.tls once the files are
 * broken (a fresh config object: the supervisor tries them again, fails,
 * and hands out the pair it holds).
 */
function handedOut(good: LastGoodTls, config: Config, pair: { cert: string }): string {
  writeFileSync(pair.cert, brokenCert);
  return new X509Certificate(Buffer.from(good.refresh({ ...config })['server.tls']!.cert)).subject;
}
const cn = (file: string) => new X509Certificate(pki.read(file)).subject;

describe('LastGoodTls: reports of several workers, in any order', () => {
  it('A read pair two, B then read pair three, A reports last: pair three is held, and a new worker gets it', () => {
    const { config, good, pair } = holdingPairOne(pki);
    const readByA = tlsReadClock();
    const readByB = tlsReadClock();
    expect(
      good.reloaded(config, 'server.tls', { files: pairOf(three), config, worker: 2, readAt: readByB }),
    ).toMatchObject({ from: 'report', leaf: { subject: cn(three.cert) } });
    const late = good.reloaded(config, 'server.tls', { files: two(), config, worker: 1, readAt: readByA });
    expect(late).toMatchObject({ from: 'report', older: { behindMs: readByB - readByA } });
    expect(handedOut(good, config, pair)).toBe(cn(three.cert));
  });

  it("a report read before the supervisor's own read of the files (starting a worker) is ignored", () => {
    const { config, good, pair } = holdingPairOne(pki);
    const readByA = tlsReadClock();
    copyFileSync(three.cert, pair.cert);
    copyFileSync(three.key, pair.key);
    good.refresh({ ...config });
    expect(
      good.reloaded(config, 'server.tls', { files: two(), config, worker: 1, readAt: readByA }),
    ).toHaveProperty('older');
    expect(handedOut(good, config, pair)).toBe(cn(three.cert));
  });

  it('a rollback to pair one, on purpose, after pair three: the workers read it later, so it wins', () => {
    const { config, good, pair } = holdingPairOne(pki);
    const straggler = tlsReadClock(); // a worker that read pair three before the rollback, reporting late
    good.reloaded(config, 'server.tls', { files: pairOf(three), config, worker: 1, readAt: tlsReadClock() });
    // The operator restores the old files (`cp -p` of a backup: older mtime, older notBefore).
    const rolledBack = good.reloaded(config, 'server.tls', {
      files: one(),
      config,
      worker: 2,
      readAt: tlsReadClock(),
    });
    expect(rolledBack).toMatchObject({ from: 'report', leaf: { subject: cn(pki.serverCert) } });
    expect(
      good.reloaded(config, 'server.tls', { files: pairOf(three), config, worker: 3, readAt: straggler }),
    ).toHaveProperty('older');
    expect(handedOut(good, config, pair)).toBe(cn(pki.serverCert));
  });

  it('two reports read at the same time: the one that arrives last wins, as before', () => {
    const { config, good, pair } = holdingPairOne(pki);
    const readAt = tlsReadClock();
    good.reloaded(config, 'server.tls', { files: pairOf(three), config, worker: 1, readAt });
    expect(good.reloaded(config, 'server.tls', { files: two(), config, worker: 2, readAt })).toHaveProperty(
      'leaf',
    );
    expect(handedOut(good, config, pair)).toBe(cn(pki.server2Cert));
  });

  it('a report without readAt (a worker of the version before, during a roll): taken, as before', () => {
    const { config, good, pair } = holdingPairOne(pki);
    good.reloaded(config, 'server.tls', { files: pairOf(three), config, worker: 1, readAt: tlsReadClock() });
    expect(good.reloaded(config, 'server.tls', { files: two(), config, worker: 2 })).toMatchObject({
      from: 'report',
      leaf: { subject: cn(pki.server2Cert) },
    });
    expect(handedOut(good, config, pair)).toBe(cn(pki.server2Cert));
  });

  it.each([
    ['text', 'soon', 'readAt is not a time in milliseconds (string)'],
    ['NaN', Number.NaN, 'readAt is not a time in milliseconds (NaN)'],
    ['negative', -1, 'readAt is not a time in milliseconds (-1)'],
  ])('a report whose readAt is %s: refused (HYP_E_IPC_MESSAGE), the pair held kept', (_, readAt, detail) => {
    const { config, good, pair } = holdingPairOne(pki);
    const got = good.reloaded(config, 'server.tls', { files: two(), config, worker: 4, readAt });
    expect(got).toMatchObject({ from: 'report', error: { code: 'HYP_E_IPC_MESSAGE' } });
    expect(String((got as { error: Error }).error.message)).toContain(detail);
    expect(handedOut(good, config, pair)).toBe(cn(pki.serverCert));
  });
});
