import { type Clock, withDeadline } from '../clock.js'
import { maskPassword } from '../errors.js'
import { isNewerRecord, judgeRecord } from './record-order.js'
import { type StateRecord, type StateStore, StateStoreError, type StateUpdate } from './state-store.js'

/** What status() shows about the store (`status().stateStore`). */
export interface StateStoreHealth {
  /**
   * True while the store works and holds this pool's decision as far as the pool knows: false
   * after a failed operation (`failure`) and while `degraded`. True before any operation.
   */
  readonly ok: boolean
  /** Failure kind of the last failed operation (`conflict`: compare-and-set kept losing), or null. */
  readonly failure: StateStoreError['failure'] | null
  /** Message of the last failure (password masked), or null. */
  readonly lastError: string | null
  /** Version of the record the store held when this pool last read or wrote it, or null (none, or unknown). */
  readonly version: number | null
  /**
   * True when the last attempt to record this pool's decision (a save after a failover, or a heal)
   * could not: the store failed, or {@link MAX_CAS_ATTEMPTS} compare-and-sets in a row lost. The
   * pool keeps serving from its own probes; a restarted process or another instance may start from
   * an older record meanwhile. Cleared by the next save or heal that records the decision (or finds
   * it, or a newer one, stored). Queries never wait for the store either way.
   */
  readonly degraded: boolean
  /** Why `degraded`, in words (password masked), or null when not. */
  readonly reason: string | null
  /** Compare-and-sets that lost in a row since the last save or heal that settled (0 normally). */
  readonly conflicts: number
}

/** Compare-and-sets one save tries (each from what the store really holds) before it gives up as `conflict`. */
export const MAX_CAS_ATTEMPTS = 3

/**
 * How one save (or heal) ended:
 * - `saved`: the decision was written now;
 * - `held`: the store already held it;
 * - `newer`: the store holds a later decision, or (`conflict: true`) another primary at the same
 *   epoch recorded first; the pool should follow it (after verifying);
 * - `failed`: the decision is not recorded (`operation` says whether reading or writing failed).
 * `corrupt` reports something unreadable found on the way (by the read, or by a compare-and-set
 * that set it aside or replaced it).
 */
export type SaveOutcome = (
  | { readonly kind: 'saved' | 'held'; readonly record: StateRecord }
  | { readonly kind: 'newer'; readonly record: StateRecord; readonly conflict: boolean }
  | { readonly kind: 'failed'; readonly error: StateStoreError; readonly operation: 'load' | 'save' }
) & { readonly corrupt: { readonly error: StateStoreError; readonly operation: 'load' | 'save' } | null }

/**
 * The pool's side of a {@link StateStore}: every call bounded by a deadline (a slow or dead store
 * never blocks queries), compare-and-set always from the version the store really holds (what the
 * last read, write or lost compare-and-set returned, never a remembered one alone), the rules of
 * {@link judgeRecord} so a record is never overwritten by an equal or older decision, and the
 * store's health kept for status(). It reports outcomes; the pool decides what they mean.
 */
export class StateKeeper {
  /** What the store held at our last contact: a record, null (nothing), undefined (never reached). */
  #held: StateRecord | null | undefined = undefined
  /** The newest record (by epoch, then version) ever read from or written to the store. */
  #known: StateRecord | null = null
  #failure: StateStoreError | null = null
  #degraded: string | null = null
  #conflicts = 0

  constructor(
    private readonly store: StateStore,
    private readonly clock: Clock,
    private readonly timeoutMs: number,
  ) {}

  /** The newest record read or written (by epoch, then version); it survives the store losing it. Null before any. */
  get record(): StateRecord | null {
    return this.#known
  }

  /** Health for status(). */
  get health(): StateStoreHealth {
    return {
      ok: this.#failure === null && this.#degraded === null,
      failure: this.#failure?.failure ?? null,
      lastError: this.#failure ? maskPassword(this.#failure.message) : null,
      version: this.#held?.version ?? null,
      degraded: this.#degraded !== null,
      reason: this.#degraded,
      conflicts: this.#conflicts,
    }
  }

  /** Reads the stored record; resolves null (and remembers the failure) when the store fails. */
  async load(): Promise<{ record: StateRecord | null; error: StateStoreError | null }> {
    try {
      const record = await this.#bounded(this.store.load(), 'load')
      this.#seen(record)
      this.#failure = null
      return { record, error: null }
    } catch (err) {
      const error = asStoreError(err)
      this.#failure = error
      return { record: null, error }
    }
  }

  /**
   * Records `update` unless the store holds it or a later decision ({@link judgeRecord}). With
   * `reread` (a heal), or while the store is not healthy, the store is read first (it may have
   * lost or replaced the record since); otherwise the first compare-and-set starts from what the
   * store held at our last contact, and every lost one continues from the record it returned.
   * Health changes only on what the store answered now, never on memory. At most one read and
   * {@link MAX_CAS_ATTEMPTS} compare-and-sets, each bounded by the store deadline. Never rejects.
   */
  async save(update: StateUpdate, options: { reread?: boolean } = {}): Promise<SaveOutcome> {
    let corrupt: SaveOutcome['corrupt'] = null
    let held = this.#held
    // What we remember is only trusted while the store is healthy: after a failure, read first.
    const reread = options.reread === true || this.#failure !== null || this.#degraded !== null
    // True once `held` comes from this save's own contact with the store (not from memory).
    let fresh = reread
    if (reread) {
      try {
        held = await this.#bounded(this.store.load(), 'load')
        this.#seen(held)
      } catch (err) {
        const error = asStoreError(err)
        // Unreadable is as good as nothing stored: our decision replaces it (the store sets it aside).
        if (error.failure !== 'corrupt') return this.#failed(update, error, 'load', null)
        corrupt = { error, operation: 'load' }
        held = null
      }
    }
    for (let attempt = 0; ; attempt++) {
      if (held !== undefined && held !== null) {
        const verdict = judgeRecord(held, update)
        // Judged from memory (no store call made), the outcome says nothing new about the store's health.
        const settle = (outcome: SaveOutcome): SaveOutcome => (fresh ? this.#settled(outcome) : outcome)
        if (verdict === 'held') return settle({ kind: 'held', record: held, corrupt })
        if (verdict === 'newer' || verdict === 'conflict') return settle({ kind: 'newer', record: held, conflict: verdict === 'conflict', corrupt })
      }
      if (attempt === MAX_CAS_ATTEMPTS) break
      let result
      try {
        result = await this.#bounded(this.store.compareAndSet(held?.version ?? null, update), 'compareAndSet')
      } catch (err) {
        return this.#failed(update, asStoreError(err), 'save', corrupt)
      }
      if (result.corrupt !== undefined) corrupt ??= { error: new StateStoreError('corrupt', maskPassword(result.corrupt)), operation: 'save' }
      if (result.ok) {
        this.#seen(result.record)
        return this.#settled({ kind: 'saved', record: result.record, corrupt })
      }
      // Somebody else wrote, or the store lost or replaced the record: continue from what it holds now.
      this.#conflicts++
      fresh = true
      held = result.current
      this.#seen(held)
    }
    const error = new StateStoreError('conflict', `compare-and-set lost ${MAX_CAS_ATTEMPTS} times in a row (other writers, or a store that does not keep what it accepts)`)
    return this.#failed(update, error, 'save', corrupt)
  }

  /**
   * Subscribes to records written elsewhere (when the store can tell); returns the unsubscribe
   * function. Only news reaches `listener`: a record after the newest known (epoch, then version).
   */
  watch(listener: (record: StateRecord) => void): () => void {
    if (!this.store.watch) return () => undefined
    return this.store.watch((record) => {
      if (!isNewerRecord(record, this.#known)) return
      this.#seen(record)
      listener(record)
    })
  }

  /** Closes the store (its connections and timers), when it can be closed. */
  async close(): Promise<void> {
    await this.store.close?.()
  }

  /** Notes what the store holds now (null: nothing), and the newest record known. */
  #seen(record: StateRecord | null): void {
    this.#held = record
    if (record !== null && isNewerRecord(record, this.#known)) this.#known = record
  }

  #settled(outcome: SaveOutcome): SaveOutcome {
    this.#failure = null
    this.#degraded = null
    this.#conflicts = 0
    return outcome
  }

  #failed(update: StateUpdate, error: StateStoreError, operation: 'load' | 'save', corrupt: SaveOutcome['corrupt']): SaveOutcome {
    this.#failure = error
    this.#degraded = maskPassword(`the decision (primary ${update.primary}, epoch ${update.epoch}) is not recorded: ${error.message}`)
    return { kind: 'failed', error, operation, corrupt }
  }

  #bounded<T>(operation: Promise<T>, name: string): Promise<T> {
    return withDeadline(operation, this.timeoutMs, () => new StateStoreError('timeout', `state store ${name} took longer than ${this.timeoutMs} ms`), this.clock)
  }
}

/** Any failure of a store call as a StateStoreError (custom stores may throw anything). */
function asStoreError(err: unknown): StateStoreError {
  return err instanceof StateStoreError ? err : new StateStoreError('unavailable', maskPassword(err instanceof Error ? err.message : String(err)), { cause: err })
}
