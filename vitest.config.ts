import { defineConfig } from 'vitest/config';

// Most tests start real processes and bind real sockets on a 2-core machine:
// keep file parallelism modest and timeouts generous (timing is asserted in
// benchmarks, never here).
export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    exclude: ['test/e2e/**', 'node_modules/**', 'dist/**'],
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 60_000,
  },
});
