/**
 * pg-boss on a FailoverPool (`db: pgBossDb(pool)`), against real clusters and real failovers.
 *
 * 1. pg-boss 10's own API (the version installed; 11 and 12 need Node 22): one PgBoss instance
 *    sends and works jobs before, during and after the primary is stopped and a standby promoted.
 *    Every job whose send was acknowledged runs exactly once; a send may fail only as
 *    outcome-unknown or for want of a primary (and then its job runs at most once). A job whose
 *    handler is running across the failover completes on the new primary; jobs queued before the
 *    failover run after it; maintenance (multi-statement `BEGIN; …; COMMIT;` strings) runs on the
 *    new primary.
 * 2. The hooks pg-boss 12 calls on a custom db, driven as pg-boss 12 drives them (its Notifier and
 *    transactional workers), through a killed primary: the LISTEN session re-listens on the new
 *    primary and calls onReconnect; a transaction stays on one connection and one node.
 */
import PgBoss from 'pg-boss'
import { describe, expect, it } from 'vitest'
import { pgBossDb } from '../../src/integrations/pg-boss.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { type Attempt, JobRuns, NO_VIOLATIONS } from '../support/job-runs.js'
import { useResources } from '../support/pools.js'
import { nextEvent, waitUntil } from '../support/wait.js'

const res = useResources()

const QUEUE = 'failover-jobs'

type Sent = Attempt & { id: string | null }

describe('pg-boss on a FailoverPool', () => {
  it('one PgBoss instance sends and works through a stopped primary: every acknowledged job runs exactly once, none is lost', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster)
    const jobRuns = new JobRuns()
    const boss = new PgBoss({ db: pgBossDb(pool), maintenanceIntervalSeconds: 1 })
    const bossErrors: unknown[] = []
    boss.on('error', (err) => bossErrors.push(err))
    await boss.start()
    // Stopped before the pool ends (teardown runs newest first); the gate is opened so no handler holds it up.
    res.defer(async () => {
      jobRuns.openGate()
      await boss.stop({ graceful: false })
    })
    await boss.createQueue(QUEUE)

    // Handler runs per job key (the key is in the job's data: a failed send has no id).
    await boss.work<{ key: string; gate?: boolean }>(QUEUE, { pollingIntervalSeconds: 0.5, batchSize: 10 }, async (jobs) => {
      for (const job of jobs) await jobRuns.record(job.data.key, job.data.gate)
    })

    const send = (key: string, gated = false): Promise<Sent> =>
      boss.send(QUEUE, gated ? { key, gate: true } : { key }).then(
        (id) => ({ key, id, error: null }),
        (error: unknown) => ({ key, id: null, error }),
      )
    const sendAll = (phase: string, n: number): Promise<Sent[]> => Promise.all(Array.from({ length: n }, (_, i) => send(`${phase}-${i}`)))

    // Before: sent and run on node0.
    const before = await sendAll('before', 5)
    expect(before.map((s) => s.error)).toEqual(before.map(() => null))
    await waitUntil(() => before.every((s) => jobRuns.runs.get(s.key) === 1), { what: 'the jobs sent before the failover to run', timeout: 15_000 })

    // A job whose handler runs across the failover, and jobs queued behind it (one worker: it fetches nothing while its handler runs).
    const entered = jobRuns.entered()
    const gated = await send('gated', true)
    expect(gated.error).toBeNull()
    await entered
    const queued = await sendAll('queued', 5)
    expect(queued.map((s) => s.error)).toEqual(queued.map(() => null))
    await cluster.waitForReplication(n0)

    // The failover: node0 stopped, sends issued while no primary exists, node1 promoted.
    const failover = nextEvent(pool, 'failover')
    await cluster.stop(n0, 'fast')
    await expect.poll(() => pool.status().primary, { timeout: 10_000 }).toBeNull()
    const duringSends = sendAll('during', 5)
    await cluster.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })
    const during = await duringSends
    // pg-boss's maintenance (multi-statement BEGIN; ...; COMMIT; strings, no values) runs on the new primary.
    const maintenance = nextEvent(boss, 'maintenance', { timeout: 20_000 })
    jobRuns.openGate()

    // After.
    const after = await sendAll('after', 5)
    await maintenance

    const all = [...before, gated, ...queued, ...during, ...after]
    const acknowledged = all.filter((s) => s.error === null)
    // Only a send issued during the failover may have failed.
    expect(acknowledged.length).toBeGreaterThanOrEqual(all.length - during.length)

    // Every acknowledged job completes on the new primary, exactly once.
    const ids = acknowledged.map((s) => s.id!)
    await waitUntil(async () => (await jobStates(cluster, n1, ids)).every((j) => j.state === 'completed'), {
      what: 'every acknowledged job to be completed on the new primary',
      timeout: 30_000,
      diagnostics: async () => JSON.stringify({ states: await jobStates(cluster, n1, ids), runs: [...jobRuns.runs], bossErrors: bossErrors.map(String) }),
    })
    const states = await jobStates(cluster, n1, ids)
    expect(states.map((j) => j.id).sort()).toEqual([...ids].sort())
    // A send failed only as outcome-unknown or for want of a primary, and then its job (which may
    // exist: it may have been written before the loss) ran at most once; every acknowledged job
    // ran exactly once; nothing ran that was never sent.
    expect(jobRuns.violations(all)).toEqual(NO_VIOLATIONS)
    // No job exists twice.
    const keys = await cluster.sql<{ key: string; n: number }>(n1, `SELECT data->>'key' AS key, count(*)::int AS n FROM pgboss.job WHERE name = $1 GROUP BY 1`, [QUEUE])
    expect(keys.filter((k) => k.n !== 1)).toEqual([])
  })

  it('pg-boss 12 hooks: the LISTEN session follows the primary through a killed primary, transactions stay on one connection', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster)
    const listenErrors: Error[] = []
    // Heartbeats every 200 ms: each one must pass (a failing one would reconnect and break the counts below).
    const db = pgBossDb(pool, { onError: (err) => listenErrors.push(err), listenHeartbeatIntervalMs: 200 })

    await db.executeSql('CREATE TABLE t (id int PRIMARY KEY, port int)')
    // No values: the simple protocol, so pg-boss's multi-statement strings run (one result per statement).
    const multi = (await db.executeSql('BEGIN; INSERT INTO t VALUES (0, inet_server_port()); SELECT 1 AS one; COMMIT;')) as unknown
    expect(Array.isArray(multi) && multi.length).toBe(4)
    expect((await db.executeSql('SELECT $1::int AS v', [7])).rows).toEqual([{ v: 7 }])

    // As pg-boss 12's Notifier: listen, and count onReconnect (called after every LISTEN, the first included).
    const channel = 'pgboss "jobs"'
    const payloads: string[] = []
    let reconnects = 0
    const handle = await db.listen(channel, (p) => payloads.push(p), () => reconnects++)
    res.defer(() => handle.close())
    expect(reconnects).toBe(1)
    expect(await listeningSessions(cluster, n0)).toBe(1)
    await db.executeSql('SELECT pg_notify($1, $2)', [channel, 'first'])
    await expect.poll(() => payloads, { timeout: 10_000 }).toContain('first')

    // The server ends the session (no failover): it listens again on the same primary.
    await cluster.sql(n0, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${LISTENER}`)
    await expect.poll(() => reconnects, { timeout: 10_000 }).toBe(2)
    await db.executeSql('SELECT pg_notify($1, $2)', [channel, 'second'])
    await expect.poll(() => payloads, { timeout: 10_000 }).toContain('second')

    // A transaction open when the primary dies.
    const open = await db.beginTransaction()
    await open.db.executeSql('INSERT INTO t VALUES (1, inet_server_port())')
    await cluster.waitForReplication(n0)

    const failover = nextEvent(pool, 'failover')
    await cluster.kill(n0)
    await cluster.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })
    await expect.poll(() => reconnects, { timeout: 20_000 }).toBe(3)
    expect(await listeningSessions(cluster, n1)).toBe(1)
    await db.executeSql('SELECT pg_notify($1, $2)', [channel, 'after'])
    await expect.poll(() => payloads, { timeout: 10_000 }).toContain('after')
    expect(listenErrors.length).toBeGreaterThanOrEqual(2)

    // The open transaction's node is gone: COMMIT fails, rollback() settles quietly, nothing of it survives.
    await expect(open.commit()).rejects.toThrow()
    await open.rollback()
    await expect(open.db.executeSql('SELECT 1')).rejects.toThrow()

    // New transactions run on the new primary, every statement on one connection.
    const seen = await db.withTransaction(async (tx) => {
      const first = (await tx.executeSql('SELECT pg_backend_pid() AS pid, inet_server_port() AS port')).rows[0]
      await tx.executeSql('INSERT INTO t VALUES (2, inet_server_port())')
      const last = (await tx.executeSql('SELECT pg_backend_pid() AS pid')).rows[0]
      return { first, last }
    })
    expect(seen.first.port).toBe(n1.port)
    expect(seen.last.pid).toBe(seen.first.pid)
    await expect(
      db.withTransaction(async (tx) => {
        await tx.executeSql('INSERT INTO t VALUES (3, inet_server_port())')
        throw new Error('handler failed')
      }),
    ).rejects.toThrow('handler failed')
    expect(await cluster.sql<{ id: number }>(n1, 'SELECT id FROM t ORDER BY id')).toEqual([{ id: 0 }, { id: 2 }])

    expect(db.poolCounts()).toMatchObject({ max: 4, waiting: 0 })
    expect(db.poolCounts().total).toBeGreaterThanOrEqual(db.poolCounts().idle)

    // close(): the session ends and is not replaced.
    await handle.close()
    await expect.poll(() => listeningSessions(cluster, n1), { timeout: 10_000 }).toBe(0)
    expect(reconnects).toBe(3)
  })
})

/** id and state of the given pg-boss jobs, as `node` has them. */
function jobStates(cluster: Cluster, node: ClusterNode, ids: string[]): Promise<Array<{ id: string; state: string }>> {
  return cluster.sql<{ id: string; state: string }>(node, 'SELECT id::text AS id, state::text AS state FROM pgboss.job WHERE id = ANY($1::uuid[])', [ids])
}

/** pg_stat_activity rows of the LISTEN session: its last statement was the LISTEN or a heartbeat. */
const LISTENER = "(query LIKE 'LISTEN %' OR query LIKE 'SELECT EXISTS (SELECT 1 FROM pg_listening_channels()%')"

/** LISTEN sessions on `node`. */
async function listeningSessions(cluster: Cluster, node: ClusterNode): Promise<number> {
  const rows = await cluster.sql<{ n: number }>(node, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${LISTENER}`)
  return rows[0]!.n
}
