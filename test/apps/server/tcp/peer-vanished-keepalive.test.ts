/**
 * A peer that vanishes while its connection is idle (the handler waits to
 * read, nothing unacknowledged in flight): no retransmission ever times
 * out; TCP keep-alive (`keep_alive`, the initial delay) finds it. Node sets
 * the probes itself on every socket it enables keep-alive on (TCP_KEEPINTVL
 * 1 s, TCP_KEEPCNT 10, Node 20 and 26; the namespace's
 * `tcp_keepalive_intvl`/`_probes` do not apply), so the kernel fails the
 * socket with ETIMEDOUT about `keep_alive` + 10 s after the last packet.
 * The handler's read ends (null), its answer fails on the closed socket:
 * one debug line counted in `hyp_tcp_handler_peer_gone_total`, like a reset.
 *
 * The kernel counts the delay in whole seconds, 1 to 32767 (TCP_KEEPIDLE);
 * outside that it refuses it, and the socket kept the system's
 * `tcp_keepalive_time` (2 hours by default).
 *
 * The vanishing is real, as in peer-vanished.test.ts: a network namespace of
 * its own, the client's packets dropped by iptables there. Skipped where
 * that is not possible; the delay cases only need `ss`.
 */
import { execFileSync } from 'node:child_process';
import { afterEach, describe, expect, it } from 'vitest';
import {
  builtDist,
  closeTracked,
  dial,
  echo,
  expectVanishedQuietly,
  isolatedNetwork,
  keepAliveTimersMs,
  start,
  until,
  vanishInIsolatedNetwork,
} from './helpers.js';

function hasSs(): boolean {
  try {
    execFileSync('ss', ['-tn'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

describe.skipIf(!builtDist || !isolatedNetwork())('a peer that vanishes while its connection is idle', () => {
  it('keep-alive ETIMEDOUT: one debug line, counted, nothing to onError, before idle_timeout', () => {
    // Node sets interval and count per socket (1 s, 10); these bound the wait should a Node version not.
    const outcome = vanishInIsolatedNetwork(['idle', '1s'], {
      'net.ipv4.tcp_keepalive_intvl': 1,
      'net.ipv4.tcp_keepalive_probes': 2,
    });
    // Keep-alive probes timed the peer out, not retransmission: nothing was in flight.
    expect(outcome.timers).toEqual(['keepalive']);
    expectVanishedQuietly(outcome);
    // Not closed by the service (idle_timeout, 5m, never fired).
    expect(outcome.lines[0]).not.toHaveProperty('closed_by');
  }, 120_000);
});

describe.skipIf(!hasSs())('keep_alive: the delay the kernel gets', () => {
  afterEach(closeTracked);

  /** The keep-alive timer of a fresh idle connection to a service with `keep_alive`. */
  async function timerMs(keepAlive: string): Promise<number> {
    const { port } = await start(echo, { keep_alive: keepAlive });
    const client = await dial(port);
    await until(() => keepAliveTimersMs(port).length === 1, 'the keep-alive timer');
    const [timer] = keepAliveTimersMs(port);
    client.destroy();
    return timer!;
  }

  it('below one second: one second, not the system default of 2 hours', async () => {
    // Before: TCP_KEEPIDLE 0 was refused (EINVAL), the timer stood at 119min.
    expect(await timerMs('500ms')).toBeLessThanOrEqual(1000);
  });

  it('above 32767 s: 32767 s, not the system default of 2 hours', async () => {
    // Before: TCP_KEEPIDLE 36000 was refused (EINVAL), the timer stood at 119min.
    expect(await timerMs('10h')).toBeGreaterThan(9 * 3600_000);
  });
});
