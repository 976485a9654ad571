/**
 * Adversarial audit of the TCP services: hostile peers (port reuse, resets,
 * floods, peers that never read) and misbehaving apps, each against the
 * real accept path on 127.0.0.1.
 */
import { execFileSync } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type TLSSocket, connect as tlsConnect } from 'node:tls';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { closedByPeer, echo, readBytes, startService, until } from './helpers.js';

let dir = '';
const file = (name: string) => join(dir, name);

/** A self-signed certificate for 127.0.0.1. */
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'hyp-tcp-audit-'));
  execFileSync(
    'openssl',
    [
      'req',
      '-x509',
      '-newkey',
      'ec',
      '-pkeyopt',
      'ec_paramgen_curve:prime256v1',
      '-nodes',
      '-keyout',
      'server.key',
      '-out',
      'server.pem',
      '-days',
      '1',
      '-subj',
      '/CN=127.0.0.1',
      '-addext',
      'subjectAltName=IP:127.0.0.1',
    ],
    { cwd: dir, stdio: 'pipe' },
  );
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const services: TcpService<object>[] = [];
async function start(...args: Parameters<typeof startService>) {
  const started = await startService(...args);
  services.push(started.service as TcpService<object>);
  return started;
}
afterEach(async () => {
  await Promise.all(services.splice(0).map((s) => s.close()));
});

const tlsConfig = () => ({
  tls: { enabled: true, cert_file: file('server.pem'), key_file: file('server.key'), watch: false },
});

function dialTls(port: number, extra: Record<string, unknown> = {}): TLSSocket {
  return tlsConnect({ port, host: '127.0.0.1', ca: readFileSync(file('server.pem')), ...extra });
}

/** Block this process's event loop: events that arrive meanwhile are handled in one poll. */
function blockFor(ms: number): void {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    /* spin */
  }
}

describe('TLS handshakes in flight', () => {
  it('a reset connection does not take the handshake of a new one from the same address and port', async () => {
    const errors: Error[] = [];
    const { port, service } = await start(echo, tlsConfig(), { onError: (...e) => errors.push(...e) });
    const old: Socket = netConnect({ port, host: '127.0.0.1' });
    old.on('error', () => {});
    await once(old, 'connect');
    const reused = old.localPort!;
    await until(() => service.openConnections() === 1, 'first connection accepted');
    // The peer resets and reconnects from the same port (no TIME_WAIT after
    // a reset). The server sees the reset and the new connection in one poll;
    // the old socket's `close` comes after the new one was accepted.
    old.resetAndDestroy();
    const fresh = dialTls(port, { localAddress: '127.0.0.1', localPort: reused });
    fresh.on('error', () => {});
    process.nextTick(() => blockFor(100)); // after the connect syscall, before the next poll
    await once(fresh, 'secureConnect');
    fresh.write('still here');
    const { data } = await Promise.race([
      readBytes(fresh, 10).then((d) => ({ data: d })),
      closedByPeer(fresh),
    ]);
    expect(data.toString()).toBe('still here');
    fresh.end();
    await closedByPeer(fresh);
    await until(() => service.openConnections() === 0, 'both connections done');
  });
});
