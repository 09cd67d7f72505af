import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { replicasKnown, sessionPids, useResources } from '../support/pools.js'
import { sleep, waitUntil } from '../support/wait.js'

const res = useResources()

describe('warmStandbys', () => {
  it('a standby keeps one idle write session (past idleTimeoutMillis, no acquire or release event); after its promotion the first write runs on it', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    await cluster.sql(n0, 'CREATE TABLE warm_items (id int)')
    await cluster.waitForReplication(n0)

    const warm = res.pool(cluster, { warmStandbys: true, idleTimeoutMillis: 200, application_name: 'pgfp-warm' })
    const cold = res.pool(cluster, { idleTimeoutMillis: 200, application_name: 'pgfp-cold' })
    const events = { connect: 0, acquire: 0, release: 0 }
    for (const name of ['connect', 'acquire', 'release'] as const) warm.on(name, () => events[name]++)
    await warm.query('SELECT 1')
    await cold.query('SELECT 1')
    await replicasKnown(warm, 1)
    await replicasKnown(cold, 1)

    await waitUntil(async () => (await sessionPids(cluster, n1, 'pgfp-warm')).length === 1, { what: 'a warm session on the standby', timeout: 5_000 })
    const [warmPid] = await sessionPids(cluster, n1, 'pgfp-warm')
    // Three idle timeouts later it is the same session; the pool without the option holds none there.
    await sleep(600)
    expect(await sessionPids(cluster, n1, 'pgfp-warm')).toEqual([warmPid])
    expect(await sessionPids(cluster, n1, 'pgfp-cold')).toEqual([])
    // Its opening checkout served no one: one acquire and one release, the query's; two sessions made.
    expect(events).toEqual({ connect: 2, acquire: 1, release: 1 })

    await cluster.stop(n0, 'immediate')
    await cluster.promote(n1)
    const first = await warm.query<{ pid: number }>('INSERT INTO warm_items VALUES (1) RETURNING pg_backend_pid() AS pid')
    expect(first.rows[0]!.pid).toBe(warmPid)
    // The pool without it had to open a new session there.
    const coldFirst = await cold.query<{ pid: number }>('INSERT INTO warm_items VALUES (2) RETURNING pg_backend_pid() AS pid')
    expect(await sessionPids(cluster, n1, 'pgfp-cold')).toContain(coldFirst.rows[0]!.pid)
    expect((await cluster.sql<{ n: number }>(n1, 'SELECT count(*)::int AS n FROM warm_items'))[0]!.n).toBe(2)
  })
})
