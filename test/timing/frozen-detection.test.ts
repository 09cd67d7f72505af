import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent, sleep } from '../support/wait.js'

/*
 * The documented detection bound, probeTimeoutMs + 1.2 × healthCheckIntervalMs, held for the first
 * freeze of a pool and broke for every later one: after a thaw the pool re-verified the node in a
 * round still waiting on the standby (its answer comes at the end of a watch window), and the first
 * health check waited for that round. `npm run bench` measured 1.9-2.0 s against 1.6 s (e08c75b to
 * d3ec057). A latency claim, so it runs in the timing phase, alone on the CPU.
 */

const res = useResources()

describe('frozen primary detection', () => {
  it('every freeze of a re-verified primary is noticed within probeTimeoutMs + 1.2 × healthCheckIntervalMs, not only the first', async () => {
    const probeTimeoutMs = 1_000
    const healthCheckIntervalMs = 500
    const boundMs = probeTimeoutMs + 1.2 * healthCheckIntervalMs
    // Timers that fire late on a busy 2-core machine; well under the 280-400 ms the defect added.
    const slackMs = 150
    const c = await res.cluster({ standbys: 1 })
    const [primary] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c, { probeTimeoutMs, healthCheckIntervalMs, halfOpenAfterMs: 100, maxHalfOpenAfterMs: 100 })
    await pool.query('SELECT 1')
    const detected: number[] = []
    for (let run = 0; run < 4; run++) {
      const down = nextEvent(pool, 'endpointDown', { match: (e) => e.endpoint === primary.name, timeout: 10_000 })
      const frozenAt = performance.now()
      await c.freeze(primary)
      await down
      detected.push(performance.now() - frozenAt)
      await c.thaw(primary)
      // Trusted again (re-verified) before the next freeze, as a restarted-in-place primary would be.
      const verifiedBy = performance.now() + 10_000
      while (pool.status().primary !== primary.name && performance.now() < verifiedBy) await sleep(20)
      expect(pool.status().primary).toBe(primary.name)
    }
    const shown = detected.map((ms) => ms.toFixed(0)).join(', ')
    expect(Math.max(...detected), `detected after ${shown} ms (bound ${boundMs} ms)`).toBeLessThanOrEqual(boundMs + slackMs)
  })
})
