/**
 * JSON's `\uXXXX` escapes can spell a lone surrogate (`"\ud800"`), a string
 * with no UTF-8 form. Names (channels, rooms, client ids, offsets) are
 * written as UTF-8 on the bus, in Redis keys and by the binary codecs, where
 * every lone surrogate becomes U+FFFD: "\ud800", "\udfff" and "\ufffd" would
 * be one channel there and three in the hub. The binary codecs cannot
 * produce one (their strings are decoded as UTF-8 with `fatal: true`), so
 * only JSON text needs this check.
 */
import { HypError } from '../../../../supervisor/errors.js';

function hexValue(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x41 && c <= 0x46) return c - 0x37;
  if (c >= 0x61 && c <= 0x66) return c - 0x57;
  return -1;
}

/** The code unit a `\uXXXX` escape at `p` spells, or -1 when there is none at `p`. */
function escapedUnit(b: Uint8Array, p: number, end: number): number {
  if (p + 6 > end || b[p] !== 0x5c || b[p + 1] !== 0x75) return -1;
  let unit = 0;
  for (let i = 2; i < 6; i++) {
    const h = hexValue(b[p + i]!);
    if (h < 0) return -1;
    unit = unit * 16 + h;
  }
  return unit;
}

/**
 * Byte offset of the first `\uXXXX` escape in `b[start, end)` that spells a
 * lone surrogate (a high one not followed by a low one, or a low one not
 * preceded by a high one), or -1. `b[start, end)` is JSON text already
 * scanned as valid: a backslash is always the start of an escape.
 */
export function loneSurrogateEscape(b: Uint8Array, start: number, end: number): number {
  let p = start;
  while (p < end) {
    if (b[p] !== 0x5c) {
      p++;
      continue;
    }
    const unit = escapedUnit(b, p, end);
    if (unit < 0xd800 || unit > 0xdfff) {
      // \uXXXX outside the surrogates, or a two-byte escape (\", \\, \n ...)
      p += unit < 0 ? 2 : 6;
      continue;
    }
    if (unit >= 0xdc00) return p;
    const low = escapedUnit(b, p + 6, end);
    if (low < 0xdc00 || low > 0xdfff) return p;
    p += 12;
  }
  return -1;
}

/** The escape at `p`, for error messages (`\ud800`). */
export function escapeText(b: Uint8Array, p: number): string {
  return String.fromCharCode(...b.subarray(p, p + 6));
}

/** A lone surrogate: with the `u` flag, surrogate pairs are one code point and do not match. */
const loneSurrogate = /\p{Surrogate}/u;

/**
 * Throws HYP_E_WS_NAME_INVALID when `name` (a channel or room given to
 * `call`) holds a lone surrogate: it has no UTF-8 form, so it would share
 * Redis keys and binary-codec frames with other names, and json clients
 * would refuse its deliveries as undecodable. Names from the app (the hub's
 * API) and from hyp/client are checked alike.
 */
export function checkWellFormedName(call: string, kind: string, name: string): void {
  const at = name.search(loneSurrogate);
  if (at < 0) return;
  const unit = name.charCodeAt(at).toString(16);
  throw new HypError('HYP_E_WS_NAME_INVALID', {
    call,
    kind,
    name: JSON.stringify(name.length > 64 ? `${name.slice(0, 64)}…` : name),
    detail: `holds a lone surrogate (\\u${unit} at index ${at}, which has no UTF-8 form)`,
  });
}
