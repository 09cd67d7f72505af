import type { Clock } from '../clock.js'
import { maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import { type SaveOutcome, type StateStoreHealth, StateKeeper } from './state-keeper.js'
import type { StateRecord, StateStore, StateStoreError } from './state-store.js'

/** The decision the coordinator records after adopting a primary. */
export interface Decision {
  /** Name of the adopted primary endpoint. */
  readonly primary: string
  /** The cluster's system identifier, or null when unknown (logical topology). */
  readonly systemId: string | null
  /** Highest timeline a primary was verified on, or null. */
  readonly timeline: number | null
  /** The pool's epoch for this decision (`cluster.epoch`); the record carries exactly this one. */
  readonly epoch: number
  /** Why, in words (passwords are masked before it is stored). */
  readonly reason: string
}

/** Receives a decision found in the store that is newer than (or, at the same epoch, recorded before) ours. */
export type SupersededCallback = (record: StateRecord) => void

/** One store write waiting or running: a save of a new decision, or a heal (re-read, then rewrite if needed). */
interface Job {
  readonly decision: Decision
  readonly superseded: SupersededCallback | null
  readonly heal: boolean
}

/**
 * The coordinator's link to its {@link StateStore}: reads the decision at start, records each new
 * one, heals a store that lost or went back on it, and hands on decisions made elsewhere. A failing
 * store is reported (`stateStoreError`, `status().stateStore`) and otherwise ignored: it never
 * blocks a query. Writes run one at a time, in order; a decision still waiting is replaced by a
 * newer one (the coordinator's decisions only move forward).
 */
export class StateSync {
  readonly #keeper: StateKeeper
  #unwatch: () => void = () => undefined
  /** The callback of the latest persist(), which heal() hands newer records to. */
  #superseded: SupersededCallback | null = null
  #running = false
  #next: Job | null = null
  /** Settles when the write loop is idle. */
  #idle: Promise<void> = Promise.resolve()
  #closed = false

  constructor(
    store: StateStore,
    clock: Clock,
    /** Deadline of each store operation, in ms (`stateStoreTimeoutMs`, default 1000). */
    timeoutMs: number,
    /** Announces an event to the application (after any transition under way). */
    private readonly announce: (event: string, payload: () => unknown) => void,
  ) {
    this.#keeper = new StateKeeper(store, clock, timeoutMs)
  }

  /** The newest record read or written (by epoch, then version); it survives the store losing it. */
  get record(): StateRecord | null {
    return this.#keeper.record
  }

  /** The store's health for status(). */
  get health(): StateStoreHealth {
    return this.#keeper.health
  }

  /** Reads the stored decision (bounded); null when there is none or the store failed. */
  async load(): Promise<StateRecord | null> {
    const { record, error } = await this.#keeper.load()
    if (error) this.#report('load', error)
    return record
  }

  /** Subscribes to decisions recorded elsewhere (when the store can tell). A store whose watch throws is reported, never fatal. */
  watch(listener: (record: StateRecord) => void): void {
    try {
      this.#unwatch = this.#keeper.watch(listener)
    } catch (err) {
      topologyLog('state store watch failed: %s', maskPassword(err instanceof Error ? err.message : String(err)))
    }
  }

  /**
   * Records `decision` (fire-and-forget) unless the store already holds it. When the store holds
   * a later decision, or another primary at the same epoch that was recorded first, that record
   * goes to `superseded` instead (the store's record is never overwritten by ours then). A store
   * that lost the record, or holds an older one, is written over. Each store call is bounded by
   * the store deadline; a decision that could not be recorded marks the store `degraded` and is
   * reported with `stateStoreError`.
   */
  persist(decision: Decision, superseded: SupersededCallback): void {
    if (this.#closed) return
    this.#superseded = superseded
    this.#enqueue({ decision, superseded, heal: false })
  }

  /**
   * Makes sure the store still holds this pool's current `decision` (fire-and-forget; call it
   * periodically while a primary is verified): re-reads the store and rewrites the decision when
   * it holds nothing, something unreadable, an older epoch, or this decision with stale facts.
   * When it holds a later decision (another instance decided after us) that record goes to
   * `superseded` (default: the callback of the latest {@link persist}). Never overlaps itself or a
   * save: a call while one runs or waits is dropped. Bounded: one read and at most three
   * compare-and-sets, each within the store deadline. A heal that records or finds the decision
   * clears `degraded`; a failing one sets it and is reported once per change of failure kind (a
   * store that stays down is not reported on every heal).
   */
  heal(decision: Decision, superseded: SupersededCallback | null = this.#superseded): void {
    if (this.#closed || this.#running || this.#next !== null) return
    this.#enqueue({ decision, superseded, heal: true })
  }

  /** Resolves once no store write is running or waiting (for tests and orderly shutdowns). */
  settled(): Promise<void> {
    return this.#idle
  }

  /** Stops watching, drops writes not started yet and closes the store (a running write ends within its deadline, unreported). */
  async close(): Promise<void> {
    this.#closed = true
    this.#next = null
    this.#unwatch()
    await this.#keeper.close().catch(() => undefined)
  }

  #enqueue(job: Job): void {
    // A save replaces whatever waits (a newer decision, or a heal of an older one).
    this.#next = job
    if (this.#running) return
    this.#running = true
    this.#idle = this.#drain()
  }

  async #drain(): Promise<void> {
    try {
      for (let job = this.#next; job !== null && !this.#closed; job = this.#next) {
        this.#next = null
        try {
          await this.#run(job)
        } catch (err) {
          // Never expected (the keeper never rejects); the loop must go on and nothing may be unhandled.
          topologyLog('state store write failed unexpectedly: %s', maskPassword(err instanceof Error ? err.message : String(err)))
        }
      }
    } finally {
      this.#running = false
      this.#next = null
    }
  }

  async #run(job: Job): Promise<void> {
    const { decision } = job
    const before = this.#keeper.health
    const outcome = await this.#keeper.save(
      { ...decision, reason: maskPassword(decision.reason), updatedAt: new Date().toISOString() },
      { reread: job.heal },
    )
    if (this.#closed) return
    if (outcome.corrupt) this.#report(outcome.corrupt.operation, outcome.corrupt.error)
    this.#conclude(job, outcome, before)
  }

  #conclude(job: Job, outcome: SaveOutcome, before: StateStoreHealth): void {
    const { decision } = job
    switch (outcome.kind) {
      case 'saved':
        if (job.heal) topologyLog('state store healed: %s recorded again (epoch %d, version %d)', decision.primary, decision.epoch, outcome.record.version)
        return
      case 'held':
        return
      case 'newer':
        if (outcome.conflict) topologyLog('state store: %s recorded first at epoch %d; following it, not overwriting it with %s', outcome.record.primary, outcome.record.epoch, decision.primary)
        else topologyLog('state store holds a later decision: %s (epoch %d)', outcome.record.primary, outcome.record.epoch)
        try {
          job.superseded?.(outcome.record)
        } catch (err) {
          topologyLog('state store: superseded callback failed: %s', maskPassword(err instanceof Error ? err.message : String(err)))
        }
        return
      case 'failed':
        // A store that stays down is reported when it starts failing (or fails differently), not on every heal.
        if (!job.heal || before.ok || before.failure !== outcome.error.failure) this.#report(outcome.operation, outcome.error)
        else topologyLog('state store heal failed again (%s): %s', outcome.error.failure, outcome.error.message)
    }
  }

  #report(operation: 'load' | 'save', error: StateStoreError): void {
    topologyLog('state store %s failed (%s): %s', operation, error.failure, maskPassword(error.message))
    this.announce('stateStoreError', () => ({ operation, failure: error.failure, message: maskPassword(error.message), at: new Date().toISOString() }))
  }
}
