/**
 * CLI claims of the README checked against the real `hyp` binary (docs audit).
 */
import { spawn, spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { cli, type Running, root, startSupervisor } from '../helpers/supervisor.js';

/** Run `hyp args` with a stdout whose reader has already gone (`hyp errors | head -1` once head exited). */
function hypIntoClosedPipe(args: string[]): Promise<{ code: number | null; stderr: string }> {
  const cwd = mkdtempSync(join(tmpdir(), 'hyp-cwd-'));
  const child = spawn(process.execPath, [cli, ...args], { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  // Close our end before the child writes: every write it makes then fails with EPIPE.
  child.stdout.destroy();
  let stderr = '';
  child.stderr.setEncoding('utf8');
  child.stderr.on('data', (d: string) => {
    stderr += d;
  });
  return new Promise((resolve) => child.on('close', (code) => resolve({ code, stderr })));
}

describe('hyp output piped into a reader that stops early (`npx hyp errors | head`)', () => {
  for (const verb of ['errors', 'schema', 'version']) {
    it(`hyp ${verb}: ends quietly with exit 0, no stack trace`, async () => {
      const { code, stderr } = await hypIntoClosedPipe([verb]);
      expect(stderr).toBe('');
      expect(code).toBe(0);
    });
  }
});

describe('hyp run <app.ts> finds the compiled copy under dist/', () => {
  let sup: Running | undefined;
  afterEach(async () => {
    await sup?.stop();
    sup = undefined;
  });

  it('for an absolute path too, from any working directory', async () => {
    sup = await startSupervisor({ app: join(root, 'apps', 'demo', 'app.ts'), workers: 1 });
    const res = await fetch(`http://127.0.0.1:${sup.httpPort}/api/ping`);
    expect([res.status, await res.text()]).toEqual([200, 'pong']);
  });

  it.skipIf(Boolean((process.features as { typescript?: unknown }).typescript))(
    'a .ts app without one on a Node that cannot load TypeScript: exit 2 before any worker, saying so',
    () => {
      const cwd = mkdtempSync(join(tmpdir(), 'hyp-cwd-'));
      writeFileSync(join(cwd, 'app.ts'), 'export default 1;\n');
      const r = spawnSync(
        process.execPath,
        [cli, 'run', join(cwd, 'app.ts'), '--set', 'server.addr=127.0.0.1:0'],
        {
          cwd,
          encoding: 'utf8',
          timeout: 30_000,
        },
      );
      expect(r.status).toBe(2);
      expect(r.stderr).toContain('HYP_E_APP_NOT_FOUND');
      expect(r.stderr).toContain('no compiled copy');
    },
  );
});
