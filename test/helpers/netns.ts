/**
 * A throw-away test host: a network namespace joined to this machine by a
 * veth pair on a /30 of its own. Requests made from inside it reach the
 * supervisor from a non-loopback address, as a pod neighbour would.
 * Traffic never leaves this machine.
 */
import { execFileSync } from 'node:child_process';

export interface TestHost {
  /** Address of this machine on the pair (where servers are reached). */
  hostAddr: string;
  /** Address of the namespace side (where requests come from). */
  peerAddr: string;
  /** Run a command inside the namespace. */
  exec(cmd: string, args: string[]): string;
  remove(): void;
}

export function createTestHost(): TestHost {
  const id = (process.pid % 200) + 20;
  const ns = `hyp-t${process.pid}`;
  const a = `hypa${process.pid}`.slice(0, 15);
  const b = `hypb${process.pid}`.slice(0, 15);
  const hostAddr = `10.213.${id}.1`;
  const peerAddr = `10.213.${id}.2`;
  const ip = (...args: string[]) => execFileSync('ip', args, { stdio: 'pipe' });
  ip('netns', 'add', ns);
  try {
    ip('link', 'add', a, 'type', 'veth', 'peer', 'name', b);
    ip('link', 'set', b, 'netns', ns);
    ip('addr', 'add', `${hostAddr}/30`, 'dev', a);
    ip('link', 'set', a, 'up');
    ip('netns', 'exec', ns, 'ip', 'addr', 'add', `${peerAddr}/30`, 'dev', b);
    ip('netns', 'exec', ns, 'ip', 'link', 'set', b, 'up');
  } catch (err) {
    try {
      ip('netns', 'del', ns);
    } catch {}
    throw err;
  }
  return {
    hostAddr,
    peerAddr,
    exec: (cmd, args) =>
      execFileSync('ip', ['netns', 'exec', ns, cmd, ...args], { encoding: 'utf8', timeout: 20_000 }),
    remove() {
      try {
        ip('link', 'del', a);
      } catch {}
      try {
        ip('netns', 'del', ns);
      } catch {}
    },
  };
}
