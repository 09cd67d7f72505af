import type { CompareAndSetResult, StateRecord, StateStore, StateUpdate } from './state-store.js'

/** The default store: the decision lives as long as the process (one pool's own memory). */
export class MemoryStateStore implements StateStore {
  #record: StateRecord | null = null
  readonly #listeners = new Set<(record: StateRecord) => void>()

  async load(): Promise<StateRecord | null> {
    return this.#record
  }

  async compareAndSet(expectedVersion: number | null, update: StateUpdate): Promise<CompareAndSetResult> {
    const current = this.#record
    if ((current?.version ?? null) !== expectedVersion) return { ok: false, current }
    const record: StateRecord = { ...update, version: (current?.version ?? 0) + 1 }
    this.#record = record
    // Several pools may share one memory store in a process (tests, multi-tenant apps).
    for (const listener of this.#listeners) queueMicrotask(() => listener(record))
    return { ok: true, record }
  }

  watch(listener: (record: StateRecord) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }
}
