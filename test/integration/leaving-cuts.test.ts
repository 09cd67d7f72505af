import { describe, expect, it } from 'vitest'
import { isOutcomeUnknownError } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent } from '../support/wait.js'
import { errorOf, heldStatements, HOLD_LOCK, holdLock, settle } from '../support/writes-in-flight.js'

const res = useResources()

describe('leaving a primary cuts everything still running there', () => {
  it('a promotion elsewhere fails the old primary\'s running writes, checked-out clients included; none is acknowledged later', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { healthCheckIntervalMs: 2_000 })
    await pool.query('CREATE TABLE t (id int, port int)')
    // n1 is promoted below and written to: it must have the table first (replication is asynchronous).
    await cluster.waitForReplication(n0)

    // Two writes that will still be running on n0 when the cluster moves on: one through pool.query,
    // one in a transaction on a checked-out client (as an ORM runs it). They wait for a lock that a
    // session of the test holds on n0 and never releases, so nothing but the pool can end them.
    await holdLock(res, n0)
    const viaQuery = settle(pool.query(`INSERT INTO t SELECT 1, inet_server_port() FROM pg_advisory_xact_lock(${HOLD_LOCK})`))
    const client = await pool.connect()
    client.on('error', () => undefined)
    await client.query('BEGIN')
    const viaClient = settle(client.query(`INSERT INTO t SELECT 2, inet_server_port() FROM pg_advisory_xact_lock(${HOLD_LOCK})`).then(() => client.query('COMMIT')))
    await heldStatements(cluster, n0, "query LIKE 'INSERT INTO t SELECT%'", 2)

    // n1 is promoted while n0 stays up and writable: only the pool's own decision can stop n0 acknowledging.
    const failover = nextEvent(pool, 'failover')
    await cluster.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })

    // Both were cut when the pool left n0: the lock they wait for is still held, so neither can
    // have ended on its own (and none is acknowledged later: it never could be).
    const [q, c] = await Promise.all([viaQuery, viaClient])
    client.release(true)
    expect({ viaQuery: q.ok, viaClient: c.ok }).toEqual({ viaQuery: false, viaClient: false })
    expect(isOutcomeUnknownError(errorOf(q)), String(errorOf(q))).toBe(true)
    // New writes go to n1.
    const { rows } = await pool.query('INSERT INTO t VALUES (3, inet_server_port()) RETURNING port')
    expect(rows[0].port).toBe(n1.port)
  })
})
