/**
 * Remote verbs with --admin: a bad URL, an admin answer cut short, and
 * config errors given on the same command line all fail with one clear
 * line and a catalog code, never a bare exception or a silent exit 0.
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli } from '../helpers/supervisor.js';

/** Run the CLI without blocking this process (a fake admin server may have to answer it). */
function hyp(args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  const cwd = mkdtempSync(join(tmpdir(), 'hyp-cwd-'));
  const child = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (c: Buffer) => {
    stdout += c.toString();
  });
  child.stderr.on('data', (c: Buffer) => {
    stderr += c.toString();
  });
  const timer = setTimeout(() => child.kill('SIGKILL'), 30_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

let fake: Server | undefined;
afterEach(async () => {
  await new Promise((r) => (fake ? fake.close(r) : r(undefined)));
  fake = undefined;
});

/** An "admin server" that sends the headers and part of the body, then closes. */
async function truncatingAdmin(): Promise<number> {
  fake = createServer((socket) => {
    socket.on('error', () => {});
    socket.once('data', () => {
      socket.write(
        'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 200\r\n\r\n{"state":',
      );
      setTimeout(() => socket.end(), 20);
    });
  });
  await new Promise<void>((r) => fake!.listen(0, '127.0.0.1', () => r()));
  return (fake.address() as { port: number }).port;
}

describe('hyp <verb> --admin URL', () => {
  for (const bad of ['garbage', 'https://127.0.0.1:9090', 'ftp://127.0.0.1', 'http://[::1']) {
    it(`refuses --admin ${bad} with HYP_E_USAGE (exit 64) naming the option`, async () => {
      const r = await hyp(['status', '--admin', bad]);
      expect(r.code).toBe(64);
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(/HYP_E_USAGE: --admin .*expected an http:\/\/ URL/);
    });
  }

  it('an admin answer cut off mid-body fails with HYP_E_ADMIN_REQUEST, exit 1 (not a silent exit 0)', async () => {
    const port = await truncatingAdmin();
    for (const verb of ['status', 'health', 'restart']) {
      const r = await hyp([verb, '--admin', `http://127.0.0.1:${port}`]);
      expect({ verb, code: r.code }).toEqual({ verb, code: 1 });
      expect(r.stderr.trim().split('\n')).toHaveLength(1);
      expect(r.stderr).toMatch(
        /HYP_E_ADMIN_REQUEST: admin request \w+ http:\/\/127\.0\.0\.1:\d+\/\w+.* failed/,
      );
    }
  });

  it('a bad --set next to --admin is still a config error: exit 2 naming the key path', async () => {
    const r = await hyp(['status', '--admin', 'http://127.0.0.1:1', '--set', 'supervisor.workers=lots']);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/supervisor\.workers: got "lots"/);
  });
});
