import type { ProbeResult } from '../endpoint/role-probe.js'
import { roleOf } from '../endpoint/role-probe.js'

/** The latest probe outcome of one endpoint, as the election sees it. */
export type ProbeOutcome =
  | { readonly kind: 'pending' }
  | { readonly kind: 'ok'; readonly probe: ProbeResult }
  | { readonly kind: 'failed'; readonly error: Error }

/** One endpoint's entry in an election. */
export interface Candidate {
  readonly name: string
  readonly outcome: ProbeOutcome
}

/** What the election decided. Pure data: the facade applies it. */
export type Election =
  | {
      readonly kind: 'primary'
      readonly name: string
      readonly systemId: string | null
      readonly timeline: number | null
      readonly fenced: readonly string[]
      readonly mismatched: readonly string[]
      /** Set when the HA manager's leader broke a tie between writable nodes on one timeline. */
      readonly byLeader?: true
    }
  | { readonly kind: 'none'; readonly reason: string; readonly mismatched: readonly string[]; readonly fenced?: readonly string[] }
  | { readonly kind: 'wait'; readonly reason: string }
  | { readonly kind: 'ambiguous'; readonly reason: string; readonly candidates: readonly string[]; readonly mismatched: readonly string[] }

/** What the pool already knows about its cluster, which narrows the election. */
export interface ElectionContext {
  /** System identifier of the cluster, once learned; endpoints reporting another one are never used. */
  readonly systemId: string | null
  /** Lowest acceptable timeline: a writable node on an older timeline is a stale old primary. */
  readonly minTimeline: number | null
  /**
   * The endpoint the HA manager says holds the leader key (a fresh view), or null. Only a
   * tie-breaker: among writable nodes of the cluster on the same highest timeline it wins and the
   * others are fenced; it never makes a node that did not verify as writable the primary.
   */
  readonly leader?: string | null
}

/**
 * Picks the verified primary from probe outcomes.
 *
 * - A node qualifies only when it is out of recovery and not read-only.
 * - While the cluster's system identifier is unknown, every endpoint must have answered or failed
 *   first (`wait`), so an unrelated server cannot win by answering first; the identifier most
 *   endpoints report (on a tie, the one with the only writable node) becomes the cluster's.
 * - Once it is known, the first matching writable node wins at once (`primary`), without waiting
 *   for slow endpoints.
 * - Two or more writable nodes of the same cluster: the highest timeline wins and the others are
 *   fenced; equal timelines are `ambiguous` (writes must be refused) unless the HA manager's leader
 *   is one of them (`context.leader`): then it wins and the others are fenced. Writable nodes of
 *   different clusters with no known identifier are `ambiguous` too.
 */
export function elect(candidates: readonly Candidate[], context: ElectionContext): Election {
  const answered = candidates.filter((c): c is Candidate & { outcome: { kind: 'ok'; probe: ProbeResult } } => c.outcome.kind === 'ok')
  const pending = candidates.some((c) => c.outcome.kind === 'pending')
  const writable = answered.filter((c) => roleOf(c.outcome.probe) === 'primary')

  let systemId = context.systemId
  if (systemId === null) {
    if (pending) return { kind: 'wait', reason: 'waiting for every endpoint to answer before learning the cluster identity' }
    const learned = learnSystemId(answered.map((c) => ({ id: c.outcome.probe.systemId, writable: writable.includes(c) })))
    if (learned.kind === 'ambiguous') {
      return { kind: 'ambiguous', reason: learned.reason, candidates: writable.map((c) => c.name), mismatched: [] }
    }
    systemId = learned.id
  }

  const mismatched = answered.filter((c) => systemId !== null && c.outcome.probe.systemId !== null && c.outcome.probe.systemId !== systemId).map((c) => c.name)
  const eligible = writable.filter((c) => !mismatched.includes(c.name))
  const fresh = eligible.filter((c) => context.minTimeline === null || (c.outcome.probe.timeline ?? Infinity) >= context.minTimeline)
  const stale = eligible.filter((c) => !fresh.includes(c)).map((c) => c.name)

  if (fresh.length === 0) {
    if (pending) return { kind: 'wait', reason: 'no verified primary among the endpoints that answered so far' }
    const reason = stale.length > 0 ? `only stale writable nodes (older timeline): ${stale.join(', ')}` : 'no endpoint is a verified primary'
    return { kind: 'none', reason, mismatched, fenced: stale }
  }
  if (fresh.length === 1) {
    const [only] = fresh as [(typeof fresh)[number]]
    return { kind: 'primary', name: only.name, systemId, timeline: only.outcome.probe.timeline, fenced: stale, mismatched }
  }
  const highest = Math.max(...fresh.map((c) => c.outcome.probe.timeline ?? -1))
  const top = fresh.filter((c) => (c.outcome.probe.timeline ?? -1) === highest)
  if (top.length > 1) {
    const leader = context.leader ? top.find((c) => c.name === context.leader) : undefined
    if (leader) {
      const fenced = [...stale, ...fresh.filter((c) => c !== leader).map((c) => c.name)]
      return { kind: 'primary', name: leader.name, systemId, timeline: leader.outcome.probe.timeline, fenced, mismatched, byLeader: true }
    }
    return {
      kind: 'ambiguous',
      reason: `split brain: ${top.map((c) => c.name).join(' and ')} are all writable on timeline ${highest}`,
      candidates: top.map((c) => c.name),
      mismatched,
    }
  }
  const [winner] = top as [(typeof top)[number]]
  const fenced = [...stale, ...fresh.filter((c) => c !== winner).map((c) => c.name)]
  return { kind: 'primary', name: winner.name, systemId, timeline: winner.outcome.probe.timeline, fenced, mismatched }
}

/**
 * The cluster's identity is the system identifier most endpoints report; on a tie, the one held by
 * the only writable node among the tied. Anything else cannot be decided safely.
 */
function learnSystemId(nodes: ReadonlyArray<{ id: string | null; writable: boolean }>): { kind: 'ok'; id: string | null } | { kind: 'ambiguous'; reason: string } {
  const counts = new Map<string, number>()
  for (const n of nodes) if (n.id !== null) counts.set(n.id, (counts.get(n.id) ?? 0) + 1)
  if (counts.size <= 1) return { kind: 'ok', id: counts.keys().next().value ?? null }
  const most = Math.max(...counts.values())
  const top = [...counts].filter(([, n]) => n === most).map(([id]) => id)
  if (top.length === 1) return { kind: 'ok', id: top[0]! }
  const withWriter = top.filter((id) => nodes.some((n) => n.id === id && n.writable))
  if (withWriter.length === 1) return { kind: 'ok', id: withWriter[0]! }
  return { kind: 'ambiguous', reason: `endpoints belong to different clusters (system identifiers ${top.join(', ')}) and none is in the majority` }
}

/**
 * Election for `topology: 'logical'`, where several nodes are writable by design and roles say
 * nothing: the active node stays while it answers writable (`current`, else the stored one), and
 * only when it does not does the first writable node in endpoint order take over. A pending
 * active node is waited for, so a slow answer never causes a switch.
 */
export function electLogical(candidates: readonly Candidate[], active: string | null): Election {
  const writable = (c: Candidate): boolean => c.outcome.kind === 'ok' && roleOf(c.outcome.probe) === 'primary'
  const incumbent = active === null ? undefined : candidates.find((c) => c.name === active)
  if (incumbent) {
    if (incumbent.outcome.kind === 'pending') return { kind: 'wait', reason: `waiting for the active node ${incumbent.name}` }
    if (writable(incumbent)) return primaryOf(incumbent)
  }
  for (const c of candidates) {
    if (c === incumbent) continue
    if (c.outcome.kind === 'pending') return { kind: 'wait', reason: `waiting for ${c.name}, earlier in endpoint order` }
    if (writable(c)) return primaryOf(c)
  }
  return { kind: 'none', reason: 'no writable node answered', mismatched: [] }
}

function primaryOf(c: Candidate): Election {
  const probe = c.outcome.kind === 'ok' ? c.outcome.probe : null
  return { kind: 'primary', name: c.name, systemId: probe?.systemId ?? null, timeline: null, fenced: [], mismatched: [] }
}
