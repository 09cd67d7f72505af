import { type Clock, withDeadline } from '../clock.js'
import { type StateRecord, type StateStore, StateStoreError, type StateUpdate } from './state-store.js'

/** What status() shows about the store. */
export interface StateStoreHealth {
  /** True after the last operation succeeded (or before any). */
  readonly ok: boolean
  /** Failure kind of the last failed operation, or null. */
  readonly failure: StateStoreError['failure'] | null
  /** Message of the last failure (no passwords: stores must not put them there), or null. */
  readonly lastError: string | null
  /** Version of the record this pool last read or wrote, or null. */
  readonly version: number | null
}

/**
 * The pool's side of a {@link StateStore}: every call bounded by a deadline (a slow or dead store
 * never blocks queries), the last version seen kept for compare-and-set, and the store's health
 * kept for status(). It reports outcomes; the pool decides what they mean.
 */
export class StateKeeper {
  #version: number | null = null
  #last: StateRecord | null = null
  #failure: StateStoreError | null = null

  constructor(
    private readonly store: StateStore,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
  ) {}

  /** The last record read or written, or null. */
  get record(): StateRecord | null {
    return this.#last
  }

  /** Health for status(). */
  get health(): StateStoreHealth {
    return { ok: this.#failure === null, failure: this.#failure?.failure ?? null, lastError: this.#failure?.message ?? null, version: this.#version }
  }

  /** Reads the stored record; resolves null (and remembers the failure) when the store fails. */
  async load(): Promise<{ record: StateRecord | null; error: StateStoreError | null }> {
    try {
      const record = await this.#bounded(this.store.load(), 'load')
      this.#seen(record)
      this.#failure = null
      return { record, error: null }
    } catch (err) {
      return { record: null, error: this.#fail(err) }
    }
  }

  /**
   * Records a decision. On a version conflict the stored record wins when its epoch is at least
   * ours (another process decided later: returned as `superseded`); otherwise we write over it.
   */
  async save(update: StateUpdate): Promise<{ saved: StateRecord | null; superseded: StateRecord | null; error: StateStoreError | null }> {
    try {
      for (let attempt = 0; attempt < 3; attempt++) {
        const result = await this.#bounded(this.store.compareAndSet(this.#version, update), 'compareAndSet')
        this.#failure = null
        if (result.ok) {
          this.#seen(result.record)
          return { saved: result.record, superseded: null, error: null }
        }
        this.#seen(result.current)
        if (result.current && result.current.epoch >= update.epoch) return { saved: null, superseded: result.current, error: null }
      }
      return { saved: null, superseded: this.#last, error: null }
    } catch (err) {
      return { saved: null, superseded: null, error: this.#fail(err) }
    }
  }

  /** Subscribes to records written elsewhere (when the store can tell); returns the unsubscribe function. */
  watch(listener: (record: StateRecord) => void): () => void {
    if (!this.store.watch) return () => undefined
    return this.store.watch((record) => {
      if (this.#version !== null && record.version <= this.#version) return
      this.#seen(record)
      listener(record)
    })
  }

  async close(): Promise<void> {
    await this.store.close?.()
  }

  #seen(record: StateRecord | null): void {
    if (!record) return
    if (this.#version === null || record.version >= this.#version) {
      this.#version = record.version
      this.#last = record
    }
  }

  #fail(err: unknown): StateStoreError {
    const error = err instanceof StateStoreError ? err : new StateStoreError('unavailable', err instanceof Error ? err.message : String(err), { cause: err })
    this.#failure = error
    return error
  }

  #bounded<T>(operation: Promise<T>, name: string): Promise<T> {
    return withDeadline(operation, this.timeoutMs, () => new StateStoreError('timeout', `state store ${name} took longer than ${this.timeoutMs} ms`), this.clock)
  }
}
