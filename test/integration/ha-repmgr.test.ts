/**
 * A FailoverPool against real repmgr 5.3 clusters (repmgrd with failover=automatic and a witness;
 * Debian's packages, loopback), with the pool's endpoints on the nodes directly or on a PgBouncer in
 * front of each. Every scenario runs two writers with a write ledger.
 */
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import type { FailoverPool } from '../../src/index.js'
import { type PgBouncer, startPgBouncer } from '../support/ha/pgbouncer.js'
import { type RepmgrCluster, type RepmgrNode, startRepmgr } from '../support/ha/repmgr.js'
import { acksAfterLeaving, firstWritable, recordFailovers, resumedAfter } from '../support/ha-scenario.js'
import { LEDGER_TABLE, LedgerWriter } from '../support/ledger-writer.js'
import { useResources } from '../support/pools.js'
import { sleep, waitUntil } from '../support/wait.js'

const res = useResources()
const TIMEOUT = 180_000

interface Setup {
  readonly cluster: RepmgrCluster
  readonly pool: FailoverPool
  readonly writer: LedgerWriter
  readonly failovers: ReturnType<typeof recordFailovers>
  portOf(name: string): number
}

/**
 * A repmgr cluster (primary, two standbys, witness), optionally a PgBouncer with PgBouncer's own
 * defaults for retries and queueing (server_login_retry 15 s, query_wait_timeout 120 s) in front of
 * every node, and a pool over all of them, the witness included, with a ledger writing.
 */
async function setup(options: { bouncer?: 'session' | 'transaction'; intervalMs?: number } = {}): Promise<Setup> {
  const cluster = res.track(await startRepmgr({ standbys: 2 }))
  const bouncers: PgBouncer[] = []
  if (options.bouncer) {
    for (const n of cluster.nodes) {
      bouncers.push(
        res.track(
          await startPgBouncer({ target: { host: n.host, port: n.port }, user: n.config.user, password: n.config.password, poolMode: options.bouncer, serverLoginRetry: 15, queryWaitTimeout: 120, serverConnectTimeout: 15 }),
        ),
      )
    }
  }
  const endpoints = cluster.nodes.map((n, i) => (options.bouncer ? { ...bouncers[i]!.config(), name: n.name } : { ...n.config }))
  const pool = res.pool([], { endpoints, healthCheckIntervalMs: 1_000, failoverTimeoutMs: 60_000 })
  const failovers = recordFailovers(pool)
  await LedgerWriter.create(pool)
  const writer = new LedgerWriter(pool, { concurrency: 2, ...(options.intervalMs ? { intervalMs: options.intervalMs } : {}) }).start()
  await waitUntil(() => writer.acked.length > 10, { what: 'writes before the fault' })
  return { cluster, pool, writer, failovers, portOf: (name) => cluster.node(name).port }
}

async function verify(s: Setup, primary: RepmgrNode): Promise<void> {
  await s.writer.stop()
  expect(acksAfterLeaving(s.writer, s.failovers, s.portOf), 'acknowledged by a node the pool had left').toEqual([])
  expect(s.writer.entries.filter((e) => e.outcome === 'failed').map((e) => e.error?.message)).toEqual([])
  expect(await s.writer.check(primary.config)).toMatchObject({ lost: [], duplicated: [], unexpected: [] })
}

/** Ids in the ledger table of `node` (read directly, not through the pool). */
async function idsOn(node: RepmgrNode): Promise<Set<number>> {
  const client = new pg.Client(node.config)
  await client.connect()
  try {
    return new Set((await client.query<{ id: number }>(`SELECT id FROM ${LEDGER_TABLE}`)).rows.map((r) => r.id))
  } finally {
    await client.end()
  }
}

describe('repmgr', () => {
  it(
    'primary killed, a standby promoted by repmgrd: writes resume within 200 ms of it answering writable; the witness, listed as an endpoint, is never used',
    async () => {
      const s = await setup()
      const witness = s.cluster.witness
      const old = await s.cluster.killPrimary()
      const standbys = s.cluster.dataNodes.filter((n) => n !== old)
      const next = await firstWritable(standbys.map((n) => ({ name: n.name, config: n.config })), 60_000)
      const resumedMs = await resumedAfter(s.writer, next.at)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(200)
      expect(s.failovers.map((f) => [f.from, f.to])).toEqual([[old.name, next.name]])
      for (let i = 0; i < 20; i++) await s.pool.reader.query('SELECT 1')
      const w = s.pool.status().endpoints.find((e) => e.name === witness.name)!
      expect(w.role).toBe('mismatched-system')
      expect(w.queries).toEqual({ writes: 0, reads: 0, errors: 0 })
      await verify(s, s.cluster.node(next.name))
    },
    TIMEOUT,
  )

  for (const mode of [undefined, 'transaction', 'session'] as const) {
    it(
      `primary stopped, then started again as it was (writable, old timeline)${mode ? `, behind ${mode}-mode PgBouncers` : ''}: fenced, never written to, no acknowledgement from it`,
      async () => {
        // Writers that pause between writes, as real traffic does: the stop usually finds no write in
        // flight, so the next one reaches the old node's PgBouncer after the server is gone and waits
        // in its queue — to run on the old node when it comes back, unless the pool cut it.
        const s = await setup(mode ? { bouncer: mode, intervalMs: 150 } : { intervalMs: 150 })
        const old = (await s.cluster.primary())!
        await s.cluster.stopNode(old)
        const next = await s.cluster.waitForPrimary(old, 60_000)
        await waitUntil(() => s.pool.status().primary === next.name, { what: `the pool on ${next.name}`, timeout: 30_000 })
        const left = performance.now()
        const onOldBefore = await (async () => {
          // Ids the old node held when it stopped: nothing may be added to them from now on.
          await s.cluster.startAsIs(old)
          return idsOn(old)
        })()
        // Behind PgBouncer the node can stay unreachable to the pool for a while after it is back:
        // PgBouncer refuses logins for server_login_retry (15 s) after failing ones, and the node's
        // open breaker lets one trial probe through after 10 s, then 20 s. Unreachable or fenced, it
        // gets no traffic; here the pool must end up knowing it is a stale primary.
        await waitUntil(() => s.pool.status().endpoints.find((e) => e.name === old.name)?.role === 'fenced', { what: `${old.name} fenced`, timeout: 90_000 })
        // Give a proxy that queued statements for the old node every chance to run them there
        // (PgBouncer retries a failed server login after server_login_retry, 15 s).
        if (mode) await sleep(16_000)
        else await sleep(2_000)
        const onOldAfter = await idsOn(old)
        const added = [...onOldAfter].filter((id) => !onOldBefore.has(id))
        const ackedSinceLeft = new Set(s.writer.acked.filter((e) => e.endedAt > left).map((e) => e.id))
        // Whatever landed on the old node after the pool left it was never acknowledged to the application.
        expect(added.filter((id) => ackedSinceLeft.has(id))).toEqual([])
        expect(s.pool.status().primary).toBe(next.name)
        await verify(s, next)
      },
      TIMEOUT,
    )
  }
})
