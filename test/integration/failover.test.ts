import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { FailoverPool, NoPrimaryError, isOutcomeUnknownError } from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { TEST_APPLICATION_NAME, useResources } from '../support/pools.js'
import { nextEvent, sleep } from '../support/wait.js'
import { heldStatements, HOLD_LOCK, holdLock, terminateHeld } from '../support/writes-in-flight.js'

// Each test builds its own cluster: the faults are destructive.
const res = useResources()

async function serverPort(p: pg.Pool): Promise<number> {
  const { rows } = await p.query<{ port: number }>('SELECT inet_server_port() AS port')
  return rows[0]!.port
}

/** Client sessions our pool holds on a node, as the server sees them. */
async function appSessions(c: Cluster, node: ClusterNode): Promise<number> {
  const rows = await c.sql<{ n: number }>(node, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [TEST_APPLICATION_NAME])
  return rows[0]!.n
}

describe('writes follow the primary', () => {
  it('stop the primary, promote a standby: writes resume on it without a restart', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool(cluster)
    await pool.query('CREATE TABLE ledger (id int PRIMARY KEY, port int)')
    await pool.query('INSERT INTO ledger VALUES (1, inet_server_port())')
    expect(await serverPort(pool)).toBe(n0.port)
    expect(pool.status().primary).toBe(n0.name)

    const failover = nextEvent(pool, 'failover')
    await cluster.stop(n0, 'fast')
    // pg_ctl returning does not mean the pool has read the closed sockets yet; until it has, a write
    // may go out on one of them and truthfully end outcome-unknown. Wait until no primary is known.
    await expect.poll(() => pool.status().primary, { timeout: 5_000 }).toBeNull()
    // A write issued while no primary exists waits for one instead of failing.
    const pending = pool.query('INSERT INTO ledger VALUES (2, inet_server_port()) RETURNING port')
    await cluster.promote(n1)
    await cluster.repoint(n2, n1)

    const written = await pending
    expect(written.rows[0].port).toBe(n1.port)
    const event = await failover
    expect(event).toMatchObject({ from: n0.name, to: n1.name })
    expect(event.durationMs).toBeGreaterThanOrEqual(0)
    expect(event.reason).toMatch(/n?ode0|connection|terminat|administrator/i)

    for (let id = 3; id < 13; id++) await pool.query('INSERT INTO ledger VALUES ($1, inet_server_port())', [id])
    const rows = await cluster.sql<{ id: number; port: number }>(n1, 'SELECT id, port FROM ledger ORDER BY id')
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12])
    expect(rows.filter((r) => r.id > 1).every((r) => r.port === n1.port)).toBe(true)

    const status = pool.status()
    expect(status.primary).toBe(n1.name)
    expect(status.failovers).toBe(1)
    expect(status.endpoints.find((e) => e.name === n0.name)).toMatchObject({ role: 'unreachable', totalCount: 0 })
    expect(JSON.stringify(status)).not.toContain(cluster.password)
  })

  it('a demoted primary that stays up (read-only) answers 25006: the pool switches and no write fails', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    // The only signal left is the 25006 answer itself: no promotion watch, and no health check
    // that could see the read-only node or the promoted one first.
    const pool = res.pool(cluster, { promotionWatch: false, healthCheckIntervalMs: 60_000 })
    await pool.query('CREATE TABLE ledger (id int PRIMARY KEY, port int)')
    // n1 is promoted and written to below (replication is asynchronous).
    await cluster.waitForReplication(n0)
    // Warm the pool so idle clients on the old primary exist and get reused.
    await Promise.all([1, 2, 3, 4].map((id) => pool.query('INSERT INTO ledger VALUES ($1, inet_server_port())', [id])))
    expect(await appSessions(cluster, n0)).toBeGreaterThan(0)

    // Listen before changing anything: the failover may complete before promote() returns.
    const failover = nextEvent(pool, 'failover')
    await cluster.sql(n0, 'ALTER SYSTEM SET default_transaction_read_only = on')
    await cluster.sql(n0, 'SELECT pg_reload_conf()')
    await cluster.promote(n1)

    const results = await Promise.allSettled(
      Array.from({ length: 20 }, (_, i) => pool.query('INSERT INTO ledger VALUES ($1, inet_server_port()) RETURNING port', [100 + i])),
    )
    expect(results.filter((r) => r.status === 'rejected')).toEqual([])
    expect(results.every((r) => r.status === 'fulfilled' && r.value.rows[0].port === n1.port)).toBe(true)
    const event = await failover
    expect(event).toMatchObject({ from: n0.name, to: n1.name })
    expect(event.reason).toContain('25006')

    // The old primary received none of those writes and the pool let go of its sessions there.
    const onOld = await cluster.sql<{ n: number }>(n0, 'SELECT count(*)::int AS n FROM ledger WHERE id >= 100')
    expect(onOld[0]!.n).toBe(0)
    await expect.poll(() => appSessions(cluster, n0), { timeout: 5_000 }).toBe(0)
  })

  it('all nodes down: NoPrimaryError after failoverTimeoutMs, then recovery when a primary returns', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    // The breakers never open here: with every breaker open a request fails at once with
    // AllEndpointsDownError (health.test.ts proves that), and whether these requests came before
    // the third failed discovery round or after would be a race with pg_ctl's return.
    const pool = res.pool(cluster, { failoverTimeoutMs: 1_000, maxQueuedRequests: 3, discoveryIntervalMs: 50, failureThreshold: 1_000_000 })
    await pool.query('CREATE TABLE ledger (id int PRIMARY KEY)')
    await cluster.stop(n1, 'immediate')
    await cluster.stop(n0, 'immediate')
    // Until the pool has read the closed sockets, a write could go out on one (outcome unknown).
    await expect.poll(() => pool.status().primary, { timeout: 5_000 }).toBeNull()

    const started = performance.now()
    let queuedSettled = 0
    const waiting = [1, 2, 3].map((id) =>
      pool
        .query('INSERT INTO ledger VALUES ($1)', [id])
        .then(() => null, (e: unknown) => e)
        .finally(() => queuedSettled++),
    )
    // The queue is bounded: the fourth request fails at once instead of piling up, that is while
    // the three queued before it still wait for a primary (a clock bound would race a loaded machine).
    const overflow = await pool.query('SELECT 1').then(() => null, (e: unknown) => e)
    expect((overflow instanceof NoPrimaryError)).toBe(true)
    expect(queuedSettled).toBe(0)

    const errors = await Promise.all(waiting)
    const elapsed = performance.now() - started
    expect(elapsed).toBeGreaterThanOrEqual(950)
    expect(elapsed).toBeLessThan(4_000)
    for (const err of errors) {
      expect(err).toBeInstanceOf(NoPrimaryError)
      const answers = (err as NoPrimaryError).answers
      expect(answers.map((a) => [a.endpoint, a.role])).toEqual([
        [n0.name, 'unreachable'],
        [n1.name, 'unreachable'],
      ])
      expect((err as Error).message).not.toContain(cluster.password)
    }

    await cluster.start(n0)
    await expect.poll(() => pool.query('INSERT INTO ledger VALUES (10) RETURNING 1').then(() => true, () => false), { timeout: 10_000, interval: 100 }).toBe(true)
    expect(pool.status().primary).toBe(n0.name)
  })

  it('a write killed mid-flight surfaces as outcome-unknown and is never replayed, a SELECT of a writing function included', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster)
    await pool.query('CREATE TABLE ledger (id int PRIMARY KEY)')
    // Reads like a read (a plain SELECT) and writes: running it twice would write twice.
    await pool.query(`CREATE FUNCTION record_entry(id int) RETURNS int LANGUAGE plpgsql AS $$
      BEGIN PERFORM pg_advisory_xact_lock(${HOLD_LOCK}); INSERT INTO ledger VALUES (id); RETURN id; END $$`)
    // The writes wait for an advisory lock this session holds: they are certainly still running (so
    // not committed) when their backends are terminated, however slow the machine, and a replay
    // would take the lock and commit at once once it is released.
    const holder = await holdLock(res, n0)

    const write = pool.query(`INSERT INTO ledger SELECT 7 FROM pg_advisory_xact_lock(${HOLD_LOCK})`).then(() => null, (e: unknown) => e)
    const viaFunction = pool.query('SELECT record_entry(9)').then(() => null, (e: unknown) => e)
    const held = "query LIKE 'INSERT INTO ledger SELECT 7%' OR query LIKE 'SELECT record_entry(9)%'"
    await heldStatements(cluster, n0, held, 2)
    await terminateHeld(cluster, n0, held)

    for (const err of [await write, await viaFunction]) {
      expect(isOutcomeUnknownError(err), String(err)).toBe(true)
      expect((err as Error & { cause: { code?: string } }).cause.code).toBe('57P01')
    }
    await holder.query(`SELECT pg_advisory_unlock(${HOLD_LOCK})`)
    // Give a (forbidden) replay every chance to happen, then check it did not.
    await sleep(1_500)
    const rows = await cluster.sql<{ n: number }>(n0, 'SELECT count(*)::int AS n FROM ledger WHERE id IN (7, 9)')
    expect(rows[0]!.n).toBe(0)
    // The primary was re-verified, not failed over.
    await pool.query('INSERT INTO ledger VALUES (8)')
    expect(pool.status()).toMatchObject({ primary: n0.name, failovers: 0 })
  })

  it('a checked-out client never switches nodes under its user', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster)
    const client = await pool.connect()
    client.on('error', () => undefined)
    await client.query('BEGIN')
    expect((await client.query('SELECT inet_server_port() AS p')).rows[0].p).toBe(n0.port)
    await cluster.stop(n0, 'fast')
    await cluster.promote(n1)
    // The transaction's node is gone: the client reports it rather than silently moving to n1.
    await expect(client.query('SELECT inet_server_port() AS p')).rejects.toThrow()
    client.release(true)
    expect(await serverPort(pool)).toBe(n1.port)
  })

  it('authentication errors are configuration errors: reported at once, never a failover', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    // The library's defaults on purpose, with a wrong password on every endpoint.
    const pool = res.track(
      new FailoverPool({
        endpoints: cluster.nodes.map((n) => ({ ...n.config, password: 'wrong-password' })),
        failoverTimeoutMs: 10_000,
      }),
    )
    const started = performance.now()
    const err = await pool.query('SELECT 1').then(() => null, (e: unknown) => e)
    expect((err as { code?: string }).code).toBe('28P01')
    expect(performance.now() - started).toBeLessThan(5_000)
    expect(pool.status().failovers).toBe(0)
  })

  it('an endpoint of another cluster is reported and never written to', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const other = await res.cluster({ standbys: 0, namePrefix: 'other' })
    // Plain URLs and the library's defaults: the foreign endpoint is listed first.
    const pool = res.track(new FailoverPool({ endpoints: [other.nodes[0]!.url, ...cluster.nodes.map((n) => n.url)] }))
    expect(await serverPort(pool)).toBe(cluster.nodes[0]!.port)
    const foreign = pool.status().endpoints[0]!
    expect(foreign.role).toBe('mismatched-system')
  })
})
