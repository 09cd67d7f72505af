import type { Clock } from '../clock.js'
import type { StateSync } from '../state/state-sync.js'
import type { StateRecord } from '../state/state-store.js'
import type { ClusterKnowledge } from './cluster-knowledge.js'

/** How often, at most, a verified pool checks that the state store still holds its decision (ms). */
const STATE_HEAL_INTERVAL_MS = 30_000

/**
 * This pool's decision about the primary as the state store should hold it: recorded when a primary
 * is adopted, and written again by a check every 30 s of health rounds if the store lost it (a Redis
 * restart, a deleted file). Both run as effects of the caller's transition.
 */
export class DecisionRecord {
  /** When the store was last written or checked for our decision (clock ms), and why we decided it. */
  #lastHealAt = Number.NEGATIVE_INFINITY
  #reason = 'primary verified'

  constructor(
    private readonly sync: StateSync,
    private readonly cluster: ClusterKnowledge,
    private readonly clock: Clock,
    /** A newer decision the store holds: the coordinator follows it. */
    private readonly storedElsewhere: (record: StateRecord) => void,
  ) {}

  /** `primary` was adopted at `epoch` for `reason`: record it (as an effect). */
  adopted(primary: string, epoch: number, reason: string, effect: (fn: () => void) => void): void {
    const { systemId, minTimeline } = this.cluster
    this.#reason = reason
    this.#lastHealAt = this.clock.now() // saved now; the next check that the store still holds it is due later
    effect(() => this.sync.persist({ primary, systemId, timeline: minTimeline, epoch, reason }, (r) => this.storedElsewhere(r)))
  }

  /** A health round settled on verified `primary`: check the store still holds our decision, at most every 30 s. */
  healIfDue(primary: string, effect: (fn: () => void) => void): void {
    const now = this.clock.now()
    if (now - this.#lastHealAt < STATE_HEAL_INTERVAL_MS || this.cluster.epochPrimary !== primary) return
    this.#lastHealAt = now
    const { systemId, minTimeline, epoch } = this.cluster
    const decision = { primary, systemId, timeline: minTimeline, epoch, reason: this.#reason }
    effect(() => this.sync.heal(decision, (r) => this.storedElsewhere(r)))
  }
}
