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
 * not possible (not root, no unshare or iptables, not built).
 */
import { execFileSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const fixture = fileURLToPath(new URL('./fixtures/peer-vanished.mjs', import.meta.url));
const built = existsSync(
  fileURLToPath(new URL('../../../../dist/apps/server/tcp/server.js', import.meta.url)),
);

function isolatedNetwork(): boolean {
  if (process.getuid?.() !== 0) return false;
  try {
    execFileSync('unshare', ['-n', 'sh', '-c', 'ip link set lo up && iptables -L -n'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

interface Outcome {
  open: number;
  socketError?: string;
  errors: { code?: string; message: string }[];
  lines: { level: number; msg: string; errno?: string; error_code?: string }[];
  peerGone: number;
  errorsTotal: number;
}

describe.skipIf(!built || !isolatedNetwork())('a peer that vanishes while the handler writes to it', () => {
  it('ETIMEDOUT: one debug line, counted, nothing to onError', () => {
    const script = `ip link set lo up && sysctl -qw net.ipv4.tcp_retries2=3 && exec "${process.execPath}" "${fixture}"`;
    const out = execFileSync('unshare', ['-n', 'sh', '-c', script], { encoding: 'utf8', timeout: 90_000 });
    const outcome = JSON.parse(out) as Outcome;
    expect(outcome.open).toBe(0);
    // The kernel's own verdict on the socket, not a faked errno.
    expect(outcome.socketError).toBe('ETIMEDOUT');
    // Before: onError got the socket's ETIMEDOUT and HYP_E_TCP_HANDLER; hyp_tcp_errors_total 2.
    expect(outcome.errors).toEqual([]);
    expect(outcome.errorsTotal).toBe(0);
    expect(outcome.peerGone).toBe(1);
    expect(outcome.lines).toHaveLength(1);
    expect(outcome.lines[0]).toMatchObject({ level: 20, errno: 'ETIMEDOUT', error_code: 'HYP_E_TCP_CLOSED' });
    expect(outcome.lines[0]!.msg).toMatch(/\(the peer stopped answering on the connection: ETIMEDOUT\)$/);
  }, 120_000);
});
