/**
 * The TLS 1.2 session-id cache: bounded, expiring, LRU, single-use.
 */
import { constants } from 'node:crypto';
import type { AddressInfo } from 'node:net';
import { createServer, type Server as TlsServer } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TlsSessionCache } from '../../../../apps/server/tls/sessioncache.js';
import { tlsVisit } from '../../../helpers/tls-visit.js';
import { type Served, serve } from '../http/harness.js';
import { makePki, type TestPki } from './certs.js';

const id = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const data = (n: number) => Buffer.from(`session ${n}`);
const noTickets = { maxVersion: 'TLSv1.2', secureOptions: constants.SSL_OP_NO_TICKET } as const;

describe('TlsSessionCache', () => {
  it('defaults to 10,000 entries and a 24 h TTL', () => {
    const cache = new TlsSessionCache();
    expect(cache.maxEntries).toBe(10_000);
    expect(cache.ttlMs).toBe(24 * 60 * 60 * 1000);
  });

  it('is single-use: a session is handed out once, then gone', () => {
    const cache = new TlsSessionCache();
    cache.set(id(1), data(1));
    expect(cache.take(id(1))).toEqual(data(1));
    expect(cache.take(id(1))).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it('evicts the least recently stored entry beyond its bound', () => {
    const cache = new TlsSessionCache({ maxEntries: 3 });
    for (const n of [1, 2, 3]) cache.set(id(n), data(n));
    cache.set(id(1), data(10)); // stored again: now the most recent
    cache.set(id(4), data(4)); // evicts 2
    expect(cache.size).toBe(3);
    expect(cache.take(id(2))).toBeUndefined();
    expect(cache.take(id(1))).toEqual(data(10));
    expect(cache.take(id(3))).toEqual(data(3));
  });

  it('never hands out an expired session', () => {
    let now = 1_000;
    const cache = new TlsSessionCache({ ttlMs: 100, now: () => now });
    cache.set(id(1), data(1));
    cache.set(id(2), data(2));
    now += 99;
    expect(cache.take(id(1))).toEqual(data(1));
    now += 1;
    expect(cache.take(id(2))).toBeUndefined();
  });
});

describe('session-id resumption on the TLS listener (client without tickets)', () => {
  let pki: TestPki;
  let served: Served | undefined;
  beforeAll(() => {
    pki = makePki();
  });
  afterEach(async () => {
    await served?.close();
    served = undefined;
  });

  // A TLS 1.2 client without tickets: only the session id can resume it.
  const visit = (port: number, session: Buffer | undefined) =>
    tlsVisit(port, pki.read(pki.caCert), session, '/', noTickets);

  it('resumes a session id once; replaying the same session id gets a full handshake', async () => {
    served = await serve([...pki.tlsSets()]);
    const first = await visit(served.port, undefined);
    expect(first.reused).toBe(false);
    expect(served.http.tls?.sessionCache.size).toBe(1);
    expect((await visit(served.port, first.session)).reused).toBe(true);
    expect((await visit(served.port, first.session)).reused).toBe(false);
  });
});

// TLS 1.3 resumes from tickets alone, yet OpenSSL reports each ticket it
// issues as a new session (two per full handshake). Stored, they were never
// looked up, and filled the cache: 5,000 TLS 1.3 clients pushed every TLS 1.2
// session out of it (and held about 4 MB of a worker's heap).
describe('TLS 1.3 sessions', () => {
  let pki: TestPki;
  let server: TlsServer | undefined;
  beforeAll(() => {
    pki = makePki();
  });
  afterEach(() => {
    server?.close();
    server = undefined;
  });

  const visit = (port: number, maxVersion: 'TLSv1.2' | 'TLSv1.3', session?: Buffer) =>
    tlsVisit(port, pki.read(pki.caCert), session, '', {
      send: 'hi',
      ...(maxVersion === 'TLSv1.2' ? noTickets : { maxVersion }),
    });

  it('are not stored (they resume from tickets); TLS 1.2 sessions without tickets still are', async () => {
    const cache = new TlsSessionCache();
    server = createServer({ cert: pki.read(pki.serverCert), key: pki.read(pki.serverKey) }, (s) => {
      s.on('error', () => {});
      s.end('x');
    });
    let reported = 0;
    server.on('newSession', () => reported++);
    cache.attach(server);
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    let session: Buffer | undefined;
    for (let i = 0; i < 5; i++) session = (await visit(port, 'TLSv1.3')).session;
    expect(reported).toBeGreaterThanOrEqual(5);
    expect(cache.size).toBe(0);
    expect((await visit(port, 'TLSv1.3', session)).reused).toBe(true);
    const tls12 = await visit(port, 'TLSv1.2');
    expect(cache.size).toBe(1);
    expect((await visit(port, 'TLSv1.2', tls12.session)).reused).toBe(true);
  });
});
