/**
 * The TLS 1.2 session-id cache: bounded, expiring, LRU, single-use.
 */
import { constants } from 'node:crypto';
import { connect } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { TlsSessionCache } from '../../../../apps/server/tls/sessioncache.js';
import { type Served, serve } from '../http/harness.js';
import { makePki, type TestPki } from './certs.js';

const id = (n: number) => Buffer.from([n >> 8, n & 0xff]);
const data = (n: number) => Buffer.from(`session ${n}`);

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

  function visit(
    port: number,
    session: Buffer | undefined,
  ): Promise<{ reused: boolean; session: Buffer | undefined }> {
    return new Promise((resolve, reject) => {
      let latest: Buffer | undefined;
      let reused = false;
      const socket = connect({
        host: '127.0.0.1',
        port,
        ca: pki.read(pki.caCert),
        session,
        maxVersion: 'TLSv1.2',
        secureOptions: constants.SSL_OP_NO_TICKET,
      });
      socket.on('session', (s: Buffer) => {
        latest = s;
      });
      socket.on('secureConnect', () => {
        reused = socket.isSessionReused();
        socket.end('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
      });
      socket.on('data', () => {});
      socket.on('error', reject);
      socket.on('close', () => resolve({ reused, session: latest }));
    });
  }

  it('resumes a session id once; replaying the same session id gets a full handshake', async () => {
    served = await serve([...pki.tlsSets()]);
    const first = await visit(served.port, undefined);
    expect(first.reused).toBe(false);
    expect(served.http.tls?.sessionCache.size).toBe(1);
    expect((await visit(served.port, first.session)).reused).toBe(true);
    expect((await visit(served.port, first.session)).reused).toBe(false);
  });
});
