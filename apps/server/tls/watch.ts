/**
 * Watch a few files for replacement, debounced. The directories are watched,
 * not the files: editors and `kubectl`-mounted secrets replace a file by
 * rename (Kubernetes swaps a `..data` symlink atomically), which a watch on
 * the old inode would never report. Any event in a watched directory
 * schedules one callback after `debounceMs` of quiet; the callback decides
 * whether the contents really changed.
 */
import { type FSWatcher, watch } from 'node:fs';
import { dirname, resolve } from 'node:path';

const rewatchMs = 1000;

export class FileWatch {
  private readonly watchers = new Map<string, FSWatcher>();
  private timer: NodeJS.Timeout | undefined;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;

  constructor(
    files: string[],
    private readonly debounceMs: number,
    private readonly onChange: () => void,
  ) {
    for (const dir of new Set(files.map((f) => dirname(resolve(f))))) this.watchDir(dir);
  }

  private watchDir(dir: string): void {
    if (this.closed) return;
    try {
      const w = watch(dir, { persistent: false }, () => this.schedule());
      w.on('error', () => {
        // The directory went away (volume remount): try again shortly.
        w.close();
        this.watchers.delete(dir);
        this.retryLater(dir);
      });
      this.watchers.set(dir, w);
    } catch {
      this.retryLater(dir);
    }
  }

  private retryLater(dir: string): void {
    if (this.closed) return;
    this.retry = setTimeout(() => {
      this.watchDir(dir);
      this.schedule();
    }, rewatchMs);
    this.retry.unref();
  }

  private schedule(): void {
    if (this.closed) return;
    if (this.timer) clearTimeout(this.timer);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.onChange();
    }, this.debounceMs);
    this.timer.unref();
  }

  close(): void {
    this.closed = true;
    if (this.timer) clearTimeout(this.timer);
    if (this.retry) clearTimeout(this.retry);
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
