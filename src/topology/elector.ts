import type { Endpoint } from '../endpoint/endpoint.js'
import { classifyError } from '../error-policy.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import type { StateRecord } from '../state/state-store.js'
import { runAdoptionHook } from './adoption-hook.js'
import type { ClusterKnowledge } from './cluster-knowledge.js'
import { type Election, elect, electLogical } from './election.js'
import type { Evidence } from './evidence.js'
import type { EndpointHealth } from './endpoint-health.js'
import { type Loss, type WriterState, lossOf, shownPrimary, writingTo } from './writer-state.js'

/** The coordinator's transitions an election may call on (the coordinator implements it). */
export interface ElectionHost {
  readonly endpoints: readonly Endpoint[]
  readonly cluster: ClusterKnowledge
  readonly storedRecord: StateRecord | null
  state: WriterState
  health(endpoint: Endpoint): EndpointHealth
  leave(endpoint: Endpoint, reason: string): void
  /** Probes `endpoint` now, outside any round, in its current era. */
  confirm(endpoint: Endpoint): void
  adopt(next: Endpoint, from: string | null, loss: Loss | null): void
  scheduleNext(): void
  transition(change: () => void): void
  announce(event: string, payload: () => unknown): void
  hookRunning(abort: (() => void) | null): void
}

/**
 * Turns the evidence into decisions: elects (physical or logical rules, pure functions in
 * `election.ts`) whenever the writer state calls for a primary or a probe could contradict the
 * current one, and applies the result through the coordinator's transitions — fencing, split
 * brain, leaving the old primary, running `onPromote`, adopting.
 */
export class Elector {
  /** The latest election's outcome in words. */
  lastElection = 'not probed yet'

  constructor(
    private readonly host: ElectionHost,
    private readonly evidence: Evidence,
    private readonly options: ResolvedOptions,
  ) {}

  /** Elects from the evidence when the writer state calls for it, and applies the result (inside a transition). */
  decide(): void {
    const host = this.host
    const s = host.state
    if (s.kind === 'booting' || s.kind === 'ended' || s.kind === 'adopting') return
    // While verified, nothing is decided before the primary itself has answered; likewise a hint or a promoted node.
    const must = s.kind === 'verified' ? s.primary : this.evidence.mustHear
    const candidates = this.evidence.candidates(host.endpoints, (e) => host.health(e))
    if (must !== null && candidates[host.endpoints.indexOf(must)]!.outcome.kind === 'pending') return
    const { cluster } = host
    this.#apply(
      this.options.topology === 'logical'
        ? electLogical(candidates, shownPrimary(s)?.name ?? cluster.storedPrimary)
        : elect(candidates, { systemId: cluster.systemId, minTimeline: cluster.minTimeline, leader: this.evidence.freshLeader()?.name ?? null }),
    )
    const after = host.state
    if (after.kind === 'discovering') {
      // Every endpoint refused us for a configuration reason: waiting for a failover cannot help.
      const errors = candidates.map((c) => (c.outcome.kind === 'failed' ? c.outcome.error : null))
      if (after.refusal === null && errors.every((e) => e !== null && classifyError(e) === 'configuration')) host.state = { ...after, refusal: errors[0]! }
      else if (after.refusal !== null && candidates.some((c) => c.outcome.kind === 'ok')) host.state = { ...after, refusal: null }
    }
  }

  #apply(election: Election): void {
    const host = this.host
    this.lastElection = election.kind === 'primary' ? `primary ${election.name}` : election.reason
    if (election.kind === 'wait') return
    for (const name of election.mismatched) host.health(this.#named(name)).otherCluster = true
    const s = host.state
    if (election.kind === 'ambiguous') {
      topologyLog('refusing writes: %s', election.reason)
      const writing = shownPrimary(s)
      if (writing !== null) host.leave(writing, election.reason)
      host.state = { kind: 'split-brain', candidates: election.candidates, reason: election.reason, loss: lossOf(host.state) }
      if (s.kind !== 'split-brain') this.#emitSplitBrain(election.candidates, null, [], election.reason)
      return
    }
    const fenced = election.kind === 'primary' ? election.fenced : (election.fenced ?? [])
    const newlyFenced = fenced.filter((name) => !host.health(this.#named(name)).fenced)
    for (const name of fenced) host.health(this.#named(name)).fenced = true
    if (election.kind === 'none') {
      if (newlyFenced.length > 0) this.#emitSplitBrain(newlyFenced, null, newlyFenced, `writable on a timeline older than ${host.cluster.minTimeline}: a stale old primary, fenced`)
      if (s.kind === 'split-brain') host.state = { kind: 'discovering', loss: s.loss, suspect: null, refusal: null }
      return
    }
    if (newlyFenced.length > 0) {
      const why = election.byLeader
        ? `writable on the same timeline as ${election.name}, which holds the HA manager's leader key: fenced`
        : `writable on an older timeline than ${election.name}: fenced`
      this.#emitSplitBrain([election.name, ...fenced], election.name, newlyFenced, why)
    }
    host.cluster.learnFromElection(election.systemId, election.timeline)
    this.#elected(this.#named(election.name))
  }

  /** The election chose `next`: leave whatever we wrote to before, then adopt (after `onPromote`, if any). */
  #elected(next: Endpoint): void {
    const host = this.host
    const s = host.state
    if ((s.kind === 'verified' && s.primary === next) || s.kind === 'adopting') return
    if (s.kind === 'paused') {
      // No adoption while paused: resumeWrites() verifies again. Only forget a primary that lost.
      if (s.primary !== null && s.primary !== next) host.leave(s.primary, `${next.name} took over`)
      return
    }
    const old = writingTo(s) // paused is handled above
    if (old !== null && old !== next) {
      host.leave(old, `${next.name} took over`)
      // Leaving moved its era on: a probe of it still in flight would arrive stale and be ignored,
      // leaving a still-writable old primary unfenced in status() until the next health check.
      host.confirm(old)
    }
    const loss = lossOf(host.state)
    const from = old?.name ?? loss?.from ?? host.cluster.storedPrimary
    if (!this.options.onPromote || from === null || from === next.name) return host.adopt(next, from, loss)
    host.state = { kind: 'adopting', candidate: next, loss }
    const context = { from, to: next.name, epoch: host.cluster.nextEpoch(host.storedRecord), reason: loss?.reason ?? 'promotion' }
    void runAdoptionHook(host, next, this.options, context).then((verdict) =>
      host.transition(() => {
        if (verdict === 'moved-on') return
        if (verdict === 'adopt') return host.adopt(next, from, loss)
        this.lastElection = `promotion hook failed on ${next.name}`
        host.state = { kind: 'discovering', loss, suspect: null, refusal: null }
        host.scheduleNext()
      }),
    )
  }

  #named(name: string): Endpoint {
    return this.host.endpoints.find((e) => e.name === name)!
  }

  #emitSplitBrain(endpoints: readonly string[], chosen: string | null, fenced: readonly string[], reason: string): void {
    topologyLog('split brain: %s (chosen %s, fenced %s)', reason, chosen, fenced.join(', '))
    this.host.announce('splitBrain', () => ({ endpoints, chosen, fenced, reason, at: new Date().toISOString() }))
  }
}
