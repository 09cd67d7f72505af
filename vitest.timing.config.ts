import { defineConfig } from 'vitest/config'

/**
 * `npm test`'s last phase: tests whose claim is a latency in milliseconds, one file at a time and
 * after everything else, so nothing else the suite runs shares the CPU with the measurement.
 */
export default defineConfig({
  test: {
    include: ['test/timing/**/*.test.ts'],
    pool: 'forks',
    maxWorkers: 1,
    fileParallelism: false,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    retry: 0,
  },
})
