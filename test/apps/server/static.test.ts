import { mkdirSync, mkdtempSync, rmSync, symlinkSync, utimesSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { brotliCompressSync, gzipSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { problem, type Served, serve } from './serve.js';

const secret = 'TOP-SECRET-OUTSIDE-CONTENT';
const appJs = 'console.log("hello from app.js");\n'.repeat(20);
let tmp: string;
let served: Served;
let url: string;

beforeAll(async () => {
  tmp = mkdtempSync(join(tmpdir(), 'hyp-static-'));
  const pub = join(tmp, 'public');
  const outside = join(tmp, 'outside');
  mkdirSync(join(pub, 'sub'), { recursive: true });
  mkdirSync(outside);
  writeFileSync(join(pub, 'index.html'), '<h1>home page</h1>');
  writeFileSync(join(pub, 'a.txt'), 'abcdefghijklmnopqrstuvwxyz');
  writeFileSync(join(pub, 'style.css'), 'body{}');
  writeFileSync(join(pub, 'sub', 'index.html'), '<p>sub index</p>');
  writeFileSync(join(pub, '.env'), secret);
  writeFileSync(join(pub, 'app.js'), appJs);
  writeFileSync(join(pub, 'app.js.br'), brotliCompressSync(appJs));
  writeFileSync(join(pub, 'app.js.gz'), gzipSync(appJs));
  writeFileSync(join(outside, 'secret.txt'), secret);
  symlinkSync(join(outside, 'secret.txt'), join(pub, 'link.txt'));
  symlinkSync(outside, join(pub, 'linkdir'));
  symlinkSync(join(pub, 'a.txt'), join(pub, 'inside-link.txt'));
  const old = new Date('2024-01-02T03:04:05Z');
  utimesSync(join(pub, 'a.txt'), old, old);
  served = await serve((app) => {
    app.static('/static', pub);
    app.get('/', (c) => c.text('root'));
  });
  url = served.url;
});

afterAll(async () => {
  await served.close();
  rmSync(tmp, { recursive: true, force: true });
});

/** A raw request: the path goes on the wire exactly as written (fetch would normalise `..`). */
function raw(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string; headers: import('node:http').IncomingHttpHeaders }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(`${url}/`, { path, headers }, (res) => {
      let body = '';
      res.setEncoding('latin1');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode!, body, headers: res.headers }));
    });
    req.on('error', reject);
    req.end();
  });
}

describe('static files', () => {
  it('serves a file with its content type, ETag and Last-Modified', async () => {
    const res = await fetch(`${url}/static/a.txt`);
    expect(res.status).toBe(200);
    expect(res.headers.get('content-type')).toBe('text/plain; charset=utf-8');
    expect(res.headers.get('etag')).toBeTruthy();
    expect(res.headers.get('last-modified')).toBe('Tue, 02 Jan 2024 03:04:05 GMT');
    expect(await res.text()).toBe('abcdefghijklmnopqrstuvwxyz');
    expect((await fetch(`${url}/static/style.css`)).headers.get('content-type')).toBe(
      'text/css; charset=utf-8',
    );
  });

  // Raw requests: fetch adds `cache-control: no-cache` to conditional requests, which rightly defeats 304.
  it('answers 304 to If-None-Match and If-Modified-Since', async () => {
    const first = await raw('/static/a.txt');
    const etag = String(first.headers.etag);
    const byEtag = await raw('/static/a.txt', { 'if-none-match': etag });
    expect(byEtag.status).toBe(304);
    expect(byEtag.body).toBe('');
    const byDate = await raw('/static/a.txt', { 'if-modified-since': 'Wed, 03 Jan 2024 00:00:00 GMT' });
    expect(byDate.status).toBe(304);
    const changed = await raw('/static/a.txt', { 'if-none-match': '"other"' });
    expect(changed.status).toBe(200);
  });

  it('answers Range with 206 and an unsatisfiable range with 416', async () => {
    const part = await fetch(`${url}/static/a.txt`, { headers: { range: 'bytes=2-5' } });
    expect(part.status).toBe(206);
    expect(part.headers.get('content-range')).toBe('bytes 2-5/26');
    expect(await part.text()).toBe('cdef');
    const bad = await fetch(`${url}/static/a.txt`, { headers: { range: 'bytes=100-200' } });
    expect(bad.status).toBe(416);
    expect(bad.headers.get('content-range')).toBe('bytes */26');
  });

  it('serves index.html for a directory and redirects the slash-less directory URL', async () => {
    expect(await (await fetch(`${url}/static/`)).text()).toBe('<h1>home page</h1>');
    expect(await (await fetch(`${url}/static/sub/`)).text()).toBe('<p>sub index</p>');
    const bare = await fetch(`${url}/static/sub?x=1`, { redirect: 'manual' });
    expect([bare.status, bare.headers.get('location')]).toEqual([301, '/static/sub/?x=1']);
    const top = await fetch(`${url}/static`, { redirect: 'manual' });
    expect([top.status, top.headers.get('location')]).toEqual([301, '/static/']);
  });

  it("takes a last `.` segment as a trailing slash: no file under it, a directory's index", async () => {
    for (const path of [
      '/static/a.txt/.',
      '/static/a.txt/%2e',
      '/static/a.txt/',
      '/static/sub/index.html/.',
    ]) {
      const answer = await raw(path);
      expect([path, answer.status]).toEqual([path, 404]);
      expect(answer.body).not.toContain('abcdefghij');
      expect(answer.body).not.toContain('sub index');
    }
    expect((await raw('/static/sub/.')).body).toBe('<p>sub index</p>');
    expect((await raw('/static/.')).body).toBe('<h1>home page</h1>');
    expect((await raw('/static/sub/./index.html')).body).toBe('<p>sub index</p>');
  });

  it('strips the prefix by path segments: a percent-encoded prefix serves the same file', async () => {
    // The router matches the decoded path; cutting the raw URL by the prefix's length gave `tic/a.txt`.
    const encoded = await raw('/%73tatic/a.txt');
    expect([encoded.status, encoded.body]).toEqual([200, 'abcdefghijklmnopqrstuvwxyz']);
    const dir = await raw('/%73tatic/sub/');
    expect([dir.status, dir.body]).toEqual([200, '<p>sub index</p>']);
    const bare = await raw('/%73tatic');
    expect([bare.status, bare.headers.location]).toEqual([301, '/%73tatic/']);
  });

  it('serves an absolute-form request target (GET http://host/static/a.txt) as its origin form', async () => {
    const absolute = await raw('http://example.test/static/a.txt');
    expect([absolute.status, absolute.body]).toEqual([200, 'abcdefghijklmnopqrstuvwxyz']);
    const dir = await raw('http://example.test/static/sub');
    expect([dir.status, dir.headers.location]).toEqual([301, '/static/sub/']);
  });

  it('answers HEAD with the headers of GET and no body', async () => {
    const res = await fetch(`${url}/static/a.txt`, { method: 'HEAD' });
    expect(res.status).toBe(200);
    expect(res.headers.get('content-length')).toBe('26');
    expect(await res.text()).toBe('');
  });

  it('serves the precompressed .br or .gz sibling when the client accepts it', async () => {
    const br = await raw('/static/app.js', { 'accept-encoding': 'gzip, br' });
    expect(br.status).toBe(200);
    const brRes = await fetch(`${url}/static/app.js`, { headers: { 'accept-encoding': 'br' } });
    expect(brRes.headers.get('content-encoding')).toBe('br');
    expect(brRes.headers.get('content-type')).toBe('text/javascript; charset=utf-8');
    expect(brRes.headers.get('vary')).toBe('Accept-Encoding');
    expect(await brRes.text()).toBe(appJs); // fetch decodes br
    const gz = await fetch(`${url}/static/app.js`, { headers: { 'accept-encoding': 'br;q=0, gzip' } });
    expect(gz.headers.get('content-encoding')).toBe('gzip');
    expect(await gz.text()).toBe(appJs);
    const identity = await raw('/static/app.js', { 'accept-encoding': 'identity' });
    expect(identity.body).toBe(appJs);
  });

  it('follows a symlink that stays inside the directory', async () => {
    expect(await (await fetch(`${url}/static/inside-link.txt`)).text()).toBe('abcdefghijklmnopqrstuvwxyz');
  });

  it('answers 404 for a missing file and for dotfiles', async () => {
    const missing = await fetch(`${url}/static/nope.txt`);
    expect(missing.status).toBe(404);
    expect((await problem(missing)).code).toBe('HYP_E_NOT_FOUND');
    const dot = await raw('/static/.env');
    expect(dot.status).toBe(404);
    expect(dot.body).not.toContain(secret);
  });

  const attempts = [
    '/static/../outside/secret.txt',
    '/static/../../outside/secret.txt',
    '/static/%2e%2e/outside/secret.txt',
    '/static/%2E%2E%2Foutside%2Fsecret.txt',
    '/static/%252e%252e%252foutside%252fsecret.txt',
    '/static/..%5coutside%5csecret.txt',
    '/static/..\\outside\\secret.txt',
    '/static/%5c..%5c..%5coutside%5csecret.txt',
    '/static/sub/../../outside/secret.txt',
    '/static/link.txt',
    '/static/linkdir/secret.txt',
    '/static/linkdir/',
    '/static//etc/passwd',
    '/static/%2f%2e%2e%2f%2e%2e%2foutside/secret.txt',
  ];
  for (const path of attempts) {
    it(`refuses ${path} with 403 or 404 and never the file`, async () => {
      const res = await raw(path);
      expect([403, 404]).toContain(res.status);
      expect(res.body).not.toContain(secret);
      expect(res.body).not.toContain('root:');
    });
  }

  it('answers 400 for a NUL byte or broken percent-encoding', async () => {
    expect((await raw('/static/a.txt%00.html')).status).toBe(400);
    expect((await raw('/static/%E0%A4%A')).status).toBe(400);
  });

  it('never answers file contents outside the directory for any mix of traversal pieces', async () => {
    const pieces = [
      '..',
      '%2e%2e',
      '%2E%2e',
      '%252e%252e',
      '.',
      '%2e',
      '%2f',
      '%252f',
      '%5c',
      '\\',
      '/',
      '//',
      'outside',
      'secret.txt',
      'link.txt',
      'linkdir',
      'sub',
      '%00',
    ];
    await fc.assert(
      fc.asyncProperty(
        fc.array(fc.constantFrom(...pieces), { minLength: 1, maxLength: 8 }),
        async (parts) => {
          const res = await raw(`/static/${parts.join('')}`);
          expect(res.body).not.toContain(secret);
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('static files at the root prefix', () => {
  it('redirects a directory without a protocol-relative Location', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'hyp-static-root-'));
    mkdirSync(join(dir, 'evil.com'));
    writeFileSync(join(dir, 'evil.com', 'index.html'), 'x');
    const root = await serve((app) => app.static('/', dir));
    try {
      const res = await new Promise<{ status: number; location: string | undefined }>((resolve, reject) => {
        const req = httpRequest(`${root.url}/`, { path: '//evil.com' }, (r) => {
          r.resume();
          resolve({ status: r.statusCode!, location: r.headers.location });
        });
        req.on('error', reject);
        req.end();
      });
      expect(res).toEqual({ status: 301, location: '/evil.com/' });
    } finally {
      await root.close();
      rmSync(dir, { recursive: true, force: true });
    }
  });
});
