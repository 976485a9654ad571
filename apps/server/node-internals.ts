/**
 * A few workarounds read Node internals that Node does not expose (a
 * session's native handle, a server's connection list, the socket a
 * `TLSSocket` wraps). They are stable from Node 20 through 26 and the specs
 * that cover each workaround fail where one goes. On a Node that lacks one,
 * the workaround turns off; this module says so once per internal, as
 * `HYP_W_NODE_INTERNALS` on the worker's log (or as a process warning before
 * the worker has one), instead of leaving the operator to find out from the
 * bug the workaround prevents.
 */
import type { Logger } from 'pino';
import { HypError } from '../../supervisor/errors.js';

let log: Logger | undefined;
const reported = new Set<string>();

/** @internal The worker's logger, for the reports below. */
export function setInternalsLog(logger: Logger | undefined): void {
  log = logger;
}

/**
 * `internal` (e.g. `Http2Session[kHandle].hasPendingData`) is missing, so
 * `workaround` is off, with `consequence`. Reported once per internal per
 * process.
 */
export function internalMissing(internal: string, workaround: string, consequence: string): void {
  if (reported.has(internal)) return;
  reported.add(internal);
  const err = new HypError('HYP_W_NODE_INTERNALS', {
    node: process.version,
    internal,
    workaround,
    consequence,
  });
  if (log !== undefined) log.warn({ code: err.code, internal }, err.message);
  else process.emitWarning(err.message, { code: err.code });
}

/** @internal The internals reported so far (specs). */
export function reportedInternals(): readonly string[] {
  return [...reported];
}
