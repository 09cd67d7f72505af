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
  /** Grows by one with each change of primary decided here or followed from the store. */
  epoch = 0
  /** Completed failovers since the pool was created. */
  failovers = 0
  /** The primary named by the state store or by our last decision: a hint, verified before use. */
  storedPrimary: string | null = null

  constructor(private readonly topology: 'physical' | 'logical') {}

  /** Takes in a decision read from the store (ours from before a restart, or another instance's). */
  learnFromStore(record: StateRecord): void {
    this.storedPrimary = record.primary
    this.epoch = Math.max(this.epoch, record.epoch)
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
    if (this.topology === 'physical' && timeline !== null) this.minTimeline = Math.max(this.minTimeline ?? 0, timeline)
  }

  /**
   * The epoch once `primary` is adopted: following a decision another instance recorded keeps its
   * epoch; a decision of our own makes a new one. An unchanged primary keeps the epoch it has.
   */
  adopt(primary: string, changed: boolean, stored: StateRecord | null): number {
    if (changed || this.epoch === 0) {
      if (stored && stored.primary === primary && stored.epoch >= this.epoch && stored.epoch > 0) this.epoch = stored.epoch
      else this.epoch = Math.max(this.epoch, stored?.epoch ?? 0) + 1
    }
    if (changed) this.failovers++
    this.storedPrimary = primary
    return this.epoch
  }

  /** The epoch a promotion hook is told its node will have. */
  nextEpoch(stored: StateRecord | null): number {
    return Math.max(this.epoch, stored?.epoch ?? 0) + 1
  }
}
