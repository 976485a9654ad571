/**
 * The PID file: written atomically (temp file in the same directory, then
 * rename) so a reader never sees a partial number. A file naming a dead
 * process, or a live process that is not a hyp supervisor (PID reuse), is
 * stale and replaced; one naming a live hyp supervisor stops the start.
 */
import { readFileSync, renameSync, unlinkSync, writeFileSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { HypError } from './errors.js';

export function readPidFile(file: string): number | undefined {
  try {
    const pid = Number.parseInt(readFileSync(file, 'utf8').trim(), 10);
    return Number.isInteger(pid) && pid > 0 ? pid : undefined;
  } catch {
    return undefined;
  }
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Best effort: does /proc say this pid runs the hyp supervisor? */
export function isHypSupervisor(pid: number): boolean {
  try {
    const cmdline = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    return cmdline.some((arg) => /(^|\/)(hyp|cli\.js)$/.test(arg)) && cmdline.includes('run');
  } catch {
    // No /proc (not Linux): trust liveness.
    return isAlive(pid);
  }
}

export function writePidFile(file: string, pid = process.pid): void {
  const existing = readPidFile(file);
  if (existing !== undefined && existing !== pid && isAlive(existing) && isHypSupervisor(existing)) {
    throw new HypError('HYP_E_PIDFILE_LIVE', { file, pid: existing });
  }
  const tmp = join(dirname(file), `.${basename(file)}.${pid}.tmp`);
  try {
    writeFileSync(tmp, `${pid}\n`, { mode: 0o644 });
    renameSync(tmp, file);
  } catch (err) {
    try {
      unlinkSync(tmp);
    } catch {}
    throw new HypError('HYP_E_PIDFILE_DIR', { dir: dirname(file), detail: (err as Error).message });
  }
}

/** Remove the file only if it still names us (a successor may own it). */
export function removePidFile(file: string, pid = process.pid): void {
  if (readPidFile(file) !== pid) return;
  try {
    unlinkSync(file);
  } catch {}
}
