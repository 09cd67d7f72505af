import type { StateRecord } from '../state/state-store.js'

/**
 * What the pool has learned about its cluster, which narrows every later election: the system
 * identifier, the highest timeline a primary was verified on, the epoch (grows with each change of
 * primary) and the primary last recorded in the state store.
 */
export class ClusterKnowledge {
  /** System identifier of the cluster (physical topology), once learned. */
  systemId: string | null = null
  /** Writable nodes on an older timeline than this are stale old primaries. */
  minTimeline: number | null = null
  /**
   * Grows with each change of primary decided here or followed from the store; never decreases.
   * (The coordinator may raise it directly when the store confirms the primary it uses.)
   */
  epoch = 0
  /** Completed failovers since the pool was created. */
  failovers = 0
  /** The primary named by the state store or by our last decision: a hint, verified before use. */
  storedPrimary: string | null = null

  constructor(
    private readonly topology: 'physical' | 'logical',
    /** Called (inside the transition) when {@link minTimeline} rises: what was judged against the old one is judged again. */
    private readonly timelineRaised: () => void = () => undefined,
  ) {}

  /**
   * The primary the current epoch stands for: the one adopted at that epoch here, or named by the
   * store's record at it. Adopting any other node makes a new, higher epoch. Null before either.
   */
  get epochPrimary(): string | null {
    return this.#epochPrimary
  }

  #epochPrimary: string | null = null

  /**
   * Takes in a decision read from the store (ours from before a restart, or another instance's).
   * At an equal epoch the store's record wins: it was recorded first, so its primary is what that
   * epoch stands for from now on.
   */
  learnFromStore(record: StateRecord): void {
    this.storedPrimary = record.primary
    this.#takeEpoch(record)
    if (this.topology !== 'physical') return
    if (this.systemId === null) this.systemId = record.systemId
    this.raiseTimeline(record.timeline)
  }

  /** Takes in what an election learned about the winner. */
  learnFromElection(systemId: string | null, timeline: number | null): void {
    if (this.topology !== 'physical') return
    if (this.systemId === null) this.systemId = systemId
    this.raiseTimeline(timeline)
  }

  /** Raises the minimum timeline (physical topology only; never lowers it). */
  raiseTimeline(timeline: number | null): void {
    if (this.topology !== 'physical' || timeline === null || (this.minTimeline !== null && timeline <= this.minTimeline)) return
    this.minTimeline = timeline
    this.timelineRaised()
  }

  /**
   * The epoch once `primary` is adopted. Epochs strictly increase with every change of primary
   * across every instance sharing the store: the newest decision known (ours, or the store's
   * record, which wins at an equal epoch) keeps its epoch when `primary` is the node it names
   * (re-verifying it, or following another instance's decision); any other node gets the next
   * epoch above everything known — also when this pool re-elects its own earlier primary after
   * the store named another one at its epoch. `changed` (the writer moved) only counts failovers.
   */
  adopt(primary: string, changed: boolean, stored: StateRecord | null): number {
    if (stored) this.#takeEpoch(stored)
    if (this.epoch === 0 || this.#epochPrimary !== primary) {
      this.epoch++
      this.#epochPrimary = primary
    }
    if (changed) this.failovers++
    this.storedPrimary = primary
    return this.epoch
  }

  /** Moves to a stored decision's epoch when it is at least ours (the store wins ties). */
  #takeEpoch(record: StateRecord): void {
    if (record.epoch < this.epoch || record.epoch <= 0) return
    this.epoch = record.epoch
    this.#epochPrimary = record.primary
  }

  /** The epoch a promotion hook is told its node will have. */
  nextEpoch(stored: StateRecord | null): number {
    return Math.max(this.epoch, stored?.epoch ?? 0) + 1
  }
}
