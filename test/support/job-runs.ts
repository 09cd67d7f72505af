/**
 * Job queues (pg-boss, graphile-worker) through a failover: what each job's handler did, a gate
 * that holds one job's handler across the failover, and what must hold at the end of every
 * job a test tried to add.
 *
 * Jobs are told apart by a key in their data, not by an id: a failed add has no id, and its job
 * may still exist (it may have been written before the connection was lost).
 */
import { EventEmitter } from 'node:events'
import { NoPrimaryError, isOutcomeUnknownError } from '../../src/index.js'
import { nextEvent } from './wait.js'

/** A job a test tried to add (send, addJob), and the error if that failed (null when acknowledged). */
export interface Attempt {
  readonly key: string
  readonly error: unknown
}

/** Handler runs per job key, and a gate a gated job's handler waits at until {@link JobRuns.openGate}. */
export class JobRuns {
  /** How many times each key's handler ran. */
  readonly runs = new Map<string, number>()
  readonly #entered = new EventEmitter()
  #openGate!: () => void
  readonly #gate = new Promise<void>((resolve) => (this.#openGate = resolve))

  /** Call from the job handler: counts the run, then, for a gated job, waits at the gate. */
  async record(key: string, gated = false): Promise<void> {
    this.runs.set(key, (this.runs.get(key) ?? 0) + 1)
    if (gated) {
      this.#entered.emit('entered')
      await this.#gate
    }
  }

  /** Resolves once a gated job's handler is at the gate. Call it before adding that job. */
  entered(timeout = 15_000): Promise<unknown> {
    return nextEvent(this.#entered, 'entered', { timeout })
  }

  /** Lets gated handlers finish (also at teardown, so that a runner can stop). */
  openGate(): void {
    this.#openGate()
  }

  /**
   * What must hold of `all` the jobs tried (each list must be empty): an add may fail only as a
   * write lost mid-flight or for want of a primary; every acknowledged job ran exactly once; a job
   * whose add failed ran at most once; nothing ran that was never added.
   */
  violations(all: readonly Attempt[]): { failedOtherwise: string[]; acknowledgedNotOnce: string[]; failedRanTwice: string[]; ranUnadded: string[] } {
    const failed = all.filter((a) => a.error !== null)
    const ran = (key: string): number => this.runs.get(key) ?? 0
    return {
      failedOtherwise: failed.filter((f) => !isOutcomeUnknownError(f.error) && !(f.error instanceof NoPrimaryError)).map((f) => `${f.key}: ${String(f.error)}`),
      acknowledgedNotOnce: all.filter((a) => a.error === null && ran(a.key) !== 1).map((a) => `${a.key}: ran ${ran(a.key)} times`),
      failedRanTwice: failed.filter((f) => ran(f.key) > 1).map((f) => `${f.key}: ran ${ran(f.key)} times`),
      ranUnadded: [...this.runs.keys()].filter((k) => !all.some((a) => a.key === k)),
    }
  }
}

/** No violations, for one `toEqual` with {@link JobRuns.violations}. */
export const NO_VIOLATIONS = { failedOtherwise: [], acknowledgedNotOnce: [], failedRanTwice: [], ranUnadded: [] }
