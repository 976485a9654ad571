/**
 * How many CPUs this container may use: `os.availableParallelism()` capped
 * by the cgroup CPU quota (v2 `cpu.max`, v1 `cpu.cfs_quota_us`), at least 1.
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

/** CPUs allowed by the quota, or undefined when there is none. */
export function cgroupCpuLimit(root = '/sys/fs/cgroup'): number | undefined {
  const v2 = read(`${root}/cpu.max`);
  if (v2) {
    const [quota, period] = v2.split(/\s+/);
    if (quota && quota !== 'max' && period) return Number(quota) / Number(period);
    return undefined;
  }
  const quota = Number(read(`${root}/cpu/cpu.cfs_quota_us`) ?? read(`${root}/cpu,cpuacct/cpu.cfs_quota_us`));
  const period = Number(
    read(`${root}/cpu/cpu.cfs_period_us`) ?? read(`${root}/cpu,cpuacct/cpu.cfs_period_us`),
  );
  if (quota > 0 && period > 0) return quota / period;
  return undefined;
}

export function availableCpus(root?: string): number {
  const cpus = availableParallelism();
  const limit = cgroupCpuLimit(root);
  const allowed = limit === undefined ? cpus : Math.min(cpus, Math.ceil(limit));
  return Math.max(1, allowed);
}
