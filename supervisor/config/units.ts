/**
 * Parsers for the string-typed config units. Each returns `undefined` for
 * input it does not accept so the schema formats and the readers share one
 * definition of what is valid.
 */
import { isIP } from 'node:net';

const durationUnitMs: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
const durationPart = /(\d+(?:\.\d+)?)(ms|s|m|h)/y;

/**
 * The longest duration accepted: 2^31-1 ms (about 596h), the longest delay a
 * Node.js timer keeps; a longer one fires after 1 ms instead.
 */
export const maxDurationMs = 2 ** 31 - 1;

/** `250ms`, `5s`, `1m30s`, `0` → milliseconds (at most `maxDurationMs`). */
export function parseDuration(text: string): number | undefined {
  if (text === '0') return 0;
  if (text.length === 0) return undefined;
  let total = 0;
  durationPart.lastIndex = 0;
  while (durationPart.lastIndex < text.length) {
    const at = durationPart.lastIndex;
    const m = durationPart.exec(text);
    if (!m || m.index !== at) return undefined;
    total += Number(m[1]) * durationUnitMs[m[2]!]!;
  }
  const ms = Math.round(total);
  // Too long for a timer, or a non-zero duration that would round to 0 (which disables).
  if (!(ms <= maxDurationMs) || (ms === 0 && total > 0)) return undefined;
  return ms;
}

const sizeUnits: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1000,
  mb: 1000 ** 2,
  gb: 1000 ** 3,
  kib: 1024,
  mib: 1024 ** 2,
  gib: 1024 ** 3,
};

/** `512`, `64KiB`, `1MiB`, `10MB` → bytes. */
export function parseSize(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)\s*([a-zA-Z]*)$/.exec(text);
  if (!m) return undefined;
  const unit = sizeUnits[m[2]!.toLowerCase()];
  if (unit === undefined) return undefined;
  const bytes = Math.floor(Number(m[1]) * unit);
  return Number.isSafeInteger(bytes) ? bytes : undefined;
}

export interface ListenAddress {
  /** Host to bind; `undefined` means every interface (`::` with IPv4 fallback). */
  host: string | undefined;
  port: number;
}

/** `:8080`, `0.0.0.0:8080`, `[::1]:8080`, `localhost:8080`, `8080`. */
export function parseAddress(text: string): ListenAddress | undefined {
  let host: string | undefined;
  let portText: string;
  if (/^\d+$/.test(text)) {
    portText = text;
  } else if (text.startsWith('[')) {
    const end = text.indexOf(']:');
    if (end < 0) return undefined;
    host = text.slice(1, end);
    if (isIP(host) !== 6) return undefined;
    portText = text.slice(end + 2);
  } else {
    const colon = text.lastIndexOf(':');
    if (colon < 0) return undefined;
    host = text.slice(0, colon) || undefined;
    portText = text.slice(colon + 1);
    // `fe80::1:80`: an IPv6 host must be bracketed, or the port is a guess.
    if (host?.includes(':')) return undefined;
    if (host !== undefined && isIP(host) === 0 && !/^[a-zA-Z0-9]([a-zA-Z0-9.-]*[a-zA-Z0-9])?$/.test(host)) {
      return undefined;
    }
  }
  if (!/^\d+$/.test(portText)) return undefined;
  const port = Number(portText);
  if (port > 65_535) return undefined;
  return { host, port };
}

export function formatAddress(addr: ListenAddress): string {
  if (addr.host === undefined) return `:${addr.port}`;
  return isIP(addr.host) === 6 ? `[${addr.host}]:${addr.port}` : `${addr.host}:${addr.port}`;
}

/** Read a validated duration; throws only on a programming error. */
export function durationMs(text: string): number {
  const ms = parseDuration(text);
  if (ms === undefined) throw new TypeError(`not a duration: ${text}`);
  return ms;
}

export function sizeBytes(text: string): number {
  const n = parseSize(text);
  if (n === undefined) throw new TypeError(`not a size: ${text}`);
  return n;
}
