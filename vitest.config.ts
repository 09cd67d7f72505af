import { defineConfig } from 'vitest/config'

export default defineConfig({
  test: {
    include: ['test/**/*.test.ts'],
    // Latency claims run alone afterwards (vitest.timing.config.ts).
    exclude: ['test/timing/**', '**/node_modules/**'],
    // Integration files each run their own PostgreSQL cluster; two at a time suits a 2-core machine.
    pool: 'forks',
    maxWorkers: 2,
    testTimeout: 60_000,
    hookTimeout: 120_000,
    // A failover test must not be retried into passing.
    retry: 0,
  },
})
