/**
 * A peer that vanishes (a pulled cable, a NAT that forgot the flow) while the
 * handler streams to it: the kernel gives up retransmitting and fails the
 * socket with ETIMEDOUT. Like a reset, that ends the connection and is no
 * bug of the app: no socket error to onError, and the handler's failed write
 * is one debug line counted in `hyp_tcp_handler_peer_gone_total`.
 *
 * The timeout is a real one: the service runs (built dist/) in a network
 * namespace of its own (`unshare -n`, as root) with `tcp_retries2` lowered,
 * and iptables drops the client's packets there only. Skipped where that is
 * not possible (not root, no unshare, iptables or ss, not built). The idle
 * case (keep-alive) is peer-vanished-keepalive.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { builtDist, expectVanishedQuietly, isolatedNetwork, vanishInIsolatedNetwork } from './helpers.js';

describe.skipIf(!builtDist || !isolatedNetwork())(
  'a peer that vanishes while the handler writes to it',
  () => {
    it('ETIMEDOUT: one debug line, counted, nothing to onError', () => {
      const outcome = vanishInIsolatedNetwork(['stream'], { 'net.ipv4.tcp_retries2': 3 });
      // With data in flight the kernel retransmits (`on`; `persist` had the client's window closed first), no keep-alive.
      expect(outcome.timers).not.toHaveLength(0);
      expect(outcome.timers).not.toContain('keepalive');
      // Before: onError got the socket's ETIMEDOUT and HYP_E_TCP_HANDLER; hyp_tcp_errors_total 2.
      expectVanishedQuietly(outcome);
    }, 120_000);
  },
);
