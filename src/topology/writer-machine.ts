import type { Endpoint } from '../endpoint/endpoint.js'
import type { FailoverEvent } from '../events.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import type { StateSync } from '../state/state-sync.js'
import type { Target } from '../surface/routing-host.js'
import type { ClusterKnowledge } from './cluster-knowledge.js'
import type { DecisionRecord } from './decision-record.js'
import type { Evidence } from './evidence.js'
import type { MemberSet } from './member-set.js'
import type { Transitions } from './transitions.js'
import type { Loss, WriterState } from './writer-state.js'

/** What the writer's transitions act on beyond the state they own. */
export interface WriterMachineDeps {
  readonly tx: Transitions
  readonly evidence: Evidence
  readonly members: MemberSet
  readonly cluster: ClusterKnowledge
  readonly record: DecisionRecord
  readonly sync: StateSync
  readonly options: ResolvedOptions
  /** Starts a discovery round after the transition. */
  startRound(reason: string): void
  /** A primary was adopted (inside the transition): discovery's fast cadence ends and nobody watches it for a promotion any more. */
  adopted(primary: Endpoint): void
}

/**
 * Where writes go, and the transitions that move it: the writer state ({@link WriterState}), the
 * generation every routed connection carries, and whether a primary was ever verified. Each method
 * is one transition — it assigns the whole new state first and queues its effects (cut, refresh,
 * persist, announce) to run after, so no request can be routed to a node while the pool leaves it.
 */
export class WriterMachine {
  /** Where writes go now. @internal Assigned from outside only inside a transition (the elector's, maintenance's). */
  state: WriterState = { kind: 'booting' }
  #generation = 0
  #everVerified = false

  constructor(private readonly deps: WriterMachineDeps) {}

  /** Bumped on every change of where writes go; reports and connections from an older generation move nothing. */
  get generation(): number {
    return this.#generation
  }

  /** True once this pool has verified a primary. */
  get everVerified(): boolean {
    return this.#everVerified
  }

  /**
   * Stop writing to the primary (new requests wait), give it fresh pools, and verify it again.
   * Statements still running there go on: if it verifies, nothing was lost. Inside a transition.
   */
  suspect(primary: Endpoint, reason: string): void {
    topologyLog('primary %s suspect: %s', primary.name, reason)
    this.#generation++
    const now = this.deps.options.clock.now()
    this.deps.evidence.invalidate(now)
    this.state = { kind: 'discovering', loss: { from: primary.name, reason, since: now }, suspect: primary, refusal: null }
    this.deps.tx.effect(() => primary.refreshPools())
    this.deps.startRound(reason)
  }

  /**
   * The pool leaves a node it wrote to: the writer state moves on first (no request can be routed
   * there any more), then everything still running there is cut (its outcome is unknown), so a
   * node the pool has left can never acknowledge a write afterwards. A node that said it takes no
   * writes is alive and its running statements are failing on their own (25006, then retried on the
   * new primary): they get up to `probeTimeoutMs` to answer before the cut.
   */
  leave(endpoint: Endpoint, reason: string): void {
    this.deps.tx.run(() => {
      topologyLog('leaving %s: %s', endpoint.name, reason)
      const s = this.state
      const now = this.deps.options.clock.now()
      if (s.kind === 'verified' && s.primary === endpoint) {
        this.#generation++
        this.deps.evidence.invalidate(now)
        this.state = { kind: 'discovering', loss: { from: endpoint.name, reason, since: now }, suspect: null, refusal: null }
      } else if (s.kind === 'discovering' && s.suspect === endpoint) {
        this.state = { ...s, suspect: null }
      } else if (s.kind === 'paused' && s.primary === endpoint) {
        this.state = { ...s, primary: null, loss: s.loss ?? { from: endpoint.name, reason, since: now } }
      }
      const health = this.deps.members.health(endpoint)
      const graceMs = health.saidReadOnly ? this.deps.options.probeTimeoutMs : 0
      health.left()
      this.deps.tx.effect(() => endpoint.leave(graceMs))
    })
  }

  /** Makes `next` the primary: a new generation and target, the epoch, the failover event, the store, the waiters. */
  adopt(next: Endpoint, from: string | null, loss: Loss | null, paused = false): void {
    const { tx, evidence, cluster, options } = this.deps
    tx.run(() => {
      this.#generation++
      this.#everVerified = true
      evidence.mustHear = null
      const health = this.deps.members.health(next)
      health.fenced = false
      // Verified writable just now (switchTo verifies with its own probe, not through the verdicts).
      health.saidReadOnly = false
      const target: Target = { endpoint: next, lane: next.write, generation: this.#generation, role: 'primary', caughtUp: true }
      this.state = paused ? { kind: 'paused', primary: next, loss: null } : { kind: 'verified', primary: next, target }
      const changed = from !== null && from !== next.name
      const epoch = cluster.adopt(next.name, changed, this.deps.sync.record)
      const now = options.clock.now()
      // The fast cadence of discovery ends here; the health checks start after this transition (see RoundSchedule.keepChecking).
      this.deps.adopted(next)
      if (changed) {
        const event: FailoverEvent = {
          from,
          to: next.name,
          reason: loss?.reason ?? `promotion of ${next.name}`,
          durationMs: Math.round(loss ? now - loss.since : 0),
          epoch,
        }
        topologyLog('failover %s -> %s (%s) in %d ms', event.from, event.to, event.reason, event.durationMs)
        tx.announce('failover', () => event)
      } else {
        topologyLog('primary %s verified (epoch %d)', next.name, epoch)
      }
      const why = changed ? `failover from ${from}: ${loss?.reason ?? 'promotion'}` : 'primary verified'
      this.deps.record.adopted(next.name, epoch, why, (fn) => tx.effect(fn))
    })
  }

  /**
   * Replaces the writer state (maintenance operations). Entering `discovering` starts a round whose
   * probes must all be newer than this change.
   */
  replace(next: WriterState, reason: string): void {
    this.deps.tx.run(() => {
      this.state = next
      if (next.kind !== 'discovering') return
      this.deps.evidence.invalidate(this.deps.options.clock.now())
      this.deps.startRound(reason)
    })
  }
}
