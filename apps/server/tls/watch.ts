/**
 * Watch a few files for replacement, debounced. The directories are watched,
 * not the files: editors and `kubectl`-mounted secrets replace a file by
 * rename (Kubernetes swaps a `..data` symlink atomically), which a watch on
 * the old inode would never report. Any event in a watched directory
 * schedules one callback after `debounceMs` of quiet, or `maxHoldMs` after
 * the first event when the directory is never quiet; the callback decides
 * whether the contents really changed.
 *
 * Some rotations raise no event in those directories: a directory reached
 * through a symlink that a deploy swaps (`current -> releases/v2`: the event
 * is in the parent, the watch stays on the old target), or a filesystem
 * whose remote changes inotify never reports (NFS, many FUSE and CSI
 * mounts). So the files' identity (stat, following symlinks: device, inode,
 * size, times) is also compared every `pollMs`; a difference is handled as
 * an event. That check is asynchronous, one at a time: a `stat` stuck on a
 * hung NFS server holds one libuv thread, never the event loop.
 */
import { type FSWatcher, statSync, watch } from 'node:fs';
import { stat } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

const rewatchMs = 1000;
/**
 * The longest a burst of events may hold the callback back. Each event
 * restarts the debounce, and a directory that also holds a file written
 * every few milliseconds (a log, a pid file) would otherwise never be quiet
 * long enough for a reload.
 */
const maxHoldMs = 2000;
/** Default period of the identity check (a few `stat` calls). */
const defaultPollMs = 1000;

/** What `stat` says of a file: changes when it is rewritten, replaced or reached through a new link. */
function identityOf(file: string): Promise<string> {
  return stat(file, { bigint: true }).then(
    (s) => `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}`,
    (err: NodeJS.ErrnoException) => err.code ?? 'unreadable',
  );
}

/** A directory's identity: a watch follows the inode, not the name. */
function inodeOf(dir: string): number | undefined {
  try {
    return statSync(dir).ino;
  } catch {
    return undefined;
  }
}

export class FileWatch {
  private readonly watchers = new Map<string, { watcher: FSWatcher; ino: number | undefined }>();
  private readonly retries = new Map<string, NodeJS.Timeout>();
  private timer: NodeJS.Timeout | undefined;
  /** When the first event of the burst being debounced came (`Date.now()`). */
  private burstSince: number | undefined;
  private readonly poll: NodeJS.Timeout;
  private readonly files: string[];
  /** The files' identity last seen (undefined until the first check). */
  private identity: string | undefined;
  private checking = false;
  private closed = false;

  constructor(
    files: string[],
    private readonly debounceMs: number,
    private readonly onChange: () => void,
    pollMs = defaultPollMs,
  ) {
    this.files = files.map((f) => resolve(f));
    for (const dir of new Set(this.files.map((f) => dirname(f)))) this.watchDir(dir);
    void this.checkIdentity();
    this.poll = setInterval(() => void this.checkIdentity(), pollMs);
    this.poll.unref();
  }

  /**
   * A change no event announced: re-watch directories that moved, and
   * reload. A change an event did announce is seen here too; the reload it
   * schedules finds the files as already loaded and does nothing.
   */
  private async checkIdentity(): Promise<void> {
    if (this.checking || this.closed) return;
    this.checking = true;
    try {
      const now = (await Promise.all(this.files.map(identityOf))).join('|');
      const before = this.identity;
      this.identity = now;
      if (before === undefined || before === now || this.closed) return;
      this.checkDirs();
      this.schedule();
    } finally {
      this.checking = false;
    }
  }

  /** Watch `dir`; true when the watch is in place. */
  private watchDir(dir: string): boolean {
    if (this.closed) return false;
    try {
      const ino = inodeOf(dir);
      const watcher = watch(dir, { persistent: false }, () => this.schedule());
      // The directory went away (volume remount): try again shortly.
      watcher.on('error', () => this.lost(dir));
      this.watchers.set(dir, { watcher, ino });
      return true;
    } catch {
      this.retryLater(dir);
      return false;
    }
  }

  private lost(dir: string): void {
    this.watchers.get(dir)?.watcher.close();
    this.watchers.delete(dir);
    this.retryLater(dir);
  }

  /**
   * A directory removed (or replaced: `rm -r certs && cp -r new certs`)
   * leaves a watch on the old inode that reports nothing ever again — Linux
   * emits no 'error' for it. Checked after every event: such a directory is
   * watched anew by its name.
   */
  private checkDirs(): void {
    for (const [dir, { ino }] of this.watchers) if (inodeOf(dir) !== ino) this.lost(dir);
  }

  private retryLater(dir: string): void {
    if (this.closed || this.retries.has(dir)) return;
    const retry = setTimeout(() => {
      this.retries.delete(dir);
      // Back: reload, its files may have changed meanwhile.
      if (this.watchDir(dir)) this.schedule();
    }, rewatchMs);
    retry.unref();
    this.retries.set(dir, retry);
  }

  private schedule(): void {
    if (this.closed) return;
    const now = Date.now();
    this.burstSince ??= now;
    if (this.timer) clearTimeout(this.timer);
    // Quiet for `debounceMs`, but never later than `maxHoldMs` after the burst began.
    const holdMs = Math.max(maxHoldMs, this.debounceMs);
    const waitMs = Math.max(0, Math.min(this.debounceMs, this.burstSince + holdMs - now));
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.burstSince = undefined;
      this.checkDirs();
      this.onChange();
    }, waitMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    clearInterval(this.poll);
    if (this.timer) clearTimeout(this.timer);
    for (const retry of this.retries.values()) clearTimeout(retry);
    this.retries.clear();
    for (const { watcher } of this.watchers.values()) watcher.close();
    this.watchers.clear();
  }
}
