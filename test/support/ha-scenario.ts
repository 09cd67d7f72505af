/**
 * What every HA scenario checks besides its own story: when writes resumed, that no write was
 * acknowledged by a node after the pool had left it, and that every acknowledged write is on the
 * final primary exactly once.
 */
import type { FailoverEvent, FailoverPool } from '../../src/index.js'
import type { LedgerEntry, LedgerWriter } from './ledger-writer.js'
import { whenWritable } from './ledger-writer.js'

/** A failover the pool made, with the time (performance.now()) it was emitted. */
export interface TimedFailover extends FailoverEvent {
  readonly at: number
}

/** Records every failover event of `pool` with its time. */
export function recordFailovers(pool: FailoverPool): TimedFailover[] {
  const events: TimedFailover[] = []
  pool.on('failover', (e) => events.push({ ...e, at: performance.now() }))
  return events
}

/**
 * Acknowledgements that came from a node after the pool had left it (failed over away from it)
 * and before it chose that node again: each would be a write the client believes in, made on a
 * node the pool no longer trusted. `portOf` maps endpoint names to the PostgreSQL port that
 * `inet_server_port()` reports (behind PgBouncer: the server's, not the proxy's).
 */
export function acksAfterLeaving(writer: LedgerWriter, failovers: readonly TimedFailover[], portOf: (endpoint: string) => number): LedgerEntry[] {
  return writer.acked.filter((entry) => {
    // The node the pool wrote to when this write was acknowledged: the target of the last failover before it.
    const before = failovers.filter((f) => f.at <= entry.endedAt)
    const current = before.at(-1)
    if (current === undefined) return false
    return entry.port !== portOf(current.to)
  })
}

/** Resolves with the name and time of the first of `nodes` to answer writable (fresh connections). */
export function firstWritable(nodes: ReadonlyArray<{ name: string; config: object }>, timeoutMs = 60_000): Promise<{ name: string; at: number }> {
  return Promise.any(nodes.map((n) => whenWritable(n.config, timeoutMs).then((at) => ({ name: n.name, at }))))
}

/** Waits until the writer has an acknowledgement that ended after `t`; resolves with ms from `t`. */
export async function resumedAfter(writer: LedgerWriter, t: number, timeoutMs = 30_000): Promise<number> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const first = writer.firstAckAfter(t)
    if (first) return first.endedAt - t
    if (performance.now() > deadline) throw new Error(`no write acknowledged within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}

/** What a scenario's write ledger showed at the end. */
export interface ScenarioReport {
  /** Acknowledged by a node after the pool had left it (must be empty). */
  readonly acksAfterLeaving: number[]
  /** Writes that failed other than as outcome-unknown (must be empty). */
  readonly failed: string[]
  readonly acked: number
  readonly unknown: number
  /** Acknowledged writes missing on the final primary (must be empty). */
  readonly lost: number[]
  /**
   * With `crashed` given: acknowledged writes missing on the final primary that can only be the
   * crashed primary's unsent WAL — PostgreSQL's own loss under asynchronous replication (a commit is
   * acknowledged before its WAL is sent), not the pool's. Reported, not a violation; see
   * {@link unsentTail} for the rule.
   */
  readonly lostInReplicationWindow: number[]
  readonly duplicated: number[]
  readonly unexpected: number[]
}

/**
 * Of `lost`, the writes that can have been lost by asynchronous replication when the primary on
 * `port` crashed. A standby holds a *prefix* of the primary's WAL, so a lost commit came after
 * every commit that survived: a write lost that way ended (was acknowledged) after the latest
 * issue time of the crashed primary's writes that are present. A lost write acknowledged before
 * a surviving one was issued was lost by something else, and stays a violation.
 */
export function unsentTail(writer: Pick<LedgerWriter, 'acked'>, lost: readonly number[], port: number): Set<number> {
  const missing = new Set(lost)
  const fromCrashed = writer.acked.filter((e) => e.port === port)
  const lastSurvivorIssued = fromCrashed.reduce((latest, e) => (missing.has(e.id) ? latest : Math.max(latest, e.issuedAt)), Number.NEGATIVE_INFINITY)
  return new Set(fromCrashed.filter((e) => missing.has(e.id) && e.endedAt > lastSurvivorIssued).map((e) => e.id))
}

/**
 * Stops the writers and compares the ledger with the final primary. `crashed`: the PostgreSQL port
 * of a primary killed under asynchronous replication, whose last acknowledged commits may never
 * have been sent (see {@link ScenarioReport.lostInReplicationWindow}).
 */
export async function finishScenario(
  writer: LedgerWriter,
  failovers: readonly TimedFailover[],
  portOf: (endpoint: string) => number,
  finalPrimary: { config: object },
  crashed?: { readonly port: number },
): Promise<ScenarioReport> {
  await writer.stop()
  const check = await writer.check(finalPrimary.config)
  const counts = writer.counts()
  const inWindow = crashed ? unsentTail(writer, check.lost, crashed.port) : new Set<number>()
  return {
    acksAfterLeaving: acksAfterLeaving(writer, failovers, portOf).map((e) => e.id),
    failed: writer.entries.filter((e) => e.outcome === 'failed').map((e) => e.error?.message ?? 'unknown error'),
    acked: counts.acked,
    unknown: counts.unknown,
    lost: check.lost.filter((id) => !inWindow.has(id)),
    lostInReplicationWindow: check.lost.filter((id) => inWindow.has(id)),
    duplicated: check.duplicated,
    unexpected: check.unexpected,
  }
}

/** The parts of a report that must be empty, for one `toEqual` in tests. */
export function violations(report: ScenarioReport): Pick<ScenarioReport, 'acksAfterLeaving' | 'failed' | 'lost' | 'duplicated' | 'unexpected'> {
  const { acksAfterLeaving, failed, lost, duplicated, unexpected } = report
  return { acksAfterLeaving, failed, lost, duplicated, unexpected }
}
