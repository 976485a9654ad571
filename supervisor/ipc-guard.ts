/**
 * The supervisor is the pod's PID 1: it must not die because a worker wrote
 * bytes to its IPC channel that are not a message (a native addon or app code
 * writing to the channel's fd). Node parses the channel in its read callback
 * and throws from there, an uncaught exception nothing else could catch. The
 * guard logs it (`HYP_E_IPC_MESSAGE`) and carries on: that worker's channel
 * is unusable from then on, so its heartbeats stop and the heartbeat timeout
 * replaces it. Any other uncaught exception ends the process as Node's
 * default would (the error on stderr, exit 1).
 */
import { inspect } from 'node:util';
import type { Logger } from './log.js';

/** An error thrown by Node's IPC message parser (`node:internal/child_process/serialization`). */
export function isIpcParseError(err: unknown): boolean {
  return err instanceof Error && typeof err.stack === 'string' && err.stack.includes('parseChannelMessages');
}

let installed = false;

export function guardIpcParsing(log: Logger): void {
  if (installed) return;
  installed = true;
  process.on('uncaughtException', (err) => {
    if (isIpcParseError(err)) {
      log.error(
        { code: 'HYP_E_IPC_MESSAGE', err },
        "a worker wrote bytes to its IPC channel that are not a message: ignored; that worker's channel is unusable now, so the heartbeat timeout will replace it",
      );
      return;
    }
    process.stderr.write(`${inspect(err)}\n`);
    process.exit(1);
  });
}
