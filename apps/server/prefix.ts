/**
 * Mount prefixes in raw URLs. The router matches the decoded path, so a raw
 * URL may spell a prefix longer than the prefix itself (`/%73tatic` for
 * `/static`): prefixes are stripped by path segments, never by length.
 */

/** The path segments of a normalised prefix (`''` → 0, `/a/b` → 2). */
export function prefixSegments(prefix: string): number {
  let segments = 0;
  for (let i = 0; i < prefix.length; i++) if (prefix.charCodeAt(i) === 47 /* / */) segments++;
  return segments;
}

/**
 * `url` without its first `segments` path segments, as raw as it came:
 * `/legacy/users/5?q=1` → `/users/5?q=1`; `/legacy` → `''`. An encoded `%2F`
 * is not a separator (the router does not decode it), so raw and decoded
 * paths have the same segments.
 */
export function afterSegments(url: string, segments: number): string {
  let seen = 0;
  let i = 0;
  for (; i < url.length; i++) {
    const ch = url.charCodeAt(i);
    if (ch === 63 /* ? */ || (ch === 47 /* / */ && seen++ === segments)) break;
  }
  return url.slice(i);
}
