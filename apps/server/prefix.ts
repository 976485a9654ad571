/**
 * Mount prefixes in raw URLs. The router matches the decoded path, so a raw
 * URL may spell a prefix longer than the prefix itself (`/%73tatic` for
 * `/static`): prefixes are stripped by path segments, never by length.
 */

/** `http(s)://host[:port]` at the start of an absolute-form request target (RFC 9112 §3.2.2). */
const absoluteForm = /^https?:\/\/[^/?]*/i;

/**
 * A request target in origin form, as the router matches it: an absolute-form
 * target (`GET http://h/a?q HTTP/1.1`, which servers must accept) loses its
 * scheme and authority (`/a?q`; `http://h` → `/`); anything else as is.
 */
export function originForm(target: string): string {
  if (target.charCodeAt(0) === 47 /* / */) return target;
  const authority = absoluteForm.exec(target);
  if (authority === null) return target;
  const rest = target.slice(authority[0].length);
  return rest.charCodeAt(0) === 47 /* / */ ? rest : `/${rest}`;
}

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
