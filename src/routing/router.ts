/** How `pool.reader` spreads reads over healthy replicas. */
export type ReadStrategy = 'round-robin' | 'random' | 'least-busy' | 'lowest-latency'

/** What the router needs to know about one replica candidate. */
export interface ReplicaView {
  readonly name: string
  /** Relative share of reads (positive). */
  readonly weight: number
  /** Replay lag in milliseconds from the last probe, or null if unknown. */
  readonly lagMs: number | null
  /** Bytes of WAL behind the primary at the last probe, or null if unknown. */
  readonly lagBytes: bigint | null
  /** Highest WAL position known replayed, or null. */
  readonly replayedLsn: bigint | null
  /** Clients checked out on its read pool right now. */
  readonly busy: number
  /** Round trip of the last probe, ms, or null. */
  readonly latencyMs: number | null
}

/** Limits one read must respect. */
export interface ReadConstraints {
  /** Skip replicas lagging more than this many ms (Infinity: no limit). */
  readonly maxLagMs: number
  /** Skip replicas lagging more than this many bytes of WAL (null: no limit). */
  readonly maxLagBytes: bigint | null
  /** Prefer replicas known to have replayed at least this position (read-your-writes). */
  readonly minLsn: bigint | null
  /** Replicas already tried (and failed) for this read. */
  readonly exclude: ReadonlySet<string>
}

/** The router's answer: a replica (and whether it is known to satisfy `minLsn`), or why none. */
export type ReplicaChoice =
  | { readonly kind: 'replica'; readonly name: string; readonly caughtUp: boolean }
  | { readonly kind: 'none'; readonly reason: string }

/** Mutable cursor for round-robin; one per pool. */
export interface RouterCursor {
  next: number
}

/**
 * Pure choice of a replica for one read. Replicas over the lag limits or already tried are
 * skipped; among the rest, those known to have replayed `minLsn` are preferred; then the strategy
 * picks, honouring weights.
 */
export function chooseReplica(
  replicas: readonly ReplicaView[],
  constraints: ReadConstraints,
  strategy: ReadStrategy,
  cursor: RouterCursor,
  random: () => number = Math.random,
): ReplicaChoice {
  const eligible = replicas.filter((r) => !constraints.exclude.has(r.name) && withinLagLimits(r, constraints))
  if (eligible.length === 0) {
    const reason = replicas.length === 0 ? 'no healthy replica' : 'every replica is over the lag limit or already failed for this read'
    return { kind: 'none', reason }
  }
  const minLsn = constraints.minLsn
  const caughtUp = minLsn === null ? eligible : eligible.filter((r) => r.replayedLsn !== null && r.replayedLsn >= minLsn)
  const pool = caughtUp.length > 0 ? caughtUp : eligible
  const picked = pick(pool, strategy, cursor, random)
  return { kind: 'replica', name: picked.name, caughtUp: caughtUp.length > 0 }
}

/** True while the replica's lag, as the pool can vouch for it now, is within both limits (an unknown figure passes). */
export function withinLagLimits(r: Pick<ReplicaView, 'lagMs' | 'lagBytes'>, limits: Pick<ReadConstraints, 'maxLagMs' | 'maxLagBytes'>): boolean {
  return (r.lagMs === null || r.lagMs <= limits.maxLagMs) && (limits.maxLagBytes === null || r.lagBytes === null || r.lagBytes <= limits.maxLagBytes)
}

function pick(pool: readonly ReplicaView[], strategy: ReadStrategy, cursor: RouterCursor, random: () => number): ReplicaView {
  switch (strategy) {
    case 'least-busy':
      return minBy(pool, (r) => r.busy / r.weight)
    case 'lowest-latency':
      return minBy(pool, (r) => (r.latencyMs ?? Number.MAX_SAFE_INTEGER) / r.weight)
    case 'random':
      return byWeight(pool, random() * totalWeight(pool))
    case 'round-robin': {
      // Weights count as whole turns here: weights 2 and 1 give A, A, B, A, A, B, ...
      // (No copies of the views: their fields are live getters, and this runs for every read.)
      let total = 0
      for (const r of pool) total += turnsOf(r)
      let slot = cursor.next++ % total
      for (const r of pool) {
        slot -= turnsOf(r)
        if (slot < 0) return r
      }
      return pool[pool.length - 1]!
    }
  }
}

function turnsOf(r: ReplicaView): number {
  return Math.max(1, Math.round(r.weight))
}

function totalWeight(pool: readonly ReplicaView[]): number {
  return pool.reduce((sum, r) => sum + r.weight, 0)
}

/** The replica whose cumulative weight interval contains `point` (0 <= point < total). */
function byWeight(pool: readonly ReplicaView[], point: number): ReplicaView {
  let acc = 0
  for (const r of pool) {
    acc += r.weight
    if (point < acc) return r
  }
  return pool[pool.length - 1]!
}

function minBy(pool: readonly ReplicaView[], score: (r: ReplicaView) => number): ReplicaView {
  let best = pool[0]!
  for (const r of pool) if (score(r) < score(best)) best = r
  return best
}
