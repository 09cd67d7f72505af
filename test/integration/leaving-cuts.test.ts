import { describe, expect, it } from 'vitest'
import { isOutcomeUnknownError } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent, waitUntil } from '../support/wait.js'

const res = useResources()

/** Resolves with 'acknowledged' or the error, and when. */
function settle(p: Promise<unknown>): Promise<{ result: 'acknowledged' | Error; at: number }> {
  return p.then(
    () => ({ result: 'acknowledged' as const, at: performance.now() }),
    (err: Error) => ({ result: err, at: performance.now() }),
  )
}

describe('leaving a primary cuts everything still running there', () => {
  it('a promotion elsewhere fails the old primary\'s running writes, checked-out clients included; none is acknowledged later', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { healthCheckIntervalMs: 2_000 })
    await pool.query('CREATE TABLE t (id int, port int)')
    // n1 is promoted below and written to: it must have the table first (replication is asynchronous).
    await cluster.waitForReplication(n0)

    // Two writes that will still be running on n0 when the cluster moves on: one through pool.query,
    // one in a transaction on a checked-out client (as an ORM runs it).
    const viaQuery = settle(pool.query('INSERT INTO t SELECT 1, inet_server_port() FROM pg_sleep(3)'))
    const client = await pool.connect()
    client.on('error', () => undefined)
    await client.query('BEGIN')
    const viaClient = settle(client.query('INSERT INTO t SELECT 2, inet_server_port() FROM pg_sleep(3)').then(() => client.query('COMMIT')))
    await waitUntil(
      async () => (await cluster.sql<{ n: number }>(n0, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t SELECT%' AND state = 'active'"))[0]!.n === 2,
      { what: 'both writes running on n0', timeout: 5_000 },
    )

    // n1 is promoted while n0 stays up and writable: only the pool's own decision can stop n0 acknowledging.
    const failover = nextEvent(pool, 'failover')
    const promotedAt = performance.now()
    await cluster.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })

    const [q, c] = await Promise.all([viaQuery, viaClient])
    client.release(true)
    // Both were cut when the pool left n0, long before their 3 s statements could have finished.
    expect(isOutcomeUnknownError(q.result), String(q.result)).toBe(true)
    expect(c.result).toBeInstanceOf(Error)
    expect(Math.max(q.at, c.at) - promotedAt).toBeLessThan(2_500)
    // New writes go to n1.
    const { rows } = await pool.query('INSERT INTO t VALUES (3, inet_server_port()) RETURNING port')
    expect(rows[0].port).toBe(n1.port)
  })
})
