/**
 * CLI claims of the README checked against the real `hyp` binary (docs audit).
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../helpers/supervisor.js';

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
