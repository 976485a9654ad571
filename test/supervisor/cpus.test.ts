import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { availableParallelism, tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { availableCpus, cgroupCpuLimit } from '../../supervisor/cpus.js';

describe('worker count default', () => {
  it('honours a cgroup v2 quota and never goes below 1', () => {
    const root = mkdtempSync(join(tmpdir(), 'cg-'));
    writeFileSync(join(root, 'cpu.max'), '50000 100000\n');
    expect(cgroupCpuLimit(root)).toBe(0.5);
    expect(availableCpus(root)).toBe(1);
    writeFileSync(join(root, 'cpu.max'), 'max 100000\n');
    expect(availableCpus(root)).toBe(availableParallelism());
  });

  it('honours a cgroup v1 quota', () => {
    const root = mkdtempSync(join(tmpdir(), 'cg1-'));
    mkdirSync(join(root, 'cpu'));
    writeFileSync(join(root, 'cpu', 'cpu.cfs_quota_us'), '100000');
    writeFileSync(join(root, 'cpu', 'cpu.cfs_period_us'), '100000');
    expect(availableCpus(root)).toBe(Math.min(1, availableParallelism()));
  });
});
