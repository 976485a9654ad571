/**
 * Session-ticket keys: servers that share the supervisor's keys resume each
 * other's sessions; servers with their own keys do not; after a rotation the
 * previous key still resumes, two rotations later it does not.
 */
import { randomBytes } from 'node:crypto';
import { connect, type TLSSocket } from 'node:tls';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TicketKeys } from '../../../../supervisor/ipc.js';
import { type Served, serve } from '../http/harness.js';
import { makePki, type TestPki } from './certs.js';

let pki: TestPki;
const running: Served[] = [];
beforeAll(() => {
  pki = makePki();
});
afterEach(async () => {
  await Promise.all(running.splice(0).map((s) => s.close()));
});

async function tlsServer(keys?: TicketKeys): Promise<Served> {
  const s = await serve([...pki.tlsSets()], keys);
  running.push(s);
  return s;
}

interface Visit {
  reused: boolean;
  session: Buffer | undefined;
}

/** One TLS connection with an HTTP/1.1 request; returns whether it resumed and the newest session. */
function visit(
  port: number,
  session: Buffer | undefined,
  maxVersion: 'TLSv1.2' | 'TLSv1.3' = 'TLSv1.3',
): Promise<Visit> {
  return new Promise((resolve, reject) => {
    let latest: Buffer | undefined;
    const socket: TLSSocket = connect({
      host: '127.0.0.1',
      port,
      ca: pki.read(pki.caCert),
      session,
      maxVersion,
      ALPNProtocols: ['http/1.1'],
    });
    socket.on('session', (s: Buffer) => {
      latest = s;
    });
    let reused = false;
    socket.on('secureConnect', () => {
      reused = socket.isSessionReused();
      socket.write('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
    });
    socket.on('data', () => {});
    socket.on('error', reject);
    socket.on('close', () => resolve({ reused, session: latest }));
  });
}

const keysOf = (current: Buffer, previous: Buffer[] = []): TicketKeys => ({ current, previous });

describe('session tickets across workers', () => {
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    it(`${version}: a ticket from one server resumes on another with the same keys, not with its own keys`, async () => {
      const shared = keysOf(randomBytes(48));
      const a = await tlsServer(shared);
      const b = await tlsServer(shared);
      const own = await tlsServer();
      const first = await visit(a.port, undefined, version);
      expect(first.reused).toBe(false);
      expect((await visit(b.port, first.session, version)).reused).toBe(true);
      expect((await visit(own.port, first.session, version)).reused).toBe(false);
    });
  }

  it('keys that arrive after start (the IPC message) take effect', async () => {
    const a = await tlsServer();
    const b = await tlsServer();
    const keys = keysOf(randomBytes(48));
    a.http.setTicketKeys(keys);
    b.http.setTicketKeys(keys);
    const first = await visit(a.port, undefined);
    expect((await visit(b.port, first.session)).reused).toBe(true);
  });
});

describe('share_ticket_keys: false on a listener', () => {
  // The supervisor sends its keys to every worker when any listener shares them
  // (a TCP service, say): a listener that opted out keeps its own keys.
  it('keeps its own keys: the shared keys neither at start nor later resume its tickets on a sharing server', async () => {
    const keys = keysOf(randomBytes(48));
    const sharing = await tlsServer(keys);
    const optedOut = await serve([...pki.tlsSets(), 'server.tls.share_ticket_keys=false'], keys);
    running.push(optedOut);
    optedOut.http.setTicketKeys(keysOf(randomBytes(48), [keys.current]));
    optedOut.http.setTicketKeys(keys);
    const first = await visit(optedOut.port, undefined);
    expect((await visit(sharing.port, first.session)).reused).toBe(false);
    // and its own tickets still resume on itself
    expect((await visit(optedOut.port, first.session)).reused).toBe(true);
  });
});

describe('malformed keys from the supervisor', () => {
  it('are refused with HYP_E_TLS_TICKET_KEYS, never thrown; the keys in use keep resuming', async () => {
    const keys = keysOf(randomBytes(48));
    const s = await tlsServer(keys);
    const first = await visit(s.port, undefined);
    const garbage: unknown[] = [
      keysOf(randomBytes(32)),
      { current: randomBytes(48), previous: [randomBytes(47)] },
      { current: randomBytes(48), previous: 'nope' },
      { current: 'x'.repeat(48), previous: [] },
      undefined,
      null,
    ];
    // Before: each threw out of setTicketKeys — in the worker's IPC handler an unhandled rejection.
    for (const bad of garbage) expect(() => s.http.setTicketKeys(bad as TicketKeys)).not.toThrow();
    const refused = s.logs.filter((l) => l.code === 'HYP_E_TLS_TICKET_KEYS');
    expect(refused).toHaveLength(garbage.length);
    expect(refused[0]?.msg).toContain('48 bytes, got 32');
    expect(s.http.tls?.ticketKeys.current?.current.equals(keys.current)).toBe(true);
    expect((await visit(s.port, first.session)).reused).toBe(true);
  });

  it('a plain Uint8Array key (not a Buffer) works like a Buffer', async () => {
    const s = await tlsServer();
    const k1 = randomBytes(48);
    const k2 = randomBytes(48);
    s.http.setTicketKeys(keysOf(k1));
    const underK1 = (await visit(s.port, undefined)).session;
    // `previous` as plain Uint8Array: the ticket callback compares key names with Buffer#equals.
    s.http.setTicketKeys({ current: new Uint8Array(k2) as Buffer, previous: [new Uint8Array(k1) as Buffer] });
    expect((await visit(s.port, underK1)).reused).toBe(true);
  });
});

describe('rotation keeps the previous key for decryption', () => {
  it('a ticket under the previous key resumes (and is renewed); two rotations later it does not', async () => {
    const k1 = randomBytes(48);
    const k2 = randomBytes(48);
    const k3 = randomBytes(48);
    const s = await tlsServer(keysOf(k1));
    expect(s.http.tls?.ticketKeys.mode).toBe('callback');
    const underK1 = (await visit(s.port, undefined)).session;

    s.http.setTicketKeys(keysOf(k2, [k1]));
    const resumed = await visit(s.port, underK1);
    expect(resumed.reused).toBe(true);
    const renewed = resumed.session; // issued under k2

    s.http.setTicketKeys(keysOf(k3, [k2]));
    expect((await visit(s.port, underK1)).reused).toBe(false);
    expect((await visit(s.port, renewed)).reused).toBe(true);
  });
});
