/**
 * The last good TLS files of each listener (`server.tls`, `tcp.<name>.tls`),
 * from the supervisor (supervisor/tlscheck.ts `LastGoodTls`), and the
 * report back when a worker's reload has installed new ones.
 *
 * A worker reads its certificate and key from disk when it starts. While a
 * rotation has left them broken, the running workers keep serving the pair
 * they hold; a worker started meanwhile (a restart after a crash, a roll)
 * would fail, again and again, taking capacity away until someone fixes
 * the files. With the supervisor's copy it starts on that pair instead,
 * logs `HYP_E_TLS_FALLBACK`, counts the failure and picks up the files once
 * they are fixed, like the others.
 */
import type { TlsFiles } from '../../../supervisor/tlscheck.js';

let given: Readonly<Record<string, TlsFiles>> = {};
let onReloaded: ((at: string, files: TlsFiles, readAt: number) => void) | undefined;

/** @internal Set by the worker from its boot message; `reloaded` tells the supervisor. */
export function setTlsFallback(
  files: Readonly<Record<string, TlsFiles>> | undefined,
  reloaded?: (at: string, files: TlsFiles, readAt: number) => void,
): void {
  given = files ?? {};
  onReloaded = reloaded;
}

/** The supervisor's last good files for the listener at `at`, if it has them. */
export function tlsFallback(at: string): TlsFiles | undefined {
  return Object.hasOwn(given, at) ? given[at] : undefined;
}

/**
 * A reload installed `files` for `at`, read at `readAt` (tlscheck.ts
 * `tlsReadClock`): the supervisor keeps these bytes as its new last good
 * pair, unless it holds a pair read later (another worker's report can
 * arrive first). Not the files' paths: by the time it would read them,
 * they may have been overwritten again.
 */
export function tlsReloaded(at: string, files: TlsFiles, readAt: number): void {
  onReloaded?.(at, files, readAt);
}
