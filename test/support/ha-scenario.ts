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
