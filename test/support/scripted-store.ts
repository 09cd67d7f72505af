/**
 * A StateStore for unit tests whose misfortunes a test scripts: it loses its record (a FLUSHALL,
 * a deleted file), has an older one put back, fails, hangs, or has another writer race every
 * compare-and-set. Compare-and-set is exact (the MemoryStateStore rule) and every successful write
 * is logged with what it replaced, so a test can check that no write broke the epoch rules.
 */
import type { CompareAndSetResult, StateRecord, StateStore, StateUpdate } from '../../src/state/state-store.js'

export class ScriptedStore implements StateStore {
  /** What the store holds now. */
  record: StateRecord | null = null
  /** Every successful compare-and-set: what it replaced and what it wrote. */
  readonly writes: Array<{ readonly before: StateRecord | null; readonly after: StateRecord }> = []
  loads = 0
  compareAndSets = 0
  /** When set, load and compareAndSet reject with it. */
  failWith: Error | null = null
  /** When set, load rejects with it (once: the next load works), e.g. a corrupt record. */
  loadFailsWith: Error | null = null
  /** When true, load and compareAndSet never settle. */
  hang = false
  /** When set, another writer stores this record (at the next version) just before every compare-and-set. */
  interfere: StateUpdate | null = null
  readonly #listeners = new Set<(record: StateRecord) => void>()

  /** The record is gone (Redis restarted without persistence, FLUSHALL, the file deleted). */
  lose(): void {
    this.record = null
  }

  /** Puts `record` there as it is (an older copy restored, or another instance's write); watchers hear it. */
  put(record: StateRecord): void {
    this.record = record
    for (const listener of this.#listeners) listener(record)
  }

  async load(): Promise<StateRecord | null> {
    this.loads++
    await this.#misfortune()
    const failure = this.loadFailsWith
    this.loadFailsWith = null
    if (failure) throw failure
    return this.record
  }

  async compareAndSet(expectedVersion: number | null, update: StateUpdate): Promise<CompareAndSetResult> {
    this.compareAndSets++
    await this.#misfortune()
    if (this.interfere) this.record = { ...this.interfere, version: (this.record?.version ?? 0) + 1 }
    const before = this.record
    if ((before?.version ?? null) !== expectedVersion) return { ok: false, current: before }
    const after: StateRecord = { ...update, version: (before?.version ?? 0) + 1 }
    this.record = after
    this.writes.push({ before, after })
    for (const listener of this.#listeners) listener(after)
    return { ok: true, record: after }
  }

  watch(listener: (record: StateRecord) => void): () => void {
    this.#listeners.add(listener)
    return () => this.#listeners.delete(listener)
  }

  async #misfortune(): Promise<void> {
    if (this.hang) await new Promise<never>(() => undefined)
    if (this.failWith) throw this.failWith
  }
}

/** A record as a store would hold it. */
export function storedRecord(primary: string, epoch: number, version: number, timeline: number | null = epoch): StateRecord {
  return { primary, epoch, version, timeline, systemId: 'S1', updatedAt: '2026-01-01T00:00:00.000Z', reason: `test ${primary}` }
}
