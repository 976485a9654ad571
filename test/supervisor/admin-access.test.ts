/**
 * POST /drain and POST /restart: loopback, or the bearer token from
 * admin.token_file; anything else is 403 and changes nothing. The remote
 * caller is a real second host (a network namespace on a veth pair).
 */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createTestHost, type TestHost } from '../helpers/netns.js';
import { fixtureApp, type Running, startSupervisor } from '../helpers/supervisor.js';

let host: TestHost;
let sup: Running;
const token = 's3cret-token-for-tests';

beforeAll(async () => {
  host = createTestHost();
  const dir = mkdtempSync(join(tmpdir(), 'hyp-token-'));
  writeFileSync(join(dir, 'token'), `${token}\n`);
  sup = await startSupervisor({
    app: fixtureApp('basic'),
    workers: 1,
    sets: ['admin.addr=0.0.0.0:0', `admin.token_file=${join(dir, 'token')}`],
  });
});

afterAll(async () => {
  await sup?.stop();
  host?.remove();
});

function remote(method: string, path: string, headers: string[] = []): { status: number; body: string } {
  const out = host.exec('curl', [
    '-s',
    '-m',
    '10',
    '-X',
    method,
    ...headers.flatMap((h) => ['-H', h]),
    '-w',
    '\n%{http_code}',
    `http://${host.hostAddr}:${sup.adminPort}${path}`,
  ]);
  const nl = out.lastIndexOf('\n');
  return { status: Number(out.slice(nl + 1)), body: out.slice(0, nl) };
}

describe('admin access from a non-loopback address', () => {
  it('GET routes answer anyone', () => {
    expect(remote('GET', '/health').status).toBe(200);
    expect(remote('GET', '/ready').status).toBe(200);
  });

  it('POST /drain without the token: 403 with a catalog code, and no drain', async () => {
    const r = remote('POST', '/drain');
    expect(r.status).toBe(403);
    expect(JSON.parse(r.body)).toMatchObject({ error: { code: 'HYP_E_FORBIDDEN' } });
    const wrong = remote('POST', '/drain', [`Authorization: Bearer ${token}x`]);
    expect(wrong.status).toBe(403);
    const s = await sup.status();
    expect(s.state).toBe('ready');
    expect((await sup.admin('/ready')).status).toBe(200);
  });

  it('a refused call is logged by its path: a query string (a token put in the URL) stays out of the log', async () => {
    expect(remote('POST', `/restart?token=${token}-in-the-url`).status).toBe(403);
    const line = await sup.waitLog(
      (l) =>
        l.msg === 'admin action refused: not loopback, no valid token' &&
        String(l.path ?? l.url).startsWith('/restart'),
      'refusal',
    );
    expect(line.path).toBe('/restart');
    expect(JSON.stringify(sup.logs)).not.toContain(`${token}-in-the-url`);
  });

  it('POST /restart without the token: 403; with it: accepted', async () => {
    expect(remote('POST', '/restart').status).toBe(403);
    expect((await sup.status()).generation).toBe(1);
    const ok = remote('POST', '/restart?wait=1', [`Authorization: Bearer ${token}`]);
    expect(ok.status).toBe(200);
    expect((await sup.status()).generation).toBe(2);
  });

  it('POST /drain with the token: 202 and the pod drains', async () => {
    const r = remote('POST', '/drain', [`Authorization: Bearer ${token}`]);
    expect(r.status).toBe(202);
    expect((await sup.exited).code).toBe(0);
  });
});
