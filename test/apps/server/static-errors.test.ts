/**
 * Static files that vanish or cannot be opened while a request resolves
 * them, and validators of precompressed variants. Races are made
 * deterministic by hooking the fs calls: `realpath` (node:fs/promises, used
 * by hyp's resolver) and `createReadStream` (node:fs, used by `send` right
 * after its own stat). Tests run as root, so a permission error is injected
 * rather than made with chmod.
 */
import fs, { mkdirSync, mkdtempSync, rmSync, unlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync } from 'node:zlib';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type Served, serve } from './serve.js';

const hooks: {
  /** Run after hyp's resolver `realpath`s a path (the resolved path is passed). */
  afterRealpath?: ((real: string) => void) | undefined;
  /** The resolver's `stat` of a path ending in `/<suffix>` fails with `code`. */
  failStat?: { suffix: string; code: string } | undefined;
} = {};

vi.mock('node:fs/promises', async (importOriginal) => {
  const original = await importOriginal<typeof import('node:fs/promises')>();
  const realpath = (async (path: fs.PathLike, options?: unknown) => {
    const real = await original.realpath(path, options as undefined);
    hooks.afterRealpath?.(String(real));
    return real;
  }) as typeof original.realpath;
  const stat = (async (path: fs.PathLike, options?: unknown) => {
    const fail = hooks.failStat;
    if (fail && String(path).endsWith(`/${fail.suffix}`))
      throw Object.assign(new Error(`${fail.code}: stat '${String(path)}'`), { code: fail.code });
    return original.stat(path, options as undefined);
  }) as typeof original.stat;
  return { ...original, default: { ...original, realpath, stat }, realpath, stat };
});

let dir: string;
let served: Served;

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), 'hyp-static-errors-'));
  served = await serve((app) => app.static('/s', dir));
});
afterAll(async () => {
  await served.close();
  rmSync(dir, { recursive: true, force: true });
});
afterEach(() => {
  hooks.afterRealpath = undefined;
  hooks.failStat = undefined;
  vi.restoreAllMocks();
});

interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: Buffer;
}

function get(path: string, headers: Record<string, string> = {}): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${served.url}${path}`, { headers }, (res) => {
      const parts: Buffer[] = [];
      res.on('data', (d: Buffer) => parts.push(d));
      res.on('end', () =>
        resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(parts) }),
      );
    });
    req.on('error', reject);
    req.end();
  });
}

const code = (a: Answer) => (JSON.parse(a.body.toString()) as { error: { code: string } }).error.code;

/** Delete `name` right after the resolver has `realpath`ed it (before its `stat`). */
function deleteAfterRealpath(name: string): void {
  hooks.afterRealpath = (real) => {
    if (real.endsWith(`/${name}`)) unlinkSync(real);
  };
}

/** Make `send`'s open of a path ending in `/<name>` fail with `code`, as the kernel would. */
function failOpen(name: string, errno: string): void {
  const original = fs.createReadStream;
  vi.spyOn(fs, 'createReadStream').mockImplementation(((path: fs.PathLike, options?: object) => {
    if (!String(path).endsWith(`/${name}`)) return original(path, options as undefined);
    const open = (_p: unknown, _f: unknown, _m: unknown, cb: (err: Error) => void) =>
      process.nextTick(cb, Object.assign(new Error(`${errno}: open '${String(path)}'`), { code: errno }));
    return original(path, { ...options, fs: { ...fs, open } } as Parameters<typeof original>[1]);
  }) as typeof fs.createReadStream);
}

describe('a static file that vanishes while it is resolved', () => {
  it('deleted between realpath and stat: 404, not 500', async () => {
    writeFileSync(join(dir, 'gone.txt'), 'here a moment ago');
    deleteAfterRealpath('gone.txt');
    const res = await get('/s/gone.txt');
    expect([res.status, code(res)]).toEqual([404, 'HYP_E_NOT_FOUND']);
  });

  it('an index file deleted between realpath and stat: 404, not 500', async () => {
    mkdirSync(join(dir, 'docs'));
    writeFileSync(join(dir, 'docs', 'index.html'), '<p>index</p>');
    deleteAfterRealpath('docs/index.html');
    const res = await get('/s/docs/');
    expect([res.status, code(res)]).toEqual([404, 'HYP_E_NOT_FOUND']);
  });

  it('a precompressed variant deleted between send’s stat and open: a plain 404, none of the file’s headers', async () => {
    writeFileSync(join(dir, 'v.js'), 'x'.repeat(200));
    writeFileSync(join(dir, 'v.js.gz'), gzipSync('x'.repeat(200)));
    const original = fs.createReadStream;
    vi.spyOn(fs, 'createReadStream').mockImplementation(((path: fs.PathLike, options?: object) => {
      if (String(path).endsWith('/v.js.gz')) unlinkSync(String(path));
      return original(path, options as undefined);
    }) as typeof fs.createReadStream);
    const res = await get('/s/v.js', { 'accept-encoding': 'gzip', range: 'bytes=0-9' });
    expect([res.status, code(res)]).toEqual([404, 'HYP_E_NOT_FOUND']);
    // Before: the JSON body went out as `Content-Encoding: gzip` with the file's ETag and Content-Range.
    for (const name of ['content-encoding', 'content-range', 'etag', 'last-modified', 'accept-ranges'])
      expect(res.headers[name], name).toBeUndefined();
    expect(res.headers['content-type']).toMatch(/^application\/json/);
  });
});

describe('a static file that exists but cannot be read', () => {
  it('open fails with EACCES: 403 HYP_E_STATIC_UNREADABLE, no file headers', async () => {
    writeFileSync(join(dir, 'locked.txt'), 'secret');
    failOpen('locked.txt', 'EACCES');
    const res = await get('/s/locked.txt');
    expect([res.status, code(res)]).toEqual([403, 'HYP_E_STATIC_UNREADABLE']);
    expect(res.body.toString()).not.toContain(dir); // no filesystem path in the answer
    expect(res.headers.etag).toBeUndefined();
  });

  it('open fails with EPERM: the same 403', async () => {
    writeFileSync(join(dir, 'locked2.txt'), 'secret');
    failOpen('locked2.txt', 'EPERM');
    const res = await get('/s/locked2.txt');
    expect([res.status, code(res)]).toEqual([403, 'HYP_E_STATIC_UNREADABLE']);
  });

  it('stat fails with EACCES in the resolver: the same 403', async () => {
    writeFileSync(join(dir, 'locked3.txt'), 'secret');
    hooks.failStat = { suffix: 'locked3.txt', code: 'EACCES' };
    const res = await get('/s/locked3.txt');
    expect([res.status, code(res)]).toEqual([403, 'HYP_E_STATIC_UNREADABLE']);
  });
});

describe('validators of precompressed variants', () => {
  const plain = 'abcdefghijklmnopqrstuvwxyz'.repeat(8);
  const mtime = new Date('2024-01-02T03:04:05Z');
  const lastModified = 'Tue, 02 Jan 2024 03:04:05 GMT';

  beforeAll(() => {
    // `gzip -k` keeps the original's mtime on the variant.
    writeFileSync(join(dir, 'p.txt'), plain);
    writeFileSync(join(dir, 'p.txt.gz'), gzipSync(plain));
    writeFileSync(join(dir, 'solo.txt'), plain);
    for (const name of ['p.txt', 'p.txt.gz', 'solo.txt']) utimesSync(join(dir, name), mtime, mtime);
  });

  it('both variants carry the same Last-Modified (the premise)', async () => {
    const identity = await get('/s/p.txt');
    const gz = await get('/s/p.txt', { 'accept-encoding': 'gzip' });
    expect(identity.headers['last-modified']).toBe(lastModified);
    expect(gz.headers['last-modified']).toBe(lastModified);
    expect(gz.headers['content-encoding']).toBe('gzip');
  });

  it('a date If-Range from an identity download is not honoured for the gzip variant: 200 with the whole variant', async () => {
    const res = await get('/s/p.txt', {
      'accept-encoding': 'gzip',
      range: 'bytes=10-',
      'if-range': lastModified,
    });
    // Before: 206 with bytes 10.. of the gzip file, which the client appended to its identity bytes.
    expect(res.status).toBe(200);
    expect(res.headers['content-encoding']).toBe('gzip');
    expect(res.headers['content-range']).toBeUndefined();
    expect(res.body.equals(gzipSync(plain))).toBe(true);
  });

  it('a date If-Range from a gzip download is not honoured for the identity file either', async () => {
    const res = await get('/s/p.txt', { range: 'bytes=10-', 'if-range': lastModified });
    expect(res.status).toBe(200);
    expect(res.body.toString()).toBe(plain);
  });

  it('a date If-Range is still honoured for a file without variants', async () => {
    const res = await get('/s/solo.txt', {
      'accept-encoding': 'gzip',
      range: 'bytes=10-',
      'if-range': lastModified,
    });
    expect(res.status).toBe(206);
    expect(res.body.toString()).toBe(plain.slice(10));
  });

  it('an ETag If-Range still gives 206 for the same variant', async () => {
    const gz = await get('/s/p.txt', { 'accept-encoding': 'gzip' });
    const res = await get('/s/p.txt', {
      'accept-encoding': 'gzip',
      range: 'bytes=10-',
      'if-range': String(gz.headers.etag),
    });
    expect(res.status).toBe(206);
    expect(res.body.equals(gzipSync(plain).subarray(10))).toBe(true);
  });

  it('the variant’s ETag differs from the identity ETag even when both files have the same size', async () => {
    // The ETag is size + mtime: a variant of the same size and mtime had the identity's ETag.
    const same = Buffer.alloc(plain.length, 7);
    writeFileSync(join(dir, 'same.txt'), plain);
    writeFileSync(join(dir, 'same.txt.gz'), same);
    for (const name of ['same.txt', 'same.txt.gz']) utimesSync(join(dir, name), mtime, mtime);
    const identity = await get('/s/same.txt');
    const gz = await get('/s/same.txt', { 'accept-encoding': 'gzip' });
    expect(gz.headers.etag).not.toBe(identity.headers.etag);
    const res = await get('/s/same.txt', {
      'accept-encoding': 'gzip',
      range: 'bytes=10-',
      'if-range': String(identity.headers.etag),
    });
    expect(res.status).toBe(200);
    expect(res.body.equals(same)).toBe(true);
  });
});
