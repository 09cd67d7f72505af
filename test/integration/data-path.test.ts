import { describe, expect, it } from 'vitest'
import { isOutcomeUnknownError, isSafeToRetryError } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { freePort } from '../support/ports.js'
import { replicasKnown, useResources } from '../support/pools.js'
import { promoteMostAdvanced } from '../support/standbys.js'
import { nextEvent, sleep, waitUntil } from '../support/wait.js'
import { settle } from '../support/writes-in-flight.js'

const res = useResources()

/** Ports that answered `n` reads through the pool's reader (each read returns its server's port). */
async function readPorts(pool: { reader: { query<R>(sql: string): Promise<{ rows: R[] }> } }, n: number): Promise<Map<number, number>> {
  const ports = new Map<number, number>()
  for (let i = 0; i < n; i++) {
    const { rows } = await pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')
    ports.set(rows[0]!.port, (ports.get(rows[0]!.port) ?? 0) + 1)
  }
  return ports
}

/** Three nodes (node0 the primary), a pool over them, table `name (id int)` replicated, both standbys verified. */
async function threeNodesWithTable(name: string) {
  const cluster = await res.cluster({ standbys: 2 })
  const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
  const pool = res.pool(cluster, {})
  await pool.query(`CREATE TABLE ${name} (id int)`)
  await cluster.waitForReplication(n0)
  await replicasKnown(pool, 2)
  return { cluster, n0, n1, n2, pool }
}

describe('the data path never answers wrongly', () => {
  it('withReadYourWrites callers through a failover: every error is an answer, never an uncaught exception', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { readYourWritesTimeoutMs: 2_000 })
    await pool.query('CREATE TABLE ryw (id serial PRIMARY KEY, v int)')
    await cluster.waitForReplication(n0)
    await replicasKnown(pool, 2)
    let stop = false
    const answered = { ok: 0, failed: 0 }
    const caller = async (): Promise<void> => {
      while (!stop) {
        const outcome = await settle(
          pool.withReadYourWrites(async () => {
            await pool.query('INSERT INTO ryw (v) VALUES (1)')
            return pool.reader.query('SELECT count(*)::int AS n FROM ryw')
          }),
        )
        answered[outcome.ok ? 'ok' : 'failed']++
        if (!outcome.ok) await new Promise((resolve) => setTimeout(resolve, 5))
      }
    }
    const callers = Array.from({ length: 10 }, caller)
    await waitUntil(() => answered.ok > 50, { what: 'read-your-writes traffic', timeout: 10_000 })
    // An uncaught 'error' from a client the library holds (the LSN read, a replay wait) would fail this test file.
    const failover = nextEvent(pool, 'failover')
    await cluster.stop(n0, 'immediate')
    // Whichever standby received more before the immediate stop is promoted (the other could not follow it).
    await promoteMostAdvanced(cluster, [n1, n2])
    await failover
    const after = answered.ok
    await waitUntil(() => answered.ok > after + 50, { what: 'read-your-writes traffic after the failover', timeout: 20_000 })
    stop = true
    await Promise.all(callers)
  })

  it('a replica dying during read-your-writes replay waits, and a primary dying under onPromote, crash nothing', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool(cluster, {
      readYourWritesTimeoutMs: 10_000,
      onPromote: async (client) => {
        await client.query('SELECT pg_sleep(30)')
      },
      onPromoteTimeoutMs: 30_000,
    })
    await pool.query('CREATE TABLE rw (id int)')
    await cluster.waitForReplication(n0)
    await replicasKnown(pool, 2)
    // Replay paused on both standbys: the reads wait server-side for a position they never reach.
    await cluster.pauseReplay(n1)
    await cluster.pauseReplay(n2)
    const reads = Array.from({ length: 4 }, (_, i) =>
      settle(
        pool.withReadYourWrites(async () => {
          await pool.query('INSERT INTO rw VALUES ($1)', [i])
          return pool.reader.query('SELECT count(*)::int AS n FROM rw')
        }),
      ),
    )
    await waitUntil(async () => (await cluster.sql<{ n: number }>(n1, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'DO $pgfp$%pg_last_wal_replay_lsn%'"))[0]!.n > 0, {
      what: 'a replay wait running on node1',
      timeout: 10_000,
    })
    await cluster.kill(n1)
    // Those reads end (elsewhere, or with an error): none crashes the process.
    await cluster.resumeReplay(n2)
    for (const r of await Promise.all(reads)) expect(r.ok || r.error instanceof Error).toBe(true)

    // The new primary dies while its promotion hook holds a client there.
    await cluster.stop(n0, 'immediate')
    await cluster.promote(n2)
    await waitUntil(async () => (await cluster.sql<{ n: number }>(n2, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)'"))[0]!.n > 0, {
      what: 'the promotion hook running on node2',
      timeout: 20_000,
    })
    await cluster.kill(n2)
    await new Promise((resolve) => setTimeout(resolve, 500)) // a crash would surface as an unhandled error of this file
  })

  it('a read on a checked-out client is never answered without its session: lost with its node, it fails as safe to retry', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 8 })
    await pool.query('CREATE SCHEMA tenant_a')
    await pool.query("CREATE TABLE tenant_a.items AS SELECT 'a'::text AS owner")
    await cluster.waitForReplication(n0)
    const sessions = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const client = await pool.connect()
        client.on('error', () => undefined)
        // What row-level-security apps do per request: who is asking, and where to look.
        await client.query(`SET app.tenant = 'tenant-${i}'`)
        await client.query('SET search_path = tenant_a')
        return client
      }),
    )
    const reads = sessions.map((client) => settle(client.query<{ tenant: string }>("SELECT current_setting('app.tenant', true) AS tenant, pg_sleep(5) AS slept")))
    await waitUntil(async () => (await cluster.sql<{ n: number }>(n0, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'SELECT current_setting%'"))[0]!.n === 6, {
      what: 'the six reads running',
      timeout: 10_000,
    })
    await cluster.stop(n0, 'immediate')
    await cluster.promote(n1)
    const outcomes = await Promise.all(reads)
    for (const [i, outcome] of outcomes.entries()) {
      // Never answered on another session (where app.tenant would be empty or someone else's).
      if (outcome.ok) expect(outcome.value.rows[0]!.tenant).toBe(`tenant-${i}`)
      else {
        expect(isSafeToRetryError(outcome.error), String(outcome.error)).toBe(true)
        expect(isOutcomeUnknownError(outcome.error)).toBe(false)
      }
    }
    expect(outcomes.filter((o) => !o.ok)).toHaveLength(6)
    for (const client of sessions) client.release(true)
  })

  it('a detached standby (its WAL receiver cannot reach the primary) serves no reads once past maxReplicaLagMs; the healthy one serves them all', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { maxReplicaLagMs: 1_000 })
    await pool.query('CREATE TABLE d (id int)')
    await cluster.waitForReplication(n0)
    await replicasKnown(pool, 2)
    await cluster.detach(n1, await freePort())
    await pool.query('INSERT INTO d SELECT generate_series(1, 2000)')
    // PostgreSQL itself would say lag 0 (nothing received, nothing to replay); the pool says it grows.
    await waitUntil(() => (pool.status().endpoints.find((e) => e.name === n1.name)!.lagMs ?? 0) > 1_000, {
      what: 'node1 lagging past the limit',
      timeout: 10_000,
      diagnostics: () => JSON.stringify(pool.status().endpoints),
    })
    const ports = await readPorts(pool, 200)
    expect(ports.get(n1.port) ?? 0).toBe(0)
    expect(ports.get(n2.port)).toBe(200)
  })

  it('a standby the pool meets already detached (a new pool, a node added at runtime) is as stale as its last replayed transaction, not fresh from the first probe', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    await cluster.sql(n0, 'CREATE TABLE m (id int)')
    await cluster.sql(n0, 'INSERT INTO m VALUES (1)')
    await cluster.waitForReplication(n0)
    await cluster.detach(n1, await freePort())
    await cluster.sql(n0, 'INSERT INTO m VALUES (2)')
    await sleep(1_200) // n1 last replayed a transaction more than maxReplicaLagMs ago
    const pool = res.pool(cluster, { maxReplicaLagMs: 1_000 })
    await pool.query('SELECT 1')
    await waitUntil(() => pool.status().endpoints.every((e) => e.role !== 'unknown' && e.role !== 'unreachable'), { what: 'every node probed', timeout: 10_000 })
    const shown = pool.status().endpoints.find((e) => e.name === n1.name)!
    expect(shown.lagMs, JSON.stringify(shown)).toBeGreaterThan(1_000)
    const ports = await readPorts(pool, 100)
    expect(ports.get(n1.port) ?? 0).toBe(0)
    expect(ports.get(n2.port)).toBe(100)
  })

  it('a diverged old primary restarted as a standby without pg_rewind serves no reads; status says why', async () => {
    const { cluster, n0, n1, n2, pool } = await threeNodesWithTable('lost')
    // n1 is promoted while n0 stays writable and takes 100 commits the new timeline never gets.
    const failover = nextEvent(pool, 'failover')
    // node2 streams through node1 before the promotion, so it follows node1's timeline and never
    // replays what node0 writes after the fork (its commits below, or WAL of its own).
    await cluster.repoint(n2, n1)
    await cluster.promote(n1)
    await failover
    await cluster.repoint(n2, n1)
    for (let i = 0; i < 100; i++) await cluster.sql(n0, 'INSERT INTO lost VALUES ($1)', [i])
    await cluster.restartAsStandbyWithoutRewind(n0, n1)
    await waitUntil(() => pool.status().endpoints.find((e) => e.name === n0.name)!.role === 'fenced' || pool.status().endpoints.find((e) => e.name === n0.name)!.readFence !== null, {
      what: 'node0 fenced for reads',
      timeout: 10_000,
      diagnostics: () => JSON.stringify(pool.status().endpoints),
    })
    await waitUntil(() => pool.status().endpoints.find((e) => e.name === n2.name)!.servesReads, { what: 'node2 serving reads', timeout: 20_000 })
    const ports = await readPorts(pool, 300)
    expect(ports.get(n0.port) ?? 0).toBe(0)
    expect(ports.get(n2.port)).toBe(300)
    const shown = pool.status().endpoints.find((e) => e.name === n0.name)!
    expect(shown.servesReads).toBe(false)
  })

  it('a standby still streaming from the primary the pool left (promoted by hand, the old one up) serves no reads from the failover on; repointed, it serves again', async () => {
    const { cluster, n0, n1, n2, pool } = await threeNodesWithTable('branch')
    // pg_ctl promote on node1 only: node0 stays up and writable, and node2 goes on streaming
    // timeline 1 from it — it will never replay what the cluster commits on node1 from now on.
    const failover = nextEvent(pool, 'failover')
    await cluster.promote(n1)
    expect((await failover).to).toBe(n1.name)
    await pool.query('INSERT INTO branch VALUES (1)')
    const ports = await readPorts(pool, 100)
    expect(ports.get(n2.port) ?? 0, JSON.stringify(pool.status().endpoints)).toBe(0)
    const shown = pool.status().endpoints.find((e) => e.name === n2.name)!
    expect(shown.servesReads).toBe(false)
    expect(shown.readFence).toMatch(/timeline 1/)
    // Repointed at the new primary, it crosses to timeline 2, gets the row, and serves reads again.
    await cluster.repoint(n2, n1)
    await waitUntil(() => pool.status().endpoints.find((e) => e.name === n2.name)!.servesReads, {
      what: 'node2 serving reads again',
      timeout: 20_000,
      diagnostics: () => JSON.stringify(pool.status().endpoints),
    })
    const { rows } = await pool.reader.query<{ port: number; n: number }>('SELECT inet_server_port() AS port, count(*)::int AS n FROM branch')
    expect(rows[0]).toEqual({ port: n2.port, n: 1 })
  })
})
