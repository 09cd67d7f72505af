import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { TEST_APPLICATION_NAME, replicasKnown, useResources } from '../support/pools.js'
import { sleep, waitUntil } from '../support/wait.js'

const res = useResources()
const MONITOR = `${TEST_APPLICATION_NAME} monitor`

/** The pool's monitoring sessions on `node`, with what each is doing. */
async function monitorSessions(cluster: { sql<T>(node: ClusterNode, text: string): Promise<T[]> }, node: ClusterNode): Promise<Array<{ state: string; query: string }>> {
  return cluster.sql<{ state: string; query: string }>(node, `SELECT state, query FROM pg_stat_activity WHERE application_name = '${MONITOR}'`)
}

describe('what monitoring costs the database', () => {
  it('several pools of one process over the same nodes share one monitor session per node; the last end() closes it', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    // A pool, its reader view, and two more pools (an ORM's master and slave pools, per-tenant pools).
    const pools = [res.pool(cluster), res.pool(cluster), res.pool(cluster)]
    for (const pool of pools) await replicasKnown(pool, 2)
    await pools[0]!.reader.query('SELECT 1')
    for (const node of cluster.nodes) expect(await monitorSessions(cluster, node)).toHaveLength(1)
    await pools[0]!.end()
    await pools[1]!.end()
    // The last pool still probes every node on the shared session.
    const before = pools[2]!.status().endpoints.map((e) => e.lastProbeAt)
    await waitUntil(() => pools[2]!.status().endpoints.every((e, i) => e.lastProbeAt !== before[i]), { what: 'fresh probes of every node', timeout: 5_000 })
    for (const node of cluster.nodes) expect(await monitorSessions(cluster, node)).toHaveLength(1)
    await pools[2]!.end()
    for (const node of cluster.nodes) await waitUntil(async () => (await monitorSessions(cluster, node)).length === 0, { what: `no monitor session left on ${node.name}`, timeout: 5_000 })
  })

  it('an idle pool holds one monitoring connection per node and runs nothing on a standby between health probes; a doubt turns the watch on', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { healthCheckIntervalMs: 2_000 })
    await replicasKnown(pool, 1)
    // Until the first primary was verified the pool watched the standby (no primary = urgent): that
    // last window ends within promotionWatchWindowMs (1 s) of the primary being verified.
    await waitUntil(async () => (await monitorSessions(cluster, n1)).every((s) => s.state === 'idle'), { what: 'the startup watch window over', timeout: 5_000 })
    // Idle: sampled every 50 ms for 2 s, the standby's one monitor session is never running a statement
    // for long (a probe takes a millisecond; a watch window would show for most samples).
    let active = 0
    for (let i = 0; i < 40; i++) {
      const sessions = await monitorSessions(cluster, n1)
      expect(sessions).toHaveLength(1)
      if (sessions[0]!.state === 'active') active++
      await sleep(50)
    }
    expect(active).toBeLessThanOrEqual(2)
    expect(await monitorSessions(cluster, n0)).toHaveLength(1)
    // The primary goes away: the pool doubts it, and the standby's session waits for its promotion.
    await cluster.stop(n0, 'immediate')
    await waitUntil(async () => (await monitorSessions(cluster, n1)).some((s) => s.state === 'active' && s.query.startsWith('WITH RECURSIVE promotion_wait')), {
      what: 'the watch window running on the standby',
      timeout: 10_000,
    })
    expect(await monitorSessions(cluster, n1)).toHaveLength(1)
  })
})
