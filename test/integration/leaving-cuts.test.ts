import { describe, expect, it } from 'vitest'
import { isOutcomeUnknownError } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent } from '../support/wait.js'
import { errorOf, heldStatements, HOLD_LOCK, holdLock, settle } from '../support/writes-in-flight.js'

const res = useResources()

describe('leaving a primary', () => {
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

  it('a node that answered 25006 is left with its running statements answering first: a refused one runs on the new primary, one that committed there is outcome-unknown, one still waiting after probeTimeoutMs is cut', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    // Only a 25006 answer moves this pool: no promotion watch, no health check that could see n0's demotion first.
    const probeTimeoutMs = 3_000
    const pool = res.pool(cluster, { promotionWatch: false, healthCheckIntervalMs: 60_000, probeTimeoutMs })
    await pool.query('CREATE TABLE t (id int PRIMARY KEY, port int)')
    // Waits for an advisory lock, then writes: a statement that is running when the pool leaves n0
    // and answers only when the test lets it. A SELECT of a user function, as applications write them.
    await pool.query(`CREATE FUNCTION held_insert(id int, lock int) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_xact_lock(lock); INSERT INTO t VALUES (id, inet_server_port()); RETURN inet_server_port(); END $$`)
    await cluster.waitForReplication(n0)
    const holder = await holdLock(res, n0)
    const NEVER_FREED = HOLD_LOCK + 1
    await holder.query(`SELECT pg_advisory_lock(${NEVER_FREED})`)

    // Begun while n0 is writable: its transaction can still commit there after n0 turns read-only.
    const begunWritable = settle(pool.query(`SELECT held_insert(1, ${HOLD_LOCK}) AS port`))
    await heldStatements(cluster, n0, "query LIKE 'SELECT held_insert(1,%'", 1)
    // A planned switchover: n0 stops taking writes and stays up, then n1 is promoted.
    await cluster.sql(n0, 'ALTER SYSTEM SET default_transaction_read_only = on')
    await cluster.sql(n0, 'SELECT pg_reload_conf()')
    await cluster.promote(n1)
    // Begun on the read-only n0: their INSERT is refused (25006) once they get their lock.
    const refused = settle(pool.query(`SELECT held_insert(2, ${HOLD_LOCK}) AS port`))
    let stuckEndedAt = Number.NaN
    const stuck = settle(pool.query(`SELECT held_insert(3, ${NEVER_FREED}) AS port`)).finally(() => (stuckEndedAt = performance.now()))
    await heldStatements(cluster, n0, "query LIKE 'SELECT held_insert(%'", 3)

    // A write refused at once moves the pool to n1 and it leaves n0, with the three still running there.
    const failover = nextEvent(pool, 'failover')
    const beforeLeaving = performance.now()
    const { rows } = await pool.query('INSERT INTO t VALUES (4, inet_server_port()) RETURNING port')
    expect(rows[0].port).toBe(n1.port)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })

    await holder.query(`SELECT pg_advisory_unlock(${HOLD_LOCK})`)
    const [w, r] = await Promise.all([begunWritable, refused])
    // n0 answered 25006: nothing was written, so the pool ran it on n1.
    expect(r.ok ? r.value.rows[0].port : r.error).toBe(n1.port)
    // n0 committed it after the pool had left n0; n1 never got it. Acknowledging it would report a
    // write the cluster lost: the caller hears outcome-unknown.
    expect(isOutcomeUnknownError(errorOf(w)), String(errorOf(w))).toBe(true)
    expect(await cluster.sql(n0, 'SELECT port FROM t WHERE id = 1')).toEqual([{ port: n0.port }])
    expect(await cluster.sql(n1, 'SELECT port FROM t WHERE id = 1')).toEqual([])

    // The third still waits on a lock nobody frees: it is cut when the grace ends, not before.
    const s = await stuck
    // (Timers may fire a few ms early against performance.now().)
    expect(stuckEndedAt - beforeLeaving).toBeGreaterThanOrEqual(probeTimeoutMs - 20)
    expect(isOutcomeUnknownError(errorOf(s)), String(errorOf(s))).toBe(true)
    expect(await cluster.sql(n1, 'SELECT id FROM t ORDER BY id')).toEqual([{ id: 2 }, { id: 4 }])
  })
})
