/**
 * A FailoverPool against real Patroni 3 clusters on etcd (Debian's packages, loopback), with the
 * pool's endpoints on the members directly, on a PgBouncer in front of each, or on one HAProxy.
 * Every scenario runs two writers with a write ledger and checks: when writes resumed after the new
 * (or restarted) leader answered writable, that no write was acknowledged by a node after the pool
 * had left it, and that every acknowledged write is on the final leader exactly once.
 */
import { describe, expect, it } from 'vitest'
import { startHAProxyForPatroni } from '../support/ha/haproxy.js'
import { startPatroni } from '../support/ha/patroni.js'
import { finishScenario, firstWritable, resumedAfter, violations } from '../support/ha-scenario.js'
import { patroniSetup } from '../support/ha-setups.js'
import { LedgerWriter, whenWritable } from '../support/ledger-writer.js'
import { useResources } from '../support/pools.js'
import { waitUntil } from '../support/wait.js'

/**
 * Writes resume within this long of the new primary answering writable: a bound that a missed
 * notice breaks (Patroni's loop and repmgrd's monitoring interval are seconds, a health check 2 s),
 * not a benchmark (bench/HA.md has the measured medians, ~5 ms). 200 ms was exceeded under CPU
 * load on 2 cores (211 and 235 ms, fresh connections through SCRAM and PgBouncer starved of CPU).
 */
const RESUME_BOUND_MS = 500
const res = useResources()
const TIMEOUT = 180_000
const NONE = { acksAfterLeaving: [], failed: [], lost: [], duplicated: [], unexpected: [] }

describe('Patroni', () => {
  it(
    'leader postmaster killed: Patroni restarts it in place (read-only, then promoted to a new timeline); writes resume within 500 ms of it answering writable',
    async () => {
      const s = await patroniSetup(res.track)
      const leader = (await s.cluster.leader())!
      const timeline = await s.cluster.timeline(leader)
      await s.cluster.killPostmaster(leader)
      const resumedMs = await resumedAfter(s.writer, await whenWritable(leader.config))
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(500)
      expect(await s.cluster.timeline(leader)).toBe(timeline + 1)
      expect(s.pool.status()).toMatchObject({ primary: leader.name, failovers: 0, haManager: { kind: 'patroni', ok: true } })
      expect(violations(await finishScenario(s.writer, s.failovers, s.portOf, leader))).toEqual(NONE)
    },
    TIMEOUT,
  )

  it(
    'leader node lost (Patroni and postmaster killed): writes resume within 500 ms of the new leader answering writable; the old leader rejoins with pg_rewind and reads again',
    async () => {
      const s = await patroniSetup(res.track)
      const old = (await s.cluster.leader())!
      await s.cluster.killMember(old)
      const next = await firstWritable(s.cluster.members.filter((m) => m !== old), 60_000)
      const resumedMs = await resumedAfter(s.writer, next.at)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(RESUME_BOUND_MS)
      expect(s.pool.status().primary).toBe(next.name)
      await s.cluster.restartMember(old)
      await waitUntil(() => s.pool.status().endpoints.find((e) => e.name === old.name)?.role === 'standby', { what: `${old.name} back as a standby`, timeout: 60_000 })
      const reads = new Set<number>()
      for (let i = 0; i < 20; i++) reads.add((await s.pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port)
      expect(reads.has(old.port)).toBe(true)
      // Asynchronous replication: the killed leader's last acknowledged commits may never have been sent.
      const report = await finishScenario(s.writer, s.failovers, s.portOf, s.cluster.member(next.name), { port: s.portOf(old.name) })
      expect(violations(report)).toEqual(NONE)
      if (report.lostInReplicationWindow.length > 0) console.log(`lost to asynchronous replication: ${report.lostInReplicationWindow.length} of ${report.acked}`)
    },
    TIMEOUT,
  )

  it(
    'patronictl switchover: writes resume within 500 ms of the candidate answering writable',
    async () => {
      const s = await patroniSetup(res.track)
      const old = (await s.cluster.leader())!
      const candidate = s.cluster.members.find((m) => m !== old)!
      const writable = whenWritable(candidate.config, 60_000)
      await s.cluster.switchover(candidate)
      const resumedMs = await resumedAfter(s.writer, await writable)
      expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(RESUME_BOUND_MS)
      expect(s.failovers.map((f) => [f.from, f.to])).toEqual([[old.name, candidate.name]])
      expect(violations(await finishScenario(s.writer, s.failovers, s.portOf, candidate))).toEqual(NONE)
    },
    TIMEOUT,
  )

  it(
    'synchronous mode, leader node lost: not one acknowledged write is lost',
    async () => {
      const s = await patroniSetup(res.track, { synchronousMode: true })
      const old = (await s.cluster.leader())!
      await s.cluster.killMember(old)
      const next = await s.cluster.waitForLeader(old, 60_000)
      await resumedAfter(s.writer, await whenWritable(next.config, 60_000))
      const report = await finishScenario(s.writer, s.failovers, s.portOf, next)
      expect(violations(report)).toEqual(NONE)
      expect(report.acked).toBeGreaterThan(10)
    },
    TIMEOUT,
  )

  for (const mode of ['session', 'transaction'] as const) {
    it(
      `switchover with a ${mode}-mode PgBouncer in front of every member: writes resume within 500 ms of the candidate answering writable`,
      async () => {
        const s = await patroniSetup(res.track, { bouncer: mode })
        const old = (await s.cluster.leader())!
        const candidate = s.cluster.members.find((m) => m !== old)!
        const writable = whenWritable(candidate.config, 60_000)
        await s.cluster.switchover(candidate)
        const resumedMs = await resumedAfter(s.writer, await writable)
        expect(resumedMs, `writable -> first write ${resumedMs.toFixed(0)} ms`).toBeLessThanOrEqual(RESUME_BOUND_MS)
        expect(s.pool.status().primary).toBe(candidate.name)
        expect(violations(await finishScenario(s.writer, s.failovers, s.portOf, candidate))).toEqual(NONE)
      },
      TIMEOUT,
    )
  }

  it(
    'one endpoint through HAProxy (GET /primary checks): a switchover is followed without a restart, as soon as HAProxy routes to the new leader; no acknowledged write lost',
    async () => {
      const cluster = res.track(await startPatroni({ members: 3 }))
      const proxy = res.track(await startHAProxyForPatroni(cluster, { interMs: 500, fall: 2, rise: 1 }))
      const old = (await cluster.leader())!
      await proxy.waitForActive(old.name)
      // All the pool knows is HAProxy's address: the node behind it changes under the same endpoint.
      const pool = res.pool([], { endpoints: [{ ...proxy.config(), name: 'haproxy' }], healthCheckIntervalMs: 500, failoverTimeoutMs: 60_000 })
      await LedgerWriter.create(pool)
      const writer = new LedgerWriter(pool, { concurrency: 2 }).start()
      await waitUntil(() => writer.acked.length > 10, { what: 'writes before the switchover' })
      const candidate = cluster.members.find((m) => m !== old)!
      const writable = whenWritable(candidate.config, 60_000)
      await cluster.switchover(candidate)
      // Bounded by HAProxy, not the pool: fall (2) checks every 500 ms to mark the old leader down.
      expect(await resumedAfter(writer, await writable)).toBeLessThan(5_000)
      await waitUntil(async () => (await pool.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port === candidate.port, { what: 'writes on the new leader', timeout: 10_000 })
      // One endpoint: "acknowledged after leaving" cannot be told apart here; the ledger still must hold.
      const report = await finishScenario(writer, [], () => 0, candidate)
      expect({ ...violations(report), acksAfterLeaving: [] }).toEqual(NONE)
      // The same endpoint all along, now on the leader's new timeline: no failover from the pool's view.
      expect(pool.status()).toMatchObject({ primary: 'haproxy', failovers: 0 })
    },
    TIMEOUT,
  )
})
