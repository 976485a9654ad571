/**
 * The demo `npm start` runs, as users first meet it: its routes served by a
 * real supervisor and worker, its `public` directory mounted at `/static`.
 */
import { readFileSync } from 'node:fs';
import { get } from 'node:http';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type Running, root, startSupervisor } from '../helpers/supervisor.js';

let sup: Running;
let base: string;
beforeAll(async () => {
  sup = await startSupervisor({ workers: 1 });
  base = `http://127.0.0.1:${sup.httpPort}`;
});
afterAll(async () => {
  await sup?.stop();
});

/**
 * A GET with the path sent byte for byte (fetch would normalise `..`) and only
 * the given headers (fetch adds `cache-control: no-cache` to a conditional request).
 */
function rawGet(
  path: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    get({ host: '127.0.0.1', port: sup.httpPort, path, headers }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (d: string) => {
        body += d;
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    }).once('error', reject);
  });
}

describe('the demo app under the supervisor', () => {
  it('redirects / to its page at /static/, which serves apps/demo/public/index.html', async () => {
    const home = await fetch(`${base}/`, { redirect: 'manual' });
    expect(home.status).toBe(302);
    expect(home.headers.get('location')).toBe('/static/');

    const page = await fetch(`${base}/static/`);
    expect(page.status).toBe(200);
    expect(page.headers.get('content-type')).toMatch(/^text\/html/);
    const html = await page.text();
    expect(html).toBe(readFileSync(join(root, 'apps', 'demo', 'public', 'index.html'), 'utf8'));
    expect(html.length).toBeGreaterThanOrEqual(10);

    const etag = page.headers.get('etag');
    expect(etag).toBeTruthy();
    const again = await rawGet('/static/index.html', { 'if-none-match': etag! });
    expect(again).toEqual({ status: 304, body: '' });
  });

  it('answers /api/ping, /api/worker and /api/slow, with a request id on each', async () => {
    const ping = await fetch(`${base}/api/ping`);
    expect(await ping.text()).toBe('pong');
    expect(ping.headers.get('x-request-id')).toMatch(/\S/);

    const worker = (await (await fetch(`${base}/api/worker`)).json()) as { pid: number; generation: number };
    const status = await sup.status();
    expect(status.workers.map((w) => w.pid)).toContain(worker.pid);
    expect(worker.generation).toBe(status.generation);

    const slow = await fetch(`${base}/api/slow?ms=20`, { headers: { 'x-request-id': 'demo-test-1' } });
    expect(await slow.text()).toBe('done');
    expect(slow.headers.get('x-request-id')).toBe('demo-test-1');

    const bad = await fetch(`${base}/api/slow?ms=soon`);
    expect(bad.status).toBe(400);
    expect(((await bad.json()) as { error: { code: string } }).error.code).toBe('HYP_E_BAD_REQUEST');
  });

  it('never serves a file outside apps/demo/public', async () => {
    const secret = readFileSync(join(root, 'package.json'), 'utf8');
    for (const path of [
      '/static/../package.json',
      '/static/..%2f..%2f..%2fpackage.json',
      '/static/%252e%252e%252fpackage.json',
      '/static/..%5c..%5cpackage.json',
    ]) {
      const res = await rawGet(path);
      expect([400, 403, 404], path).toContain(res.status);
      expect(res.body.includes('"name"'), path).toBe(false);
      expect(res.body).not.toBe(secret);
    }
  });
});
