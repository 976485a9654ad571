/**
 * The TLS 1.2 session-id cache (stateful resumption for clients that do not
 * use tickets), as in the seed: bounded (10,000 entries), 24 h TTL, LRU
 * eviction, and single-use — a session is deleted when it is looked up, so a
 * captured session id cannot be replayed for a second resumption.
 *
 * Per worker: a client whose reconnect lands on another worker does a full
 * handshake. Tickets (shared keys, see ticketkeys.ts) are the cross-worker path.
 */
import type { Server as TlsServer } from 'node:tls';

interface Entry {
  session: Buffer;
  expires: number;
}

export interface TlsSessionCacheOptions {
  maxEntries?: number;
  ttlMs?: number;
  now?: () => number;
}

export class TlsSessionCache {
  readonly maxEntries: number;
  readonly ttlMs: number;
  private readonly now: () => number;
  /** Insertion order is recency: the first key is the least recently stored. */
  private readonly entries = new Map<string, Entry>();

  constructor(opts: TlsSessionCacheOptions = {}) {
    this.maxEntries = opts.maxEntries ?? 10_000;
    this.ttlMs = opts.ttlMs ?? 24 * 60 * 60 * 1000;
    this.now = opts.now ?? Date.now;
  }

  get size(): number {
    return this.entries.size;
  }

  set(id: Buffer, session: Buffer): void {
    const key = id.toString('hex');
    this.entries.delete(key);
    this.entries.set(key, { session, expires: this.now() + this.ttlMs });
    while (this.entries.size > this.maxEntries) {
      const oldest = this.entries.keys().next().value as string;
      this.entries.delete(oldest);
    }
  }

  /** Get-and-delete: a session resumes at most once. Expired entries are dropped. */
  take(id: Buffer): Buffer | undefined {
    const key = id.toString('hex');
    const entry = this.entries.get(key);
    if (!entry) return undefined;
    this.entries.delete(key);
    return entry.expires > this.now() ? entry.session : undefined;
  }

  /** Serve `newSession` / `resumeSession` of a TLS server from this cache. */
  attach(server: TlsServer): void {
    server.on('newSession', (id: Buffer, data: Buffer, done: () => void) => {
      // TLS 1.3 resumes from its tickets alone, yet OpenSSL reports each
      // ticket it issues here (two per full handshake): never looked up, they
      // would only push out the TLS 1.2 sessions this cache is for.
      if (sessionVersion(data) !== tls13) this.set(id, data);
      done();
    });
    server.on('resumeSession', (id: Buffer, done: (err: Error | null, data: Buffer | null) => void) => {
      done(null, this.take(id) ?? null);
    });
  }
}

const tls13 = 0x0304;

/**
 * The protocol version of a DER-encoded SSL_SESSION (OpenSSL's ASN.1:
 * `SEQUENCE { INTEGER 1, INTEGER ssl_version, ... }`), or -1 if `der` does
 * not start that way.
 */
export function sessionVersion(der: Buffer): number {
  if (der.length < 10 || der[0] !== 0x30) return -1;
  const lengthBytes = der[1]! & 0x80 ? der[1]! & 0x7f : 0;
  let i = 2 + lengthBytes;
  if (der[i] !== 0x02 || der[i + 1] !== 1 || der[i + 2] !== 1) return -1;
  i += 3;
  if (der[i] !== 0x02 || der[i + 1] !== 2 || i + 3 >= der.length) return -1;
  return (der[i + 2]! << 8) | der[i + 3]!;
}
