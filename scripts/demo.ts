/**
 * `npm run demo`: a real failover under load, end to end, in about 15 seconds.
 *
 * Starts a throw-away PostgreSQL primary with two synchronous standbys on 127.0.0.1, drives writes
 * and reads through one FailoverPool, stops the primary hard (`pg_ctl stop -m immediate`),
 * promotes a standby and re-points the other, and then checks on the new primary that every
 * write the pool acknowledged is there. Exit code 0 when none is missing and the failover completed,
 * 1 otherwise.
 *
 * Rendering lives in ./demo-view.ts, the traffic in ./demo/workload.ts; this file only runs the story.
 */
import pg from 'pg'
import { type FailoverEvent, FailoverPool } from '../src/index.js'
import { type Cluster, type ClusterNode, startCluster } from '../test/support/cluster.js'
import { DemoView, type Summary, type ViewSnapshot, note, renderSummary, seconds } from './demo-view.js'
import { Workload, firstAtOrAfter, longestGap, sleep } from './demo/workload.js'

const STEADY_MS = 4_000
const AFTER_MS = 4_000
const STOP_TO_PROMOTE_MS = 1_000
/** No loop starts a request after this long, whatever happens. */
const TRAFFIC_DEADLINE_MS = 20_000
/** Budget of each cluster operation of the fault script. */
const STEP_TIMEOUT_MS = 12_000
/** Whole-process watchdog: past this, clean up and exit 1. */
const WATCHDOG_MS = 75_000

const startedAt = performance.now()
let cluster: Cluster | undefined
let pool: FailoverPool | undefined
let workload: Workload | undefined
let view: DemoView | undefined
let cleaning: Promise<void> | undefined

/** Ends the pool and destroys the cluster, once, without ever hanging for long. */
function cleanup(): Promise<void> {
  cleaning ??= (async () => {
    workload?.stop()
    if (pool && !pool.ending) await within(pool.end(), 3_000, 'pool.end()').catch(() => undefined)
    if (cluster) await within(cluster.destroy(), 15_000, 'cluster.destroy()').catch(() => undefined)
  })()
  return cleaning
}

let interrupted = false
function onSignal(signal: NodeJS.Signals): void {
  const code = signal === 'SIGINT' ? 130 : 143
  if (interrupted) process.exit(code)
  interrupted = true
  workload?.stop()
  view?.stop()
  note(`\n${signal}: stopping the traffic, the pool and the cluster...`)
  void cleanup().finally(() => process.exit(code))
}
// Registered before startCluster() so this runs before the harness's own teardown handler.
process.on('SIGINT', onSignal)
process.on('SIGTERM', onSignal)

function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${seconds(ms)}`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

function lsnValue(lsn: string | null | undefined): bigint | null {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(lsn ?? '')
  return m ? (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`) : null
}

/**
 * With `ANY 1 (...)` an acknowledged commit is flushed on at least one standby, not necessarily on
 * the one we would like to promote. So promote nodes[1] unless nodes[2] received strictly more WAL
 * (as any failover manager would), and re-point the other one to it.
 */
async function chooseNewPrimary(c: Cluster, preferred: ClusterNode, other: ClusterNode): Promise<{ target: ClusterNode; follower: ClusterNode; why: string }> {
  const received = async (n: ClusterNode): Promise<string | null> => {
    const [row] = await c.sql<{ lsn: string | null }>(n, 'SELECT pg_last_wal_receive_lsn()::text AS lsn')
    return row?.lsn ?? null
  }
  const [a, b] = await Promise.all([received(preferred), received(other)])
  const va = lsnValue(a)
  const vb = lsnValue(b)
  const why = `WAL received: ${preferred.name} ${a ?? '?'}, ${other.name} ${b ?? '?'}`
  if (va !== null && vb !== null && vb > va) return { target: other, follower: preferred, why: `${why}: ${other.name} is ahead` }
  return { target: preferred, follower: other, why }
}

async function main(): Promise<number> {
  note('Starting a local PostgreSQL cluster on 127.0.0.1: 1 primary + 2 synchronous standbys (initdb, pg_basebackup; a few seconds)...')
  const tCluster = performance.now()
  cluster = await startCluster({ standbys: 2, synchronous: true })
  const c = cluster
  const [n0, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode]
  note(`Cluster up in ${seconds(performance.now() - tCluster)}: ${n0.name} primary :${n0.port}, ${n1.name} standby :${n1.port}, ${n2.name} standby :${n2.port} (synchronous_standby_names = ANY 1); data in ${c.baseDir}, removed at the end.`)

  pool = new FailoverPool({
    endpoints: c.nodes.map((n) => ({ name: n.name, connectionString: n.url })),
    max: 8,
    connectionTimeoutMillis: 2_000,
    failoverTimeoutMs: 20_000,
    application_name: 'pgfp-demo',
  })
  const p = pool
  // Idle-client errors are re-emitted here as pg.Pool does; the pool has already acted on them.
  p.on('error', () => undefined)
  await p.query('CREATE TABLE demo_ledger (id bigint PRIMARY KEY, writer int, at timestamptz DEFAULT clock_timestamp())')

  const t0 = performance.now()
  const since = (t: number | null): number | null => (t === null ? null : t - t0)
  const w = new Workload(p, { writers: 4, readers: 2, deadline: t0 + TRAFFIC_DEADLINE_MS })
  workload = w
  let phase = 'steady'
  let failover: FailoverEvent | null = null
  const snapshot = (): ViewSnapshot => {
    const now = performance.now()
    const rates = w.rates(now)
    const wf = w.writeFailures
    const rf = w.readFailures
    return {
      elapsedMs: now - t0,
      phase,
      writesPerSec: rates.writes,
      readsPerSec: rates.reads,
      acked: w.acked,
      reads: w.reads,
      errors: { outcomeUnknown: wf.outcomeUnknown + rf.outcomeUnknown, noPrimary: wf.noPrimary + rf.noPrimary, other: wf.other + rf.other },
      inFlight: w.inFlightWrites + w.inFlightReads,
      waiting: p.waitingCount,
      status: p.status(),
    }
  }
  const v = new DemoView(snapshot)
  view = v
  p.on('failover', (e: FailoverEvent) => {
    failover ??= e
    v.log(v.p.paint('bold', `failover event: ${e.from ?? '-'} -> ${e.to} in ${e.durationMs} ms (epoch ${e.epoch}); reason: ${e.reason}`))
  })

  note(`Traffic: 4 writers inserting unique ids, 2 readers running count(*), all through one FailoverPool (max 8).${v.tty ? '' : ' One line per second:'}`)
  v.start()
  w.start()

  let faultAt: number | null = null
  let promotedAt: number | null = null
  let repointedAt: number | null = null
  let newPrimary = n1
  const problems: string[] = []
  try {
    await sleep(STEADY_MS)

    phase = 'primary stopped'
    faultAt = performance.now()
    v.log(`stopping ${n0.name} with pg_ctl stop -m immediate`)
    await within(c.stop(n0, 'immediate'), STEP_TIMEOUT_MS, `stopping ${n0.name}`)
    v.log(`${n0.name} is down (${Math.round(performance.now() - faultAt)} ms); writes wait for a verified primary`)
    await sleep(STOP_TO_PROMOTE_MS)

    const choice = await within(chooseNewPrimary(c, n1, n2), STEP_TIMEOUT_MS, 'reading the standbys\' WAL positions')
    newPrimary = choice.target
    phase = `promoting ${choice.target.name}`
    v.log(`promoting ${choice.target.name} (${choice.why})`)
    const tPromote = performance.now()
    await within(c.promote(choice.target), STEP_TIMEOUT_MS, `promoting ${choice.target.name}`)
    promotedAt = performance.now()
    v.log(`${choice.target.name} promoted (${Math.round(promotedAt - tPromote)} ms); its commits wait for a synchronous standby`)

    phase = `re-pointing ${choice.follower.name}`
    await within(c.repoint(choice.follower, choice.target), STEP_TIMEOUT_MS, `re-pointing ${choice.follower.name}`)
    repointedAt = performance.now()
    v.log(`${choice.follower.name} streams from ${choice.target.name} (${Math.round(repointedAt - promotedAt)} ms)`)

    // Recovered = the pool follows the new primary and a write was acknowledged after the promotion.
    const promoted = promotedAt
    const recovered = (): boolean => p.status().primary === choice.target.name && firstAtOrAfter(w.ackTimes, promoted) !== null
    const recoverBy = performance.now() + 8_000
    while (!recovered() && performance.now() < recoverBy) await sleep(20)
    if (recovered()) {
      phase = 'recovered'
      v.log(`recovered: writes acknowledged by ${choice.target.name} again`)
    } else {
      problems.push(`the pool did not resume writes on ${choice.target.name} within 8 s of the re-point (primary: ${p.status().primary ?? 'none'})`)
      v.log(`no write acknowledged on ${choice.target.name} within 8 s`)
    }
    await sleep(Math.max(0, Math.min(AFTER_MS, t0 + TRAFFIC_DEADLINE_MS - performance.now())))
  } catch (err) {
    const message = err instanceof Error ? err.message.split('\n')[0]! : String(err)
    problems.push(`fault script: ${message}`)
    v.log(`fault script failed: ${message}`)
  }

  w.stop()
  const trafficEndedAt = performance.now()
  const unfinishedLoops = !(await w.finished(3_000))
  v.stop()
  if (interrupted) return 130

  // Check every acknowledged id against the new primary directly, not through the pool.
  let found: Set<number> | null = null
  let verifyError: string | null = null
  const client = new pg.Client({ connectionString: newPrimary.url, connectionTimeoutMillis: 3_000, application_name: 'pgfp-demo verify' })
  client.on('error', () => undefined)
  try {
    await within(client.connect(), 5_000, 'connecting to the new primary')
    const res = await within(client.query<{ id: string }>('SELECT id::text AS id FROM demo_ledger'), 10_000, 'reading demo_ledger')
    found = new Set(res.rows.map((r) => Number(r.id)))
  } catch (err) {
    verifyError = err instanceof Error ? err.message : String(err)
  } finally {
    await within(client.end(), 1_000, 'closing the check connection').catch(() => undefined)
  }

  const missing = found === null ? [] : w.ackedIds.filter((id) => !found!.has(id)).sort((a, b) => a - b)
  // Bounded by the start and the end of the traffic, so a stall that never ended counts too.
  const gap = longestGap([t0, ...w.ackTimes, trafficEndedAt])
  const firstAfterPromotion = promotedAt === null ? null : firstAtOrAfter(w.ackTimes, promotedAt)
  const nameOfPort = new Map(c.nodes.map((n) => [n.port, n.name]))
  const summary: Summary = {
    // A demo that lost no write but never failed over has not shown what it promises either.
    ok: found !== null && missing.length === 0 && problems.length === 0,
    newPrimary: newPrimary.name,
    acked: w.acked,
    ackedBy: [...w.ackedByPort].map(([port, count]) => ({ node: nameOfPort.get(port) ?? `port ${port}`, count })),
    found: found === null ? null : w.acked - missing.length,
    missing,
    verifyError,
    failedWrites: w.writeFailures,
    outcomeUnknownCommitted: found === null ? null : w.failedIds.outcomeUnknown.filter((id) => found!.has(id)).length,
    otherMessages: [...w.otherMessages].sort((a, b) => b[1] - a[1]),
    reads: w.reads,
    failedReads: { ...w.readFailures },
    longestGap: gap === null ? null : { gapMs: gap.gapMs, fromMs: gap.from - t0, toMs: gap.to - t0 },
    faultAtMs: since(faultAt),
    promotedAtMs: since(promotedAt),
    repointedAtMs: since(repointedAt),
    failover,
    promotionToFirstWriteMs: promotedAt === null || firstAfterPromotion === null ? null : firstAfterPromotion - promotedAt,
    unfinishedLoops,
    problems,
    runtimeMs: performance.now() - startedAt,
  }
  renderSummary(summary)
  return summary.ok ? 0 : 1
}

const watchdog = setTimeout(() => {
  note(`\nThe demo did not finish within ${seconds(WATCHDOG_MS)}: giving up.`)
  void cleanup().finally(() => process.exit(1))
}, WATCHDOG_MS)
watchdog.unref()

let exitCode = 1
try {
  exitCode = await main()
} catch (err) {
  view?.stop()
  // After Ctrl-C the failure is only the teardown racing us; the signal handler reports and exits.
  if (!interrupted) {
    const message = err instanceof Error ? (err.stack ?? err.message) : String(err)
    note(`\nThe demo failed: ${message}`)
  }
} finally {
  await cleanup()
  clearTimeout(watchdog)
}
process.exitCode = exitCode
// Everything is closed; if some stray handle still holds the event loop, do not hang on it.
setTimeout(() => process.exit(exitCode), 2_000).unref()
