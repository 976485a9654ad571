/**
 * Static files: `app.static('/static', dir)`. hyp resolves and confines the
 * path itself (one URL decode, `..` and backslashes refused, symlinks
 * resolved and required to stay inside `dir`), picks a precompressed `.br`
 * or `.gz` sibling when the client accepts it, then lets `send` do the HTTP
 * part: ETag, Last-Modified, conditional 304, Range 206/416, content types.
 */
import { type ReadStream, realpathSync, type Stats } from 'node:fs';
import { realpath, stat } from 'node:fs/promises';
import { type Http2ServerResponse, constants as h2constants } from 'node:http2';
import { join, relative, sep } from 'node:path';
import mime from 'mime-types';
import send from 'send';
import { HypError } from '../../supervisor/errors.js';
import type { Context } from './context.js';
import { afterSegments, originForm, prefixSegments } from './prefix.js';
import type { Handler } from './router.js';

export interface StaticOptions {
  /** Index file served for a directory (default `index.html`; `false`: none). */
  index?: string | false;
  /** Serve `file.br` / `file.gz` when present and accepted (default true). */
  precompressed?: boolean;
  /** Cache-Control max-age in ms or as a string such as `1d` (default 0). */
  maxAge?: number | string;
  /** Add `immutable` to Cache-Control (use with hashed file names). */
  immutable?: boolean;
  /** Dotfiles: `ignore` (404, default), `deny` (403) or `allow`. */
  dotfiles?: 'allow' | 'deny' | 'ignore';
}

interface Encoding {
  token: 'br' | 'gzip';
  suffix: string;
}
const encodings: readonly Encoding[] = [
  { token: 'br', suffix: '.br' },
  { token: 'gzip', suffix: '.gz' },
];

interface SendError extends Error {
  status?: number;
  code?: string;
  headers?: Record<string, string>;
}

/** Headers `send` (or hyp, for a variant) set for the file; dropped when the answer is not the file after all. */
const fileHeaders = [
  'accept-ranges',
  'cache-control',
  'content-encoding',
  'content-length',
  'content-range',
  'content-type',
  'etag',
  'last-modified',
];

/** A handler serving `dir` under the normalised mount `prefix` (`''` or `/a/b`). */
export function serveStatic(dir: string, prefix: string, options: StaticOptions = {}): Handler {
  const segments = prefixSegments(prefix);
  let root: string;
  try {
    root = realpathSync(dir);
  } catch (err) {
    throw new TypeError(`static(${dir}): directory cannot be read: ${(err as Error).message}`, {
      cause: err,
    });
  }
  const index = options.index === undefined ? 'index.html' : options.index;
  const precompressed = options.precompressed ?? true;
  const sendOptions: send.SendOptions = {
    root,
    index: false,
    dotfiles: checkDotfiles(dir, options.dotfiles ?? 'ignore'),
    maxAge: checkMaxAge(dir, options.maxAge ?? 0),
    immutable: options.immutable ?? false,
  };
  return async (c: Context) => {
    const url = originForm(c.request.url ?? '/');
    const q = url.indexOf('?');
    const rawPath = q < 0 ? url : url.slice(0, q);
    const file = await resolveFile(root, afterSegments(rawPath, segments), index);
    if (file.kind === 'missing') return c.notFound();
    if (file.kind === 'forbidden') throw new HypError('HYP_E_FORBIDDEN_PATH');
    if (file.kind === 'unreadable') throw unreadable(c, file.path, file.code);
    if (file.kind === 'directory') {
      // `/static/docs` → `/static/docs/` so relative links in index.html resolve.
      // Leading slashes collapsed: `//host/dir` must not become a protocol-relative Location.
      return c.redirect(`${rawPath.replace(/^\/+/, '/')}/${q < 0 ? '' : url.slice(q)}`, 301);
    }
    let path = file.path;
    let encoding: string | undefined;
    let options = sendOptions;
    if (precompressed) {
      varyOnEncoding(c.res);
      const variant = await precompressedVariant(root, path, c.header('accept-encoding'));
      // Every representation keeps the original's mtime (`gzip -k`), so a date in
      // If-Range cannot tell which one a partial download came from: honouring it
      // would splice bytes of one onto the other. Not honoured (whole file, 200)
      // when variants exist; an ETag in If-Range names one representation.
      if (dateIfRange(c) && (variant || (await precompressedVariant(root, path, '*')))) {
        options = { ...sendOptions, acceptRanges: false };
        c.res.setHeader('accept-ranges', 'bytes');
      }
      if (variant) {
        c.res.setHeader(
          'content-type',
          mime.contentType(mime.lookup(path) || 'bin') || 'application/octet-stream',
        );
        c.res.setHeader('content-encoding', variant.token);
        path = variant.path;
        encoding = variant.token;
      }
    }
    await pipeFile(c, root, path, options, encoding);
  };
}

/**
 * What `send` reads as a duration (the `ms` package's grammar: `90000`,
 * `'1h'`, `'7 days'`). Anything else it turns into `max-age=0` without a
 * word, so a typo would silently disable caching: refused here instead.
 */
const msDuration =
  /^\d*\.?\d+ *(?:milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d|weeks?|w|years?|yrs?|y)?$/i;

function checkMaxAge(dir: string, maxAge: number | string): number | string {
  if (typeof maxAge === 'number' ? Number.isFinite(maxAge) && maxAge >= 0 : msDuration.test(maxAge))
    return maxAge;
  throw new TypeError(
    `static(${dir}): maxAge must be milliseconds (a number >= 0) or a duration such as '1h' or '7d', got ${JSON.stringify(maxAge) ?? String(maxAge)}`,
  );
}

/** `send` checks `dotfiles` on every request: a bad value would answer each one 500. */
function checkDotfiles(dir: string, dotfiles: string): 'allow' | 'deny' | 'ignore' {
  if (dotfiles === 'allow' || dotfiles === 'deny' || dotfiles === 'ignore') return dotfiles;
  throw new TypeError(
    `static(${dir}): dotfiles must be 'allow', 'deny' or 'ignore', got ${JSON.stringify(dotfiles)}`,
  );
}

/**
 * Add `Accept-Encoding` to the response's Vary, keeping what middleware put
 * there (a CORS layer's `Origin`: replacing it would let a cache hand one
 * origin's `Access-Control-Allow-Origin` to another).
 */
function varyOnEncoding(res: Context['res']): void {
  const prev = res.getHeader('vary');
  if (prev === undefined) {
    res.setHeader('vary', 'Accept-Encoding');
    return;
  }
  const list = Array.isArray(prev) ? prev.join(', ') : String(prev);
  if (/(?:^|,)\s*(?:\*|accept-encoding)\s*(?:,|$)/i.test(list)) return;
  res.setHeader('vary', list.trim() === '' ? 'Accept-Encoding' : `${list}, Accept-Encoding`);
}

/** A Range request whose If-Range is a date (an ETag is quoted). */
function dateIfRange(c: Context): boolean {
  const ifRange = c.header('if-range');
  return ifRange !== undefined && c.header('range') !== undefined && !ifRange.includes('"');
}

/** A file that exists but cannot be opened (permissions): 403, and a warning naming the file for the operator. */
function unreadable(c: Context, file: string, code: string | undefined): HypError {
  const err = new HypError('HYP_E_STATIC_UNREADABLE', {
    path: c.path,
    detail: code === 'EACCES' || code === 'EPERM' ? 'permission denied' : String(code),
  });
  c.log.warn({ code: err.code, file, errno: code }, err.message);
  return err;
}

/** Errors meaning "not there (any more)": a race with a delete or rename is a 404. */
function isGone(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ENAMETOOLONG' || code === 'ELOOP';
}

function isDenied(err: unknown): boolean {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EACCES' || code === 'EPERM';
}

type Resolved =
  | { kind: 'file'; path: string }
  | { kind: 'directory' }
  | { kind: 'missing' }
  | { kind: 'forbidden' }
  | { kind: 'unreadable'; path: string; code: string };

/**
 * Map the raw URL remainder (`/a%20b.txt`) to a real file inside `root`.
 * Decodes exactly once: `%252e%252e` stays the literal name `%2e%2e`.
 */
export async function resolveFile(root: string, rawRest: string, index: string | false): Promise<Resolved> {
  let decoded: string;
  try {
    decoded = decodeURIComponent(rawRest);
  } catch {
    throw new HypError('HYP_E_BAD_REQUEST', { detail: 'malformed percent-encoding in path' });
  }
  if (decoded.includes('\0')) throw new HypError('HYP_E_BAD_REQUEST', { detail: 'NUL byte in path' });
  if (decoded.includes('\\')) return { kind: 'forbidden' };
  const segments = decoded.split('/');
  if (segments.includes('..')) return { kind: 'forbidden' };
  // A last segment `.` names the directory, as a trailing `/` does (RFC 3986
  // §5.2.4 turns `a/.` into `a/`): `index.html/.` is no file, as `index.html/` is not.
  const asDirectory = decoded.endsWith('/') || segments[segments.length - 1] === '.';

  const real = await realInside(root, join(root, decoded));
  if (typeof real !== 'string') return real;
  const info = await statOf(real);
  if (!('isFile' in info)) return info;
  if (info.isFile()) return asDirectory ? { kind: 'missing' } : { kind: 'file', path: real };
  if (!info.isDirectory()) return { kind: 'missing' };
  if (!asDirectory) return { kind: 'directory' };
  if (index === false) return { kind: 'missing' };
  const indexReal = await realInside(root, join(real, index));
  if (typeof indexReal !== 'string') return indexReal;
  const indexInfo = await statOf(indexReal);
  if (!('isFile' in indexInfo)) return indexInfo;
  return indexInfo.isFile() ? { kind: 'file', path: indexReal } : { kind: 'missing' };
}

/** `stat`, where a file deleted since its `realpath` is missing and one we may not look at is unreadable. */
async function statOf(path: string): Promise<Stats | { kind: 'missing' } | Resolved> {
  try {
    return await stat(path);
  } catch (err) {
    if (isGone(err)) return { kind: 'missing' };
    if (isDenied(err)) return { kind: 'unreadable', path, code: String((err as NodeJS.ErrnoException).code) };
    throw err;
  }
}

/** The real path of `path`, or why it cannot be served (absent, or a symlink out of `root`). */
async function realInside(
  root: string,
  path: string,
): Promise<string | { kind: 'missing' } | { kind: 'forbidden' }> {
  let real: string;
  try {
    real = await realpath(path);
  } catch {
    return { kind: 'missing' };
  }
  if (real !== root && !real.startsWith(root + sep)) return { kind: 'forbidden' };
  return real;
}

async function precompressedVariant(
  root: string,
  path: string,
  acceptEncoding: string | undefined,
): Promise<{ token: string; path: string } | undefined> {
  if (!acceptEncoding) return undefined;
  for (const enc of encodings) {
    if (!accepts(acceptEncoding, enc.token)) continue;
    const real = await realInside(root, path + enc.suffix);
    if (typeof real !== 'string') continue;
    try {
      if ((await stat(real)).isFile()) return { token: enc.token, path: real };
    } catch {
      // vanished between realpath and stat: serve the identity file
    }
  }
  return undefined;
}

/** Whether an Accept-Encoding value accepts `token` (q=0 refuses; `*` accepts). */
export function accepts(header: string, token: string): boolean {
  let wildcard = false;
  for (const part of header.split(',')) {
    const [name = '', ...params] = part.trim().split(';');
    const coding = name.trim().toLowerCase();
    if (coding !== token && coding !== '*') continue;
    let q = 1;
    for (const p of params) {
      const [k, v] = p.split('=');
      if (k?.trim().toLowerCase() === 'q') q = Number(v);
    }
    if (coding === token) return q > 0;
    wildcard = q > 0;
  }
  return wildcard;
}

function pipeFile(
  c: Context,
  root: string,
  path: string,
  options: send.SendOptions,
  encoding: string | undefined,
): Promise<void> {
  const encoded = relative(root, path).split(sep).map(encodeURIComponent).join('/');
  return new Promise<void>((resolve, reject) => {
    const stream = send(c.req as Parameters<typeof send>[0], `/${encoded}`, options);
    if (encoding !== undefined) {
      // `send`'s ETag is size + mtime, which a variant may share with the
      // original (`gzip -k` keeps the mtime): name the encoding, so an ETag
      // (If-None-Match, If-Range) never matches another representation.
      stream.on('headers', (res: { setHeader(name: string, value: string): void }, _p: string, st: Stats) =>
        res.setHeader('etag', `W/"${st.size.toString(16)}-${st.mtime.getTime().toString(16)}-${encoding}"`),
      );
    }
    stream.on('error', (err: SendError) => {
      const status = err.status ?? 500;
      // The answer is already out (an empty file's head, ended at once by
      // holdToLength, whose read then failed: the file vanished meanwhile):
      // nothing more to say on it. Touching its headers would throw.
      if (c.res.headersSent || c.res.writableEnded) return resolve();
      if (status === 404) {
        // Gone between `send`'s stat and its open: its file headers are set by now.
        const res = c.res;
        for (const name of fileHeaders) res.removeHeader(name);
        res.statusCode = 200;
        return resolve(Promise.resolve(c.notFound()).then(ignore));
      }
      if (status === 416 || status === 412) {
        const res = c.res;
        // Vary stays: which representation the range missed depends on Accept-Encoding.
        for (const name of ['content-encoding', 'content-type']) res.removeHeader(name);
        for (const [name, value] of Object.entries(err.headers ?? {})) res.setHeader(name, value);
        res.statusCode = status;
        res.end();
        return resolve();
      }
      if (status === 403) return reject(new HypError('HYP_E_FORBIDDEN_PATH'));
      if (status === 400) return reject(new HypError('HYP_E_BAD_REQUEST', { detail: 'malformed path' }));
      if (isDenied(err)) return reject(unreadable(c, path, err.code));
      reject(err);
    });
    stream.on('directory', () => resolve(Promise.resolve(c.notFound()).then(ignore)));
    stream.on('stream', (body: ReadStream) => holdToLength(c, body));
    // 304, HEAD and full bodies all end with the response closing.
    c.closed().then(resolve);
    stream.pipe(c.res as Parameters<typeof stream.pipe>[0]);
  });
}

/**
 * `send` announces Content-Length from its stat, then reads the file: one
 * that changed in between must not put other bytes on the wire. Emitted
 * before `send` pipes `body`, so these listeners run before the pipe's.
 * - Announced empty: nothing is read. (`send` reads up to 1 byte then, and
 *   a file grown meanwhile would add it after the head, where an HTTP/1.1
 *   keep-alive client takes it for the start of the next response.)
 * - Shorter than announced (truncated): the response is cut — connection
 *   destroyed (HTTP/1.1), stream reset with INTERNAL_ERROR (HTTP/2) — rather
 *   than ended short, which left the client waiting for the missing bytes
 *   and would frame the next response on the connection as this body.
 * A longer file is no risk: `send` bounds the read at the announced length.
 */
function holdToLength(c: Context, body: ReadStream): void {
  const res = c.res;
  const announced = Number(res.getHeader('content-length'));
  if (announced === 0) {
    body.destroy();
    res.end();
    return;
  }
  let read = 0;
  body.on('data', (chunk: Buffer | string) => {
    read += Buffer.byteLength(chunk);
  });
  body.on('end', () => {
    if (read >= announced) return;
    const changed = new HypError('HYP_E_STATIC_FILE_CHANGED', { file: String(body.path), announced, read });
    c.log.warn({ code: changed.code }, changed.message);
    if (c.request.httpVersionMajor === 2)
      (res as Http2ServerResponse).stream.close(h2constants.NGHTTP2_INTERNAL_ERROR);
    else res.destroy();
  });
}

function ignore(): void {}
