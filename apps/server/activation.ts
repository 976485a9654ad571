/**
 * Socket activation for a worker run without the supervisor (a systemd
 * socket unit, `systemd-socket-activate`): the listening sockets it was
 * handed as `LISTEN_FDS` (fds 3 .. 3+n-1), named by `LISTEN_FDNAMES`, for
 * the listeners of the same names (`http`, or a TCP service's name). The
 * systemd rules apply: the variables are for the process `LISTEN_PID`
 * names (when set), and are removed from the environment once read, so a
 * process the app starts does not take them for its own.
 */
import { HypError } from '../../supervisor/errors.js';
import { firstListenFd, workerEnv } from '../../supervisor/ipc.js';

const listenPid = 'LISTEN_PID';

export interface Activation {
  /** Listener name → inherited fd (empty: bind every listener's own address). */
  fds: Map<string, number>;
  /** Why inherited fds were left alone, for the log (`LISTEN_PID` names another process). */
  ignored?: string;
}

/**
 * Read (and remove) the activation variables of `env`. `listeners`: the
 * names this worker serves. One socket whose name is none of them (systemd
 * names it after its unit by default) is the HTTP listener. Throws
 * HYP_E_LISTEN_FDS (exit 2) for a count or names it cannot use.
 */
export function socketActivation(
  env: NodeJS.ProcessEnv,
  pid: number,
  listeners: readonly string[],
): Activation {
  const count = env[workerEnv.listenFds];
  const names = env[workerEnv.listenFdNames];
  const owner = env[listenPid];
  delete env[workerEnv.listenFds];
  delete env[workerEnv.listenFdNames];
  delete env[listenPid];
  if (count === undefined) return { fds: new Map() };
  if (owner !== undefined && owner !== String(pid)) {
    return {
      fds: new Map(),
      ignored: `LISTEN_PID is ${owner}, not this process (${pid}): the inherited sockets are not this worker's; it binds its own`,
    };
  }
  if (!/^\d+$/.test(count)) throw fdsError(`LISTEN_FDS is ${JSON.stringify(count)}, not a number of sockets`);
  const n = Number(count);
  const fds = new Map<string, number>();
  if (n === 0) return { fds };
  const given = names === undefined || names === '' ? [] : names.split(':');
  if (n === 1 && (given.length !== 1 || !listeners.includes(given[0]!))) {
    fds.set('http', firstListenFd);
    return { fds };
  }
  if (given.length !== n) {
    throw fdsError(
      `LISTEN_FDS is ${n} but LISTEN_FDNAMES names ${given.length} (${JSON.stringify(names ?? '')}); name each socket after its listener (FileDescriptorName=): ${listeners.join(', ')}`,
    );
  }
  given.forEach((name, i) => {
    if (!listeners.includes(name)) {
      throw fdsError(
        `socket ${i + 1} of ${n} is named ${JSON.stringify(name)}, which is no listener of this worker; the names are: ${listeners.join(', ')}`,
      );
    }
    if (fds.has(name)) throw fdsError(`two sockets are named ${JSON.stringify(name)}`);
    fds.set(name, firstListenFd + i);
  });
  return { fds };
}

function fdsError(detail: string): HypError {
  return new HypError('HYP_E_LISTEN_FDS', { detail });
}
