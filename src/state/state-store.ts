/**
 * Where a FailoverPool keeps its decision about the active primary, so a restarted process (or
 * another instance of the app) starts on the right node. A record is a hint: the pool tries the
 * stored primary first but verifies it before the first write.
 */

/** What a store holds: the active primary and the fencing facts behind the decision. */
export interface StateRecord {
  /** Incremented by every successful write; the compare-and-set token. */
  readonly version: number
  /** Name of the active primary endpoint. */
  readonly primary: string
  /** The cluster's system identifier (decimal string), or null when unknown. */
  readonly systemId: string | null
  /** Timeline the primary was verified on; a writable node on an older one is stale. */
  readonly timeline: number | null
  /**
   * Grows with every change of primary, across every process sharing the store; orders decisions.
   * A record is never overwritten by one naming another primary at an equal or lower epoch.
   */
  readonly epoch: number
  /** When the decision was made (ISO 8601). */
  readonly updatedAt: string
  /** Why, in words (never a password). */
  readonly reason: string
}

/** A record to write: everything but the version, which the store assigns. */
export type StateUpdate = Omit<StateRecord, 'version'>

/**
 * Outcome of {@link StateStore.compareAndSet}. `corrupt` (optional, on either branch) says, in
 * words, that the store held something that was not a valid record and set it aside or replaced
 * it; the pool reports it as a `stateStoreError` with failure `'corrupt'`.
 */
export type CompareAndSetResult =
  | { readonly ok: true; readonly record: StateRecord; readonly corrupt?: string }
  | { readonly ok: false; readonly current: StateRecord | null; readonly corrupt?: string }

/**
 * A pluggable store with a versioned compare-and-set. Implementations must make `compareAndSet`
 * atomic (one step) across every process sharing the store, and must throw {@link StateStoreError}
 * when the store cannot be read or written; the pool treats that as "no hint" and carries on.
 */
export interface StateStore {
  /** The stored record, or null when nothing was stored yet. */
  load(): Promise<StateRecord | null>
  /**
   * Writes `update` as version `expectedVersion + 1` only if the stored version is
   * `expectedVersion` (null: nothing stored). Otherwise returns what is stored now. Versions start
   * again at 1 when the store lost its record (a flushed Redis, a deleted file), so decisions are
   * ordered by epoch first (see `isNewerRecord`).
   */
  compareAndSet(expectedVersion: number | null, update: StateUpdate): Promise<CompareAndSetResult>
  /**
   * Optional: calls `listener` when another process stores a record (a shared store's pub/sub or
   * polling). Returns a function that stops watching.
   */
  watch?(listener: (record: StateRecord) => void): () => void
  /**
   * Optional, for shared monitoring (`monitor: 'shared'`): takes the fleet's monitor lease for
   * `holder` when nobody holds it, or renews it when `holder` does; true when `holder` holds it
   * for the next `ttlMs` milliseconds. Must be atomic across every process sharing the store.
   */
  acquireLease?(holder: string, ttlMs: number): Promise<boolean>
  /** Optional: gives the monitor lease up when `holder` holds it (a leader ending cleanly). */
  releaseLease?(holder: string): Promise<void>
  /** Optional: sends `message` to every subscriber of this store (best effort: it may be lost). */
  publish?(message: string): Promise<void>
  /** Optional: calls `listener` with each message published on this store. Returns a function that stops. */
  subscribe?(listener: (message: string) => void): () => void
  /** Optional: releases connections and timers. */
  close?(): Promise<void>
}

/** The methods a store needs for shared monitoring (`monitor: 'shared'`). */
export type SharedMonitorStore = StateStore & Required<Pick<StateStore, 'acquireLease' | 'releaseLease' | 'publish' | 'subscribe'>>

/** True when `store` implements everything shared monitoring needs. */
export function supportsSharedMonitor(store: StateStore): store is SharedMonitorStore {
  return typeof store.acquireLease === 'function' && typeof store.releaseLease === 'function' && typeof store.publish === 'function' && typeof store.subscribe === 'function'
}

/**
 * Why a store operation failed: `unavailable` (refused or failed), `corrupt` (holds something that
 * is not a record), `timeout` (past its deadline), `conflict` (compare-and-set kept losing to other
 * writers; reported by the pool, never thrown by a store).
 */
export type StateStoreFailure = 'unavailable' | 'corrupt' | 'timeout' | 'conflict'

/** A store could not be read or written. The pool reports it (event, status) and keeps serving. */
export class StateStoreError extends Error {
  /** Stable code for switch statements. */
  readonly code = 'PGFP_STATE_STORE' as const
  readonly failure: StateStoreFailure

  constructor(failure: StateStoreFailure, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.name = 'StateStoreError'
    this.failure = failure
  }

  /** `instanceof` compares the stable code, so it answers right across copies of the library. */
  static override [Symbol.hasInstance](value: unknown): value is StateStoreError {
    return value instanceof Error && (value as { code?: unknown }).code === 'PGFP_STATE_STORE'
  }
}

/** Checks that a parsed value is a well-formed {@link StateRecord}; returns null when it is not. */
export function asStateRecord(value: unknown): StateRecord | null {
  if (value === null || typeof value !== 'object') return null
  const r = value as Record<string, unknown>
  const ok =
    Number.isInteger(r.version) &&
    (r.version as number) >= 1 &&
    typeof r.primary === 'string' &&
    r.primary.length > 0 &&
    (r.systemId === null || typeof r.systemId === 'string') &&
    (r.timeline === null || Number.isInteger(r.timeline)) &&
    Number.isInteger(r.epoch) &&
    typeof r.updatedAt === 'string' &&
    typeof r.reason === 'string'
  if (!ok) return null
  return {
    version: r.version as number,
    primary: r.primary as string,
    systemId: r.systemId as string | null,
    timeline: r.timeline as number | null,
    epoch: r.epoch as number,
    updatedAt: r.updatedAt as string,
    reason: r.reason as string,
  }
}
