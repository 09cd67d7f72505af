/**
 * `npm run bench:ha`: failover through the real HA managers (Patroni on etcd, repmgr), with and
 * without PgBouncer, measured as writable → first acknowledged write, several runs each; writes
 * bench/HA.md. Figures, not pass/fail (the scenario tests in test/integration/ha-*.test.ts assert
 * the targets).
 */
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { finishScenario, firstWritable, resumedAfter, type ScenarioReport } from '../test/support/ha-scenario.js'
import { type HaSetup, PGBOUNCER_DEFAULT_RETRY, patroniSetup, repmgrSetup, type Track } from '../test/support/ha-setups.js'
import { whenWritable } from '../test/support/ledger-writer.js'
import { median } from './overhead.js'

const runs = Number(process.env.BENCH_HA_RUNS ?? 3)

interface Scenario {
  readonly name: string
  readonly target: number
  /** Starts a setup, makes the fault, returns ms from writable to first write and the ledger report. */
  run(track: Track): Promise<{ resumedMs: number; report: ScenarioReport }>
}

async function finish<C>(s: HaSetup<C>, resumedMs: number, primary: { config: object }) {
  return { resumedMs, report: await finishScenario(s.writer, s.failovers, s.portOf, primary) }
}

const patroniSwitchover = (bouncer?: 'session' | 'transaction'): Scenario => ({
  name: `Patroni switchover${bouncer ? `, ${bouncer}-mode PgBouncer on every member` : ''}`,
  target: 200,
  async run(track) {
    const s = await patroniSetup(track, bouncer ? { bouncer } : {})
    const old = (await s.cluster.leader())!
    const candidate = s.cluster.members.find((m) => m !== old)!
    const writable = whenWritable(candidate.config, 60_000)
    await s.cluster.switchover(candidate)
    return finish(s, await resumedAfter(s.writer, await writable), candidate)
  },
})

const scenarios: Scenario[] = [
  {
    name: 'Patroni, leader postmaster killed (restart in place, new timeline)',
    target: 500,
    async run(track) {
      const s = await patroniSetup(track)
      const leader = (await s.cluster.leader())!
      await s.cluster.killPostmaster(leader)
      return finish(s, await resumedAfter(s.writer, await whenWritable(leader.config)), leader)
    },
  },
  {
    name: 'Patroni, leader node lost (failover after ttl)',
    target: 200,
    async run(track) {
      const s = await patroniSetup(track)
      const old = (await s.cluster.leader())!
      await s.cluster.killMember(old)
      const next = await firstWritable(s.cluster.members.filter((m) => m !== old), 60_000)
      return finish(s, await resumedAfter(s.writer, next.at), s.cluster.member(next.name))
    },
  },
  {
    name: 'Patroni synchronous mode, leader node lost',
    target: 200,
    async run(track) {
      const s = await patroniSetup(track, { synchronousMode: true })
      const old = (await s.cluster.leader())!
      await s.cluster.killMember(old)
      const next = await firstWritable(s.cluster.members.filter((m) => m !== old), 60_000)
      return finish(s, await resumedAfter(s.writer, next.at), s.cluster.member(next.name))
    },
  },
  patroniSwitchover(),
  patroniSwitchover('session'),
  patroniSwitchover('transaction'),
  {
    name: 'repmgr, primary killed, standby promoted by repmgrd',
    target: 200,
    async run(track) {
      const s = await repmgrSetup(track)
      const old = await s.cluster.killPrimary()
      const next = await firstWritable(s.cluster.dataNodes.filter((n) => n !== old), 60_000)
      return finish(s, await resumedAfter(s.writer, next.at), s.cluster.node(next.name))
    },
  },
  {
    name: 'repmgr, primary stopped (transaction-mode PgBouncer on every node), promoted by repmgrd',
    target: 200,
    async run(track) {
      const s = await repmgrSetup(track, { bouncer: 'transaction', bouncerSettings: PGBOUNCER_DEFAULT_RETRY, intervalMs: 150 })
      const old = (await s.cluster.primary())!
      const watching = firstWritable(s.cluster.dataNodes.filter((n) => n !== old), 60_000)
      await s.cluster.stopNode(old)
      const next = await watching
      return finish(s, await resumedAfter(s.writer, next.at), s.cluster.node(next.name))
    },
  },
]

async function main(): Promise<void> {
  const rows: string[] = []
  for (const scenario of scenarios) {
    const samples: Array<{ resumedMs: number; report: ScenarioReport }> = []
    for (let i = 0; i < runs; i++) {
      const owned: Array<{ destroy(): unknown } | { end(): unknown }> = []
      const track: Track = (r) => (owned.push(r), r)
      try {
        samples.push(await scenario.run(track))
        const last = samples.at(-1)!
        console.log(`${scenario.name}, run ${i + 1}: ${last.resumedMs.toFixed(1)} ms; ${last.report.acked} acked, ${last.report.unknown} unknown, ${last.report.lost.length} lost`)
      } finally {
        for (const r of owned.reverse()) await Promise.resolve().then(() => ('end' in r ? r.end() : r.destroy())).catch(() => undefined)
      }
    }
    const ms = samples.map((s) => s.resumedMs)
    const sum = (f: (r: ScenarioReport) => number) => samples.reduce((a, s) => a + f(s.report), 0)
    rows.push(
      `| ${scenario.name} | ${ms.map((m) => m.toFixed(1)).join(', ')} | **${median(ms).toFixed(1)}** | ≤ ${scenario.target} | ${sum((r) => r.acked)} | ${sum((r) => r.unknown)} | ${sum((r) => r.lost.length)} | ${sum((r) => r.acksAfterLeaving.length)} |`,
    )
  }
  const lines = [
    '# Failover through real HA managers',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`npm run bench:ha\` on ${os.cpus().length} × ${os.cpus()[0]?.model ?? 'CPU'}, Node ${process.version};`,
    "Debian's Patroni 3.0.2 on etcd 3.4 (ttl 10, loop_wait 2, retry_timeout 4), repmgr 5.3 (repmgrd failover=automatic,",
    'a witness), PgBouncer 1.18, PostgreSQL 15, every process on loopback. Two writers write through a FailoverPool',
    "configured as that manager's user would (Patroni: `haManager: patroni({ urls })`). Measured from the new (or",
    'restarted) primary first answering writable (fresh connections polled every 2 ms) to the first write the pool',
    `acknowledged after that; ${runs} runs each, a fresh cluster per run. The ledger columns are totals over the runs:`,
    'acknowledged writes, outcome-unknown writes (in flight at the fault), acknowledged writes missing on the final',
    'primary, and writes acknowledged by a node after the pool had left it.',
    '',
    '| scenario | writable → write, each run (ms) | median (ms) | target (ms) | acked | unknown | acked lost | acked after leaving |',
    '|---|---|---:|---:|---:|---:|---:|---:|',
    ...rows,
    '',
  ]
  const out = fileURLToPath(new URL('./HA.md', import.meta.url))
  writeFileSync(out, lines.join('\n'))
  console.log(`wrote ${out}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
