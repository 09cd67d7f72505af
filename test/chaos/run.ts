/**
 * One chaos run, end to end: a synchronous cluster (primary + two standbys), a FailoverPool with
 * the suite's flaky state store, the workload, the seeded faults one after another (each followed
 * by checks 1-5 against the current primary), then the final checks, the teardown and check 6.
 * Used by `npm run chaos` (scripts/chaos.ts) and by test/integration/chaos.test.ts.
 */
import { readFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import { FailoverPool } from '../../src/index.js'
import { type Cluster, startCluster } from '../support/cluster.js'
import { type CheckResult, DEFAULT_LIMITS, type Evidence, type FaultFigures, type Limits, runChecks } from './checks.js'
import { now, sleep, waitUntil, within } from './clock.js'
import { type FaultRecord, injectFault } from './faults.js'
import { FlakyStateStore } from './flaky-store.js'
import { HaTool } from './ha.js'
import { ReadLedger, WriteLedger } from './ledger.js'
import { PoolObserver } from './observer.js'
import { formatFaultLine, formatProgress } from './progress.js'
import { HandleTracker, HeapSampler, type ResourceEvidence, UnhandledErrors, checkResources, mb, tearDown } from './resources.js'
import { DEFAULT_FAULTS, type FaultPlan, type KindSpec, describePlan, formatKindSpec, makeSchedule } from './schedule.js'
import { readSnapshot } from './snapshot.js'
import { TABLE_SQL, Workload } from './workload.js'

export interface ChaosOptions {
  readonly seed: number
  /** Number of faults (default 12). */
  readonly faults?: number
  readonly kinds?: readonly KindSpec[]
  readonly order?: 'random' | 'cycle'
  readonly steadyMs?: readonly [number, number]
  /** No fault starts after this many ms of traffic (default: no limit). */
  readonly durationMs?: number
  readonly writers?: number
  readonly txWriters?: number
  readonly readers?: number
  readonly pauseMs?: number
  /** Open-loop writes per second, issued whatever is outstanding (default 50). */
  readonly openLoopPerSec?: number
  readonly limits?: Partial<Limits>
  /** Heap growth (last vs first sample) above which check 6 fails (default 0.5 = 50%). */
  readonly maxHeapGrowth?: number
  /** Notes, per-fault results and (with `progress`) one line per second. */
  readonly log?: (line: string) => void
  readonly progress?: boolean
}

export interface ChaosResult {
  readonly seed: number
  readonly replay: string
  readonly schedule: readonly FaultPlan[]
  readonly faults: readonly FaultRecord[]
  readonly figures: readonly FaultFigures[]
  /** Checks 1-6 at the end of the run. */
  readonly checks: readonly CheckResult[]
  /** Checks 1-5 after each fault, against the primary of that moment. */
  readonly perFault: ReadonlyArray<{ readonly index: number; readonly checks: readonly CheckResult[] }>
  /** Set when the harness itself failed (a cluster operation timed out, ...): the run is void. */
  readonly harnessError: string | null
  readonly pass: boolean
  readonly ledger: WriteLedger
  readonly reads: ReadLedger
  readonly observer: PoolObserver | null
  readonly ha: HaTool | null
  readonly heap: HeapSampler
  readonly storeStats: FlakyStateStore['stats']
  /** Workload start and stop (wall ms). */
  readonly t0: number
  readonly t1: number
  readonly versions: Readonly<Record<string, string>>
  /** How long the pool took to see the whole topology again before each fault, ms. */
  readonly settleMs: readonly number[]
  /** Library behaviour worth reporting that none of the six checks covers. */
  readonly findings: readonly string[]
  readonly notes: readonly string[]
}

export const APPLICATION_NAME = 'pgfp-chaos'

export function replayCommand(o: ChaosOptions): string {
  const args = [`--seed ${o.seed}`]
  if (o.faults !== undefined && o.faults !== DEFAULT_FAULTS && o.durationMs === undefined) args.push(`--faults ${o.faults}`)
  if (o.kinds && o.kinds.length > 0) args.push(`--kinds ${o.kinds.map(formatKindSpec).join(',')}`)
  if (o.order === 'cycle') args.push('--order cycle')
  if (o.steadyMs) args.push(`--steady-ms ${o.steadyMs[0]}-${o.steadyMs[1]}`)
  if (o.durationMs !== undefined) args.push(`--duration ${Math.round(o.durationMs / 1000)}`)
  return `npx tsx scripts/chaos.ts ${args.join(' ')}`
}

export async function runChaos(options: ChaosOptions): Promise<ChaosResult> {
  const log = options.log ?? (() => undefined)
  const limits: Limits = { ...DEFAULT_LIMITS, ...options.limits }
  const schedule = makeSchedule({ seed: options.seed, faults: options.faults, kinds: options.kinds, order: options.order, steadyMs: options.steadyMs })
  const notes: string[] = []
  let t0 = now()
  const shown = schedule.slice(0, 20).map((p) => `F${p.index} ${p.kind} ${p.target}`)
  log(`schedule (seed ${options.seed}): ${shown.join(', ')}${schedule.length > shown.length ? `, ... (${schedule.length} planned)` : ''}`)
  const note = (line: string): void => {
    const text = `[${((now() - t0) / 1000).toFixed(1).padStart(6)}s] ${line}`
    notes.push(text)
    log(text)
  }

  const unhandled = new UnhandledErrors()
  unhandled.install()
  const tracker = new HandleTracker()
  tracker.enable()
  const heap = new HeapSampler()
  const ledger = new WriteLedger()
  const reads = new ReadLedger()
  const store = new FlakyStateStore()
  const faults: FaultRecord[] = []
  const perFault: Array<{ index: number; checks: CheckResult[] }> = []
  const settleMs: number[] = []
  const findings: string[] = []
  let harnessError: string | null = null
  let cluster: Cluster | null = null
  let pool: FailoverPool | null = null
  let observer: PoolObserver | null = null
  let workload: Workload | null = null
  let ha: HaTool | null = null
  let progress: NodeJS.Timeout | null = null
  let current = 'warm-up'
  let t1 = 0
  let finalChecks: CheckResult[] = []
  let figures: FaultFigures[] = []
  let hungRequests = 0
  const versions: Record<string, string> = { node: process.version, pg: packageVersion('pg'), 'pg-failover-pool': ownVersion() }

  try {
    cluster = await startCluster({ standbys: 2, synchronous: true })
    const c = cluster
    versions.postgres = (await c.sql<{ v: string }>(c.nodes[0]!, 'SELECT current_setting($$server_version$$) AS v'))[0]?.v ?? '?'
    ha = new HaTool(c, note)
    const h = ha
    note(`cluster up: ${c.nodes.map((n) => `${n.name}:${n.port}`).join(', ')} (synchronous, ANY 1); seed ${options.seed}`)
    pool = new FailoverPool({
      endpoints: c.nodes.map((n) => ({ ...n.config, name: n.name })),
      max: 10,
      connectionTimeoutMillis: 2_000,
      failoverTimeoutMs: 15_000,
      probeTimeoutMs: 1_000,
      healthCheckIntervalMs: 500,
      halfOpenAfterMs: 1_000,
      maxHalfOpenAfterMs: 4_000,
      application_name: APPLICATION_NAME,
      stateStore: store,
      stateStoreTimeoutMs: 500,
    })
    const p = pool
    observer = new PoolObserver(p, process.env.CHAOS_DEBUG ? note : undefined)
    const obs = observer
    await within(p.query(TABLE_SQL), 20_000, 'the first query').catch((err: Error) => {
      throw new Error(`${err.message}; pool status: ${JSON.stringify(p.status())}`)
    })
    await c.waitForReplication(h.primary)
    const portOf = (name: string): number => c.nodes.find((n) => n.name === name)?.port ?? 0
    workload = new Workload(p, ledger, reads, {
      writers: options.writers ?? 4,
      txWriters: options.txWriters ?? 1,
      readers: options.readers ?? 2,
      pauseMs: options.pauseMs ?? 3,
      openLoopPerSec: options.openLoopPerSec ?? 50,
      openLoopMax: 100,
      portOf,
    })
    const w = workload
    t0 = now()
    w.start()
    if (options.progress) {
      progress = setInterval(() => log(formatProgress(now() - t0, current, ledger, reads, p.status(), h.primary.name, w)), 1_000)
    }
    await sleep(1_000)
    heap.sample('warm-up')

    for (const plan of schedule) {
      if (options.durationMs !== undefined && now() - t0 > options.durationMs) {
        note(`duration reached: ${faults.length} of ${schedule.length} faults run`)
        break
      }
      const s0 = now()
      const seen = await waitUntil(() => poolSeesTopology(p, h), 15_000, 20)
      settleMs.push(now() - s0)
      const roles = p.status().endpoints.map((e) => `${e.name} ${e.role}${e.breaker === 'closed' ? '' : ` (breaker ${e.breaker})`}`).join(', ')
      if (!seen) note(`the pool did not see ${h.primary.name} as primary with two standbys within 15 s: ${roles}`)
      for (const e of p.status().endpoints) {
        if (e.role !== 'fenced' || e.name === h.primary.name) continue
        const finding = `${e.name} is a streaming standby again (rejoined with pg_rewind), yet the pool still reports it as 'fenced' and sends it no reads`
        if (!findings.includes(finding)) {
          findings.push(finding)
          note(`FINDING: ${finding} (first seen before F${plan.index}; roles: ${roles})`)
        }
      }
      current = `F${plan.index}/${schedule.length} steady`
      await sleep(plan.steadyMs)
      const target = h.resolve(plan.target)
      current = `F${plan.index}/${schedule.length} ${plan.kind} ${target.name}`
      note(`F${plan.index}: ${plan.kind} on ${target.name} (${describePlan(plan)})`)
      const rec = await injectFault(plan, { cluster: c, ha: h, store, observer: obs, ledger, applicationName: APPLICATION_NAME, note })
      faults.push(rec)
      current = `F${plan.index}/${schedule.length} recovered`
      // Judge the fault once writes have resumed (check 5 fails if they do not within its limit).
      const acks = ledger.acks
      await waitUntil(() => acks.length > 0 && acks.time(acks.length - 1) > rec.injected, limits.maxGapMs, 10)
      const snapshot = await readSnapshot(h.primary)
      const evidence = makeEvidence(snapshot, now(), false)
      const { checks, figures: figs } = runChecks(evidence)
      perFault.push({ index: plan.index, checks })
      const h6 = heap.sample(`F${plan.index}`)
      note(`${formatFaultLine(rec, figs[figs.length - 1]!, checks)} | heap ${mb(h6.heapUsed)}${unhandled.errors.length ? `, ${unhandled.errors.length} unhandled errors` : ''}`)
      for (const check of checks) for (const v of check.violations) note(`  check ${check.id}: ${v}`)
    }
    current = 'cool-down'
    await sleep(1_500)
  } catch (err) {
    harnessError = err instanceof Error ? `${err.message}` : String(err)
    note(`HARNESS ERROR: ${harnessError}`)
  } finally {
    t1 = now()
    if (progress) clearInterval(progress)
    workload?.stop()
    if (workload && !(await workload.finished(20_000))) {
      hungRequests = workload.inFlightWrites + workload.inFlightReads
      note(`${hungRequests} requests still in flight 20 s after the workload stopped`)
    }
  }

  try {
    // Even after a harness error the final checks run if the primary answers: they help diagnose.
    if (cluster && ha) {
      const snapshot = await readSnapshot(ha.primary)
      const result = runChecks(makeEvidence(snapshot, t1, true))
      finalChecks = result.checks
      figures = result.figures
    }
  } catch (err) {
    harnessError ??= `final checks: ${(err as Error).message}`
  }
  const { error: teardownError, ...left } = await tearDown(pool, cluster, tracker, APPLICATION_NAME)
  harnessError ??= teardownError
  observer?.detach()
  unhandled.uninstall()
  const resources: ResourceEvidence = {
    ...left,
    unhandled: unhandled.errors,
    hungRequests,
    heap: heap.summary(),
    maxHeapGrowth: options.maxHeapGrowth ?? 0.5,
  }
  const check6 = checkResources(resources)
  const checks = [...finalChecks, check6]
  const pass = harnessError === null && finalChecks.length === 5 && checks.every((c) => c.pass) && perFault.every((f) => f.checks.every((c) => c.pass))
  return {
    seed: options.seed,
    replay: replayCommand(options),
    schedule,
    faults,
    figures,
    checks,
    perFault,
    harnessError,
    pass,
    ledger,
    reads,
    observer,
    ha,
    heap,
    storeStats: store.stats,
    t0,
    t1,
    versions,
    settleMs,
    findings,
    notes,
  }

  function makeEvidence(snapshot: Awaited<ReturnType<typeof readSnapshot>>, windowEnd: number, final: boolean): Evidence {
    return {
      ledger,
      primacy: ha!.primacy,
      faults,
      failovers: observer!.failovers,
      downs: observer!.downs,
      snapshot,
      windowEnd,
      final,
      limits,
    }
  }
}

/**
 * The pool's view matches the HA tool's: the right primary and both others reachable standbys
 * (a standby the pool still calls `fenced` is accepted here and reported as a finding).
 */
function poolSeesTopology(pool: FailoverPool, ha: HaTool): boolean {
  const status = pool.status()
  if (status.primary !== ha.primary.name) return false
  return status.endpoints.every((e) => e.name === ha.primary.name || ((e.role === 'standby' || e.role === 'fenced') && e.breaker === 'closed'))
}

function packageVersion(name: string): string {
  try {
    const require = createRequire(import.meta.url)
    return (require(`${name}/package.json`) as { version: string }).version
  } catch {
    return '?'
  }
}

function ownVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version
  } catch {
    return '?'
  }
}
