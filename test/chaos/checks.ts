/**
 * The six checks, as pure functions of the evidence: the ledger, the HA tool's primacy intervals,
 * the fault records, the pool's events and a snapshot of the rows on the (current or final)
 * primary. Each returns pass/fail, a one-line summary and the first few violations.
 *
 * 1. every acknowledged write is on the primary;
 * 2. every acknowledged write (and every row) was accepted by the node that was the HA tool's
 *    primary at its clock_timestamp();
 * 3. nothing written after a fault reached the old primary while it ran writable;
 * 4. failures were reported honestly: a clean failure's id is never on the primary, no id has two
 *    rows (nothing replayed), nothing left pending;
 * 5. writes resumed after every fault, the first write on each new primary came within a bound,
 *    and the longest window without an acknowledged write stayed within a bound;
 * 6. (resources.ts) no unhandled error, no leaked connection or timer, flat memory.
 */
import type { FailoverEvent } from '../../src/index.js'
import type { FaultRecord } from './faults.js'
import type { Primacy } from './ha.js'
import { OUTCOME, type OutcomeCounts, type WriteLedger } from './ledger.js'
import type { EndpointNote, Timed } from './observer.js'
import { type Snapshot, rowCounts } from './snapshot.js'

export type CheckId = 1 | 2 | 3 | 4 | 5 | 6

export interface CheckResult {
  readonly id: CheckId
  readonly title: string
  readonly pass: boolean
  readonly summary: string
  /** The first few violations, each one line. */
  readonly violations: readonly string[]
}

export const CHECK_TITLES: Record<CheckId, string> = {
  1: 'no acknowledged write missing from the primary',
  2: 'no write accepted by a node that was not the primary at that moment',
  3: 'no write reached a fenced old primary',
  4: 'mid-flight failures reported as outcome-unknown, never clean, never replayed',
  5: 'writes resume after every fault (longest write gap, first write after promotion)',
  6: 'no unhandled error, no leaked connection or timer, flat memory',
}

export interface Limits {
  /** Longest acceptable window without an acknowledged write around one fault, ms. */
  readonly maxGapMs: number
  /** Longest acceptable time from a promotion to the first write acknowledged by the new primary, ms. */
  readonly maxFirstWriteMs: number
  /** Clock tolerance when comparing server timestamps with the HA tool's times, ms. */
  readonly toleranceMs: number
}

export const DEFAULT_LIMITS: Limits = { maxGapMs: 10_000, maxFirstWriteMs: 5_000, toleranceMs: 2 }

export interface Evidence {
  readonly ledger: WriteLedger
  readonly primacy: readonly Primacy[]
  readonly faults: readonly FaultRecord[]
  readonly failovers: ReadonlyArray<Timed<FailoverEvent>>
  readonly downs: ReadonlyArray<Timed<EndpointNote>>
  readonly snapshot: Snapshot
  /** End of the last fault's window (the next fault's start for the others). */
  readonly windowEnd: number
  /** True at the very end: pending writes are then a violation. */
  readonly final: boolean
  readonly limits: Limits
}

const MAX_LISTED = 8

class Collector {
  readonly list: string[] = []
  count = 0
  add(line: string): void {
    this.count++
    if (this.list.length < MAX_LISTED) this.list.push(line)
  }
}

function result(id: CheckId, violations: Collector, okSummary: string, badSummary: string): CheckResult {
  return { id, title: CHECK_TITLES[id], pass: violations.count === 0, summary: violations.count === 0 ? okSummary : badSummary, violations: violations.list }
}

// ------------------------------------------------------------------------------------------ 1

export function checkAcknowledgedPresent(e: Evidence): CheckResult {
  const { ledger, snapshot } = e
  const counts = rowCounts(snapshot, ledger.count)
  const bad = new Collector()
  let acked = 0
  for (let id = 1; id <= ledger.count; id++) {
    if (ledger.outcomeCode(id) !== OUTCOME.acked || ledger.doneAt(id) >= snapshot.taken) continue
    acked++
    if (counts[id] === 0) bad.add(`write ${id} (writer ${ledger.writer(id)}) acknowledged by :${ledger.port(id)} at ${iso(ledger.doneAt(id))} is missing on ${snapshot.node}`)
  }
  return result(1, bad, `${acked} acknowledged writes, all on ${snapshot.node}`, `${bad.count} of ${acked} acknowledged writes missing on ${snapshot.node}`)
}

// ------------------------------------------------------------------------------------------ 2

export function checkAcceptedByPrimary(e: Evidence): CheckResult {
  const { ledger, snapshot, primacy, limits } = e
  const bad = new Collector()
  const names = new Map(primacy.map((p) => [p.port, p.node]))
  const label = (port: number): string => `${names.get(port) ?? '?'}:${port}`
  // Server clock_timestamp() against the HA tool's clock: allow the measured offset between them too.
  const tol = limits.toleranceMs + Math.abs(snapshot.clockOffsetMs) + snapshot.clockUncertaintyMs
  const isPrimaryAt = (port: number, t: number): boolean => primacy.some((p) => p.port === port && p.from - tol <= t && t <= p.to + tol)
  let acked = 0
  for (let id = 1; id <= ledger.count; id++) {
    if (ledger.outcomeCode(id) !== OUTCOME.acked) continue
    acked++
    const port = ledger.port(id)
    const at = ledger.serverAt(id)
    if (!isPrimaryAt(port, at)) bad.add(`write ${id} acknowledged by ${label(port)} with clock_timestamp ${iso(at)}, when the primary was ${whoAt(primacy, at)}`)
  }
  // Rows include outcome-unknown writes that did commit: the node that accepted them must have been the primary too.
  for (let i = 0; i < snapshot.ids.length; i++) {
    const port = snapshot.ports[i]!
    const at = snapshot.ats[i]!
    if (!isPrimaryAt(port, at)) bad.add(`row ${snapshot.ids[i]} on ${snapshot.node} was accepted by ${label(port)} at ${iso(at)}, when the primary was ${whoAt(primacy, at)}`)
  }
  return result(
    2,
    bad,
    `${acked} acknowledged writes and ${snapshot.ids.length} rows, each accepted by the primary of its moment (clock tolerance ${tol.toFixed(1)} ms)`,
    `${bad.count} writes accepted outside their node's time as primary`,
  )
}

function whoAt(primacy: readonly Primacy[], t: number): string {
  const p = primacy.filter((x) => x.from <= t && t <= x.to).map((x) => x.node)
  return p.length > 0 ? p.join('/') : 'none'
}

// ------------------------------------------------------------------------------------------ 3

export function checkFencedOldPrimary(e: Evidence): CheckResult {
  const { ledger, faults } = e
  const bad = new Collector()
  let probes = 0
  let windows = 0
  for (const f of faults) {
    const s = f.stale
    if (s) {
      probes++
      if (s.rowsAfterFault > 0) bad.add(`F${f.plan.index} ${f.plan.kind}: ${s.rowsAfterFault} rows with ids >= ${s.firstIdAfterFault} on the old primary ${s.node} while it ran writable`)
      if ((s.insertsAfterMove ?? 0) > 0) bad.add(`F${f.plan.index} ${f.plan.kind}: ${s.insertsAfterMove} INSERTs reached ${s.node} after the pool had moved to ${f.promotion?.node}`)
    }
    // Client side: once the pool announced the new primary, no write issued afterwards may go to the old one.
    const promotion = f.promotion
    if (!promotion) continue
    const moved = e.failovers.find((x) => x.at >= f.start && x.event.to === promotion.node)
    if (!moved) continue
    windows++
    const oldPort = e.primacy.find((p) => p.node === promotion.from)?.port
    const until = f.rejoinAt ?? f.end
    const from = ledger.firstIdIssuedAtOrAfter(moved.at)
    for (let id = from; id <= ledger.count && ledger.issuedAt(id) < until; id++) {
      const code = ledger.outcomeCode(id)
      if ((code === OUTCOME.acked || code === OUTCOME.unknown) && ledger.port(id) === oldPort) {
        bad.add(`F${f.plan.index} ${f.plan.kind}: write ${id} issued ${Math.round(ledger.issuedAt(id) - moved.at)} ms after the pool moved to ${promotion.node} went to the old primary ${promotion.from} (${ledger.outcome(id)})`)
      }
    }
  }
  return result(3, bad, `${probes} writable old primaries inspected, ${windows} post-failover windows: nothing reached a fenced node`, `${bad.count} writes reached a fenced old primary`)
}

// ------------------------------------------------------------------------------------------ 4

export function checkHonestFailures(e: Evidence): CheckResult {
  const { ledger, snapshot } = e
  const counts = rowCounts(snapshot, ledger.count)
  const bad = new Collector()
  let duplicates = 0
  let cleanPresent = 0
  let otherPresent = 0
  let unknownPresent = 0
  for (let id = 1; id <= ledger.count; id++) {
    const n = counts[id]!
    if (n > 1) {
      duplicates++
      bad.add(`write ${id} has ${n} rows on ${snapshot.node}: replayed (${ledger.outcome(id)}: ${ledger.reason(id) || 'acknowledged'})`)
    }
    const code = ledger.outcomeCode(id)
    // Only failures reported before the snapshot: a later one cannot be judged from it.
    if (n > 0 && code === OUTCOME.clean && ledger.doneAt(id) < snapshot.taken) {
      cleanPresent++
      bad.add(`write ${id} failed "clean" (${ledger.reason(id)}) but is on ${snapshot.node}: it ran`)
    }
    if (n > 0 && code === OUTCOME.other && ledger.doneAt(id) < snapshot.taken) {
      otherPresent++
      bad.add(`write ${id} failed with a plain error (${ledger.reason(id)}) but is on ${snapshot.node}: it ran, so it should have been OutcomeUnknownError`)
    }
    if (n > 0 && code === OUTCOME.unknown) unknownPresent++
    if (e.final && code === OUTCOME.pending) bad.add(`write ${id} (writer ${ledger.writer(id)}) never settled: still pending at the end`)
  }
  let stray = 0
  for (const id of snapshot.ids) if (id < 1 || id > ledger.count) stray++
  if (stray > 0) bad.add(`${stray} rows with ids the ledger never issued`)
  const t = ledger.totals
  return result(
    4,
    bad,
    `${t.unknown} outcome-unknown (${unknownPresent} committed), ${t.clean} clean failures (none committed), ${t.other} other errors, no duplicate ids`,
    `${bad.count} violations: ${duplicates} duplicated ids, ${cleanPresent} clean failures that ran, ${otherPresent} plain errors that ran`,
  )
}

// ------------------------------------------------------------------------------------------ 5

/** Figures of one fault, from its start to the next fault's start. */
export interface FaultFigures {
  readonly index: number
  /** First sign the pool noticed (endpointDown of the target, or the start of a failover from it), ms after the fault started. */
  readonly detectMs: number | null
  /** The HA tool's promotion completed, ms after the fault started. */
  readonly promotedMs: number | null
  /** The pool's failover event to the new primary, ms after `pg_ctl promote` was started. */
  readonly followMs: number | null
  /** First write acknowledged by the new primary, ms after `pg_ctl promote` was started. */
  readonly firstWriteMs: number | null
  /** The cluster was whole again (1 primary + 2 streaming standbys), ms after the fault started. */
  readonly recoveredMs: number | null
  /** Longest window without an acknowledged write in the fault's window, ms, and where it started. */
  readonly gapMs: number
  readonly gapAt: number
  /** Whether a write was acknowledged after the fault took effect. */
  readonly resumed: boolean
  readonly counts: OutcomeCounts
  readonly windowEnd: number
}

export function faultFigures(e: Evidence, f: FaultRecord, windowEnd: number): FaultFigures {
  const { ledger } = e
  const acks = ledger.acks
  const p = f.promotion
  const inWindow = (t: number): boolean => t >= f.start && t < windowEnd
  // The pool noticed: the target went down for it, or it began a failover away from the target (or from the replaced primary).
  const down = e.downs.find((d) => inWindow(d.at) && d.event.endpoint === f.target)?.at ?? Infinity
  const trouble = e.failovers.find((x) => inWindow(x.at) && (x.event.from === f.target || x.event.from === p?.from))
  const troubleAt = trouble ? trouble.at - trouble.event.durationMs : Infinity
  const detectAt = Math.min(down, troubleAt)
  const moved = p ? e.failovers.find((x) => inWindow(x.at) && x.event.to === p.node) : undefined
  let firstWrite: number | null = null
  if (p) {
    for (let i = acks.firstAtOrAfter(p.start); i < acks.length; i++) {
      if (acks.value(i) === p.port) {
        firstWrite = acks.time(i)
        break
      }
    }
  }
  // Longest gap between consecutive acknowledgements, from the last one before the fault to the window's end.
  const startIdx = acks.firstAtOrAfter(f.start)
  let prev = startIdx > 0 ? acks.time(startIdx - 1) : f.start
  let gapMs = 0
  let gapAt = prev
  for (let i = startIdx; i < acks.length && acks.time(i) <= windowEnd; i++) {
    const t = acks.time(i)
    if (t - prev > gapMs) {
      gapMs = t - prev
      gapAt = prev
    }
    prev = t
  }
  if (windowEnd - prev > gapMs) {
    gapMs = windowEnd - prev
    gapAt = prev
  }
  const resumedAt = acks.firstAtOrAfter(f.injected)
  return {
    index: f.plan.index,
    detectMs: Number.isFinite(detectAt) ? detectAt - f.start : null,
    promotedMs: p ? p.end - f.start : null,
    followMs: p && moved ? moved.at - p.start : null,
    firstWriteMs: p && firstWrite !== null ? firstWrite - p.start : null,
    recoveredMs: f.end > 0 ? f.end - f.start : null,
    gapMs,
    gapAt,
    resumed: resumedAt < acks.length && acks.time(resumedAt) <= windowEnd,
    counts: ledger.countRange(ledger.firstIdIssuedAtOrAfter(f.start), ledger.firstIdIssuedAtOrAfter(windowEnd)),
    windowEnd,
  }
}

/** Every fault's figures, each window ending where the next fault starts. */
export function allFigures(e: Evidence): FaultFigures[] {
  return e.faults.map((f, i) => faultFigures(e, f, e.faults[i + 1]?.start ?? e.windowEnd))
}

export function checkWritesResume(e: Evidence, figures: readonly FaultFigures[]): CheckResult {
  const bad = new Collector()
  for (const fig of figures) {
    const f = e.faults.find((x) => x.plan.index === fig.index)!
    const name = `F${fig.index} ${f.plan.kind} ${f.target}`
    if (!fig.resumed) bad.add(`${name}: no write acknowledged after the fault`)
    if (fig.gapMs > e.limits.maxGapMs) bad.add(`${name}: ${Math.round(fig.gapMs)} ms without an acknowledged write (limit ${e.limits.maxGapMs})`)
    if (f.promotion) {
      if (fig.firstWriteMs === null) bad.add(`${name}: the new primary ${f.promotion.node} never acknowledged a write`)
      else if (fig.firstWriteMs > e.limits.maxFirstWriteMs) bad.add(`${name}: first write on ${f.promotion.node} ${Math.round(fig.firstWriteMs)} ms after its promotion (limit ${e.limits.maxFirstWriteMs})`)
    }
  }
  const gaps = figures.map((x) => x.gapMs)
  const promoted = figures.filter((x) => x.firstWriteMs !== null).map((x) => x.firstWriteMs!)
  const summary = `longest write gap ${gaps.length ? Math.round(Math.max(...gaps)) : 0} ms; first write after promotion ${promoted.length ? `${Math.round(Math.min(...promoted))}-${Math.round(Math.max(...promoted))}` : '-'} ms over ${promoted.length} promotions`
  return result(5, bad, summary, `${bad.count} violations; ${summary}`)
}

/** Checks 1-5 on the evidence. */
export function runChecks(e: Evidence): { checks: CheckResult[]; figures: FaultFigures[] } {
  const figures = allFigures(e)
  return {
    checks: [checkAcknowledgedPresent(e), checkAcceptedByPrimary(e), checkFencedOldPrimary(e), checkHonestFailures(e), checkWritesResume(e, figures)],
    figures,
  }
}

function iso(t: number): string {
  return Number.isFinite(t) ? new Date(t).toISOString().slice(11, 23) : String(t)
}
