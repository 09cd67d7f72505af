/**
 * A FailoverPool against real Patroni 3 clusters on etcd (Debian's packages, loopback), with the
 * pool's endpoints on the members directly or on a PgBouncer in front of each. Every scenario runs
 * two writers with a write ledger and checks: when writes resumed after the new (or restarted)
 * leader answered writable, that no write was acknowledged by a node after the pool had left it,
 * and that every acknowledged write is on the final leader exactly once.
 */
import { describe, expect, it } from 'vitest'
import { type FailoverPool, patroni } from '../../src/index.js'
import { startPatroni, type PatroniCluster, type PatroniMember } from '../support/ha/patroni.js'
import { type PgBouncer, startPgBouncer } from '../support/ha/pgbouncer.js'
import { acksAfterLeaving, firstWritable, recordFailovers, resumedAfter } from '../support/ha-scenario.js'
import { LedgerWriter, whenWritable } from '../support/ledger-writer.js'
import { useResources } from '../support/pools.js'
import { waitUntil } from '../support/wait.js'

const res = useResources()
const TIMEOUT = 180_000

interface Setup {
  readonly cluster: PatroniCluster
  readonly pool: FailoverPool
  readonly writer: LedgerWriter
  readonly failovers: ReturnType<typeof recordFailovers>
  readonly bouncers: PgBouncer[]
  /** The PostgreSQL port of a member (what inet_server_port() reports), by endpoint name. */
  portOf(name: string): number
}

/** A Patroni cluster, optionally a PgBouncer in front of each member, and a FailoverPool with a ledger writing. */
async function setup(options: { synchronousMode?: boolean; bouncer?: 'session' | 'transaction' } = {}): Promise<Setup> {
  const cluster = res.track(await startPatroni({ members: 3, ...(options.synchronousMode ? { synchronousMode: true } : {}) }))
  const bouncers: PgBouncer[] = []
  if (options.bouncer) {
    for (const m of cluster.members) {
      bouncers.push(res.track(await startPgBouncer({ target: { host: m.host, port: m.port }, user: m.config.user, password: m.config.password, poolMode: options.bouncer })))
    }
  }
  const endpoints = cluster.members.map((m, i) => (options.bouncer ? { ...bouncers[i]!.config(), name: m.name } : { ...m.config }))
  // What a Patroni user configures: the members (or their bouncers) and Patroni's REST API as a second opinion.
  const pool = res.pool([], { endpoints, haManager: patroni({ urls: cluster.members.map((m) => m.restUrl) }), healthCheckIntervalMs: 1_000, failoverTimeoutMs: 60_000 })
  const failovers = recordFailovers(pool)
  await LedgerWriter.create(pool)
  const writer = new LedgerWriter(pool, { concurrency: 2 }).start()
  await waitUntil(() => writer.acked.length > 10, { what: 'writes before the fault' })
  return { cluster, pool, writer, failovers, bouncers, portOf: (name) => cluster.member(name).port }
}

/** Stops the writers and checks the ledger against the final leader. */
async function verify(s: Setup, leader: PatroniMember): Promise<void> {
  await s.writer.stop()
  expect(acksAfterLeaving(s.writer, s.failovers, s.portOf), 'acknowledged by a node the pool had left').toEqual([])
  expect(s.writer.entries.filter((e) => e.outcome === 'failed').map((e) => e.error?.message)).toEqual([])
  expect(await s.writer.check(leader.config)).toMatchObject({ lost: [], duplicated: [], unexpected: [] })
}

describe('Patroni', () => {
  it(
    'leader postmaster killed: Patroni restarts it in place (read-only, then promoted to a new timeline); writes resume within 500 ms of it answering writable',
    async () => {
      const s = await setup()
      const leader = (await s.cluster.leader())!
      const timeline = await s.cluster.timeline(leader)
      await s.cluster.killPostmaster(leader)
      const writableAt = await whenWritable(leader.config)
      const resumedMs = await resumedAfter(s.writer, writableAt)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(500)
      expect(await s.cluster.timeline(leader)).toBe(timeline + 1)
      expect(s.pool.status()).toMatchObject({ primary: leader.name, failovers: 0, haManager: { kind: 'patroni', ok: true } })
      await verify(s, leader)
    },
    TIMEOUT,
  )

  it(
    'leader node lost (Patroni and postmaster killed): writes resume within 200 ms of the new leader answering writable; the old leader rejoins with pg_rewind and reads again',
    async () => {
      const s = await setup()
      const old = (await s.cluster.leader())!
      const others = s.cluster.members.filter((m) => m !== old)
      await s.cluster.killMember(old)
      const next = await firstWritable(others.map((m) => ({ name: m.name, config: m.config })), 60_000)
      const resumedMs = await resumedAfter(s.writer, next.at)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(200)
      expect(s.pool.status().primary).toBe(next.name)
      await s.cluster.restartMember(old)
      await waitUntil(() => s.pool.status().endpoints.find((e) => e.name === old.name)?.role === 'standby', { what: `${old.name} back as a standby`, timeout: 60_000 })
      const reads = new Set<number>()
      for (let i = 0; i < 20; i++) reads.add((await s.pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port)
      expect(reads.has(old.port)).toBe(true)
      await verify(s, s.cluster.member(next.name))
    },
    TIMEOUT,
  )

  it(
    'patronictl switchover: writes resume within 200 ms of the candidate answering writable',
    async () => {
      const s = await setup()
      const old = (await s.cluster.leader())!
      const candidate = s.cluster.members.find((m) => m !== old)!
      const writable = whenWritable(candidate.config, 60_000)
      await s.cluster.switchover(candidate)
      const resumedMs = await resumedAfter(s.writer, await writable)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(200)
      expect(s.failovers.map((f) => [f.from, f.to])).toEqual([[old.name, candidate.name]])
      await verify(s, candidate)
    },
    TIMEOUT,
  )

  it(
    'synchronous mode, leader node lost: not one acknowledged write is lost',
    async () => {
      const s = await setup({ synchronousMode: true })
      const old = (await s.cluster.leader())!
      await s.cluster.killMember(old)
      const next = await s.cluster.waitForLeader(old, 60_000)
      await whenWritable(next.config, 60_000)
      await resumedAfter(s.writer, performance.now())
      await verify(s, next)
    },
    TIMEOUT,
  )

  for (const mode of ['session', 'transaction'] as const) {
    it(
      `switchover with a ${mode}-mode PgBouncer in front of every member: writes resume within 200 ms of the candidate answering writable`,
      async () => {
        const s = await setup({ bouncer: mode })
        const old = (await s.cluster.leader())!
        const candidate = s.cluster.members.find((m) => m !== old)!
        const writable = whenWritable(candidate.config, 60_000)
        await s.cluster.switchover(candidate)
        const resumedMs = await resumedAfter(s.writer, await writable)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(200)
        expect(s.pool.status().primary).toBe(candidate.name)
        await verify(s, candidate)
      },
      TIMEOUT,
    )
  }
})
