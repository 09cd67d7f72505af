import type { Clock } from '../clock.js'
import { maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import { type StateStoreHealth, StateKeeper } from './state-keeper.js'
import type { StateRecord, StateStore, StateStoreError } from './state-store.js'

/** The decision the coordinator records after adopting a primary. */
export interface Decision {
  readonly primary: string
  readonly systemId: string | null
  readonly timeline: number | null
  readonly epoch: number
  readonly reason: string
}

/**
 * The coordinator's link to its {@link StateStore}: reads the decision at start, records each new
 * one, and hands on decisions made elsewhere. A failing store is reported (`stateStoreError`) and
 * otherwise ignored: it never blocks a query.
 */
export class StateSync {
  readonly #keeper: StateKeeper
  #unwatch: () => void = () => undefined

  constructor(
    store: StateStore,
    clock: Clock,
    timeoutMs: number,
    /** Announces an event to the application (after any transition under way). */
    private readonly announce: (event: string, payload: () => unknown) => void,
  ) {
    this.#keeper = new StateKeeper(store, clock, timeoutMs)
  }

  /** The last record read or written. */
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
    if (error) this.#reportError('load', error)
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

  /** Records `decision` unless the store already holds it; a newer decision found instead goes to `superseded`. */
  persist(decision: Decision, superseded: (record: StateRecord) => void): void {
    const stored = this.#keeper.record
    if (stored && stored.primary === decision.primary && stored.epoch === decision.epoch && stored.timeline === decision.timeline) return
    void this.#keeper
      .save({ ...decision, reason: maskPassword(decision.reason), updatedAt: new Date().toISOString() })
      .then(({ superseded: newer, error }) => {
        if (error) this.#reportError('save', error)
        if (newer) superseded(newer)
      })
  }

  /** Stops watching and closes the store. */
  async close(): Promise<void> {
    this.#unwatch()
    await this.#keeper.close().catch(() => undefined)
  }

  #reportError(operation: 'load' | 'save', error: StateStoreError): void {
    topologyLog('state store %s failed (%s): %s', operation, error.failure, error.message)
    this.announce('stateStoreError', () => ({ operation, failure: error.failure, message: maskPassword(error.message), at: new Date().toISOString() }))
  }
}
