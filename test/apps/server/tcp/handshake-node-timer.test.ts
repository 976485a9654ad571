/**
 * A TCP service bounds TLS handshakes itself (`handshake_timeout`, and the
 * idle sweeper); `handshake_timeout: 0` leaves only `idle_timeout`
 * (docs/tcp.md). Node's own handshake timer must stay out of it: its
 * `handshakeTimeout: 0` means the default, 120 s, after which Node reports
 * "TLS handshake timeout" to 'tlsClientError' and leaves the socket open.
 * The service passed 0, so a silent handshake got a HYP_E_TCP_HANDSHAKE at
 * 120 s that closed nothing (and, under a `handshake_timeout` above 2 min,
 * a second report when hyp's own deadline closed it).
 *
 * This spec waits past Node's 120 s: about 2 minutes.
 */
import { connect, type Socket } from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TcpService } from '../../../../apps/server/tcp/server.js';
import { makePki, type TestPki } from '../tls/certs.js';
import { startService } from './helpers.js';

let pki: TestPki;
beforeAll(() => {
  pki = makePki();
});
let service: TcpService<object> | undefined;
let client: Socket | undefined;
afterEach(async () => {
  client?.destroy();
  await service?.close();
});

describe("Node's handshake timer on a TLS TCP service", () => {
  it('handshake_timeout 0, idle_timeout 0: a silent handshake past 120 s gets no HYP_E_TCP_HANDSHAKE', async () => {
    const errors: Error[] = [];
    const started = await startService(
      async () => {},
      {
        handshake_timeout: '0',
        idle_timeout: '0',
        tls: { enabled: true, cert_file: pki.serverCert, key_file: pki.serverKey, watch: false },
      },
      { onError: (...e) => errors.push(...e) },
    );
    service = started.service as TcpService<object>;
    client = connect(started.port, '127.0.0.1');
    client.on('error', () => {});
    await new Promise((resolve) => client!.once('connect', resolve));
    // Node's default handshake timer is 120 s; wait past it.
    await new Promise((resolve) => setTimeout(resolve, 125_000));
    expect(errors.map((e) => e.message)).toEqual([]);
    // What the config asked for: nothing bounds this handshake, it is still open.
    expect(service.openConnections()).toBe(1);
  }, 140_000);
});
