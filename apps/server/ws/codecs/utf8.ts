/**
 * Length of the well-formed UTF-8 sequence at `p` (RFC 3629: no overlong
 * forms, no surrogates, nothing above U+10FFFF), or 0 when the bytes at `p`
 * are not one: the codecs refuse names that are not UTF-8 rather than read
 * them leniently, where different bytes would become one name (U+FFFD).
 */
export function utf8SequenceLength(b: Uint8Array, p: number): number {
  const c = b[p]!;
  if (c < 0x80) return 1;
  let length: number;
  let low = 0x80;
  let high = 0xbf;
  if (c >= 0xc2 && c <= 0xdf) length = 2;
  else if (c >= 0xe0 && c <= 0xef) {
    length = 3;
    if (c === 0xe0) low = 0xa0;
    else if (c === 0xed) high = 0x9f;
  } else if (c >= 0xf0 && c <= 0xf4) {
    length = 4;
    if (c === 0xf0) low = 0x90;
    else if (c === 0xf4) high = 0x8f;
  } else return 0;
  for (let i = 1; i < length; i++) {
    const next = b[p + i];
    if (next === undefined || next < low || next > high) return 0;
    low = 0x80;
    high = 0xbf;
  }
  return length;
}

/** Offset of the first byte of `b` that does not start a well-formed UTF-8 sequence, or -1. */
export function invalidUtf8At(b: Uint8Array): number {
  let p = 0;
  while (p < b.length) {
    const length = utf8SequenceLength(b, p);
    if (length === 0) return p;
    p += length;
  }
  return -1;
}
