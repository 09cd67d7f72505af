/**
 * A StateStore whose operations fail or hang on command, wrapped around the library's
 * MemoryStateStore: the `store-down` fault. `fail` throws StateStoreError('unavailable') at once;
 * `hang` holds every call until the outage ends, then fails it (as a dead connection finally
 * would), so nothing is left pending after the run.
 */
import type { CompareAndSetResult, StateUpdate } from '../../src/advanced.js'
import { MemoryStateStore, type StateRecord, type StateStore, StateStoreError } from '../../src/index.js'

export type StoreMode = 'ok' | 'fail' | 'hang'

export class FlakyStateStore implements StateStore {
  readonly #inner = new MemoryStateStore()
  #mode: StoreMode = 'ok'
  readonly #held = new Set<(err: Error) => void>()
  /** Calls seen, and how many of them failed or hung. */
  readonly stats = { calls: 0, failed: 0, hung: 0, saves: 0 }

  get mode(): StoreMode {
    return this.#mode
  }

  /** Switches the outage on or off; leaving `hang` fails every held call. */
  setMode(mode: StoreMode): void {
    this.#mode = mode
    if (mode !== 'hang') this.#releaseHeld()
  }

  /** The record the pool last managed to store. */
  async peek(): Promise<StateRecord | null> {
    return this.#inner.load()
  }

  async load(): Promise<StateRecord | null> {
    await this.#gate('load')
    return this.#inner.load()
  }

  async compareAndSet(expectedVersion: number | null, update: StateUpdate): Promise<CompareAndSetResult> {
    await this.#gate('compareAndSet')
    const result = await this.#inner.compareAndSet(expectedVersion, update)
    if (result.ok) this.stats.saves++
    return result
  }

  watch(listener: (record: StateRecord) => void): () => void {
    return this.#inner.watch(listener)
  }

  async close(): Promise<void> {
    this.#releaseHeld()
  }

  async #gate(operation: string): Promise<void> {
    this.stats.calls++
    if (this.#mode === 'fail') {
      this.stats.failed++
      throw new StateStoreError('unavailable', `chaos: state store down (${operation})`)
    }
    if (this.#mode === 'hang') {
      this.stats.hung++
      await new Promise<void>((_, reject) => {
        this.#held.add(reject)
      })
    }
  }

  #releaseHeld(): void {
    for (const reject of this.#held) reject(new StateStoreError('unavailable', 'chaos: state store connection lost after hanging'))
    this.#held.clear()
  }
}
