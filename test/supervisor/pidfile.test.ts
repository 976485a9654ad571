import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { isHypError } from '../../supervisor/errors.js';
import { readPidFile, removePidFile, writePidFile } from '../../supervisor/pidfile.js';

const tmp = () => mkdtempSync(join(tmpdir(), 'hyp-pid-'));

describe('PID file', () => {
  it('is written atomically with our pid and removed only by its owner', () => {
    const file = join(tmp(), 'hyp.pid');
    writePidFile(file);
    expect(readFileSync(file, 'utf8')).toBe(`${process.pid}\n`);
    removePidFile(file, process.pid + 1);
    expect(readPidFile(file)).toBe(process.pid);
    removePidFile(file);
    expect(readPidFile(file)).toBeUndefined();
  });

  it('replaces a stale file naming a dead process', async () => {
    const file = join(tmp(), 'hyp.pid');
    const child = spawn(process.execPath, ['-e', '0']);
    const dead = child.pid!;
    await new Promise((r) => child.once('exit', r));
    writeFileSync(file, `${dead}\n`);
    writePidFile(file);
    expect(readPidFile(file)).toBe(process.pid);
  });

  it('replaces a file naming a live process that is not a hyp supervisor (pid reuse)', () => {
    const file = join(tmp(), 'hyp.pid');
    writeFileSync(file, '1\n');
    writePidFile(file);
    expect(readPidFile(file)).toBe(process.pid);
  });

  it('refuses to start over a live hyp supervisor', async () => {
    const file = join(tmp(), 'hyp.pid');
    // A process whose command line looks like `hyp run ...`.
    const fake = spawn(process.execPath, ['-e', 'setTimeout(() => {}, 30000)', '--', '/x/hyp', 'run'], {
      stdio: 'ignore',
    });
    try {
      await new Promise((r) => setTimeout(r, 100));
      writeFileSync(file, `${fake.pid}\n`);
      let error: unknown;
      try {
        writePidFile(file);
      } catch (err) {
        error = err;
      }
      expect(isHypError(error, 'HYP_E_PIDFILE_LIVE')).toBe(true);
      expect(String((error as Error).message)).toContain(String(fake.pid));
      expect(readPidFile(file)).toBe(fake.pid);
    } finally {
      fake.kill('SIGKILL');
    }
  });
});
