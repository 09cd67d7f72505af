import pg from 'pg'
import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent, sleep } from '../support/wait.js'

/*
 * A latency claim in milliseconds is only honest on a CPU the measurement has to itself: this file
 * runs in `npm test`'s last phase, alone (vitest.timing.config.ts), after the parallel files whose
 * PostgreSQL clusters would otherwise share the two cores with it. Run beside them, the median of 5
 * read 29-71 ms once (every run 1-2 ms alone, the watch's own figure).
 */

const res = useResources()

describe('promotion notice latency', () => {
  it('an idle pool notices a promotion in under 20 ms (median of 5), without polling', async () => {
    const latencies: number[] = []
    // Median of 5 (not 3): one slow run in three took the median of 3 past 20 ms (22.6 ms, CI).
    for (let run = 0; run < 5; run++) {
      const c = await res.cluster({ standbys: 1 })
      const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
      // Polling is slowed right down so only the promotion watch can explain a fast notice.
      const pool = res.pool(c, { discoveryIntervalMs: 10_000, healthCheckIntervalMs: 10_000 })
      await pool.query('SELECT 1')
      await c.stop(n0, 'immediate')
      await sleep(300) // idle: nothing asks the pool anything for a while
      const watcher = res.track(new pg.Client(n1.config))
      await watcher.connect()
      const failover = nextEvent(pool, 'failover')
      const promoting = c.promote(n1)
      let promotedAt = 0
      while (promotedAt === 0) {
        const { rows } = await watcher.query('SELECT pg_is_in_recovery() AS r')
        if (!rows[0].r) promotedAt = performance.now()
      }
      const event = await failover
      latencies.push(performance.now() - promotedAt)
      expect(event.to).toBe(n1.name)
      await promoting
      await watcher.end()
      // Only one cluster at a time: the next run's timing must not share the CPU with this one.
      await pool.end()
      await c.destroy()
    }
    latencies.sort((a, b) => a - b)
    expect(latencies[2], latencies.map((l) => l.toFixed(1)).join(', ')).toBeLessThan(20)
  })
})
