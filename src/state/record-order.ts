import type { StateRecord, StateUpdate } from './state-store.js'

/**
 * How the record a store holds relates to a decision this pool wants recorded:
 * - `write`: nothing stored, an older epoch, or this very decision (same epoch and primary) with
 *   stale facts (a lower or unknown timeline, an unknown system identifier): write ours over it;
 * - `held`: the store already holds this decision (or knows more about it): nothing to write;
 * - `newer`: a later decision (higher epoch) is stored: follow it, never overwrite it;
 * - `conflict`: the same epoch names another primary. The stored one was recorded first (the
 *   store's compare-and-set ordered the two) and wins; ours is never written over it. A pool that
 *   still prefers its own node after verifying the stored one decides again at a higher epoch.
 */
export type RecordVerdict = 'write' | 'held' | 'newer' | 'conflict'

/** Judges `stored` (null: nothing stored) against `update`; see {@link RecordVerdict}. Pure. */
export function judgeRecord(stored: StateRecord | null, update: StateUpdate): RecordVerdict {
  if (stored === null || stored.epoch < update.epoch) return 'write'
  if (stored.epoch > update.epoch) return 'newer'
  if (stored.primary !== update.primary) return 'conflict'
  const staleTimeline = update.timeline !== null && (stored.timeline === null || stored.timeline < update.timeline)
  const staleSystem = stored.systemId === null && update.systemId !== null
  return staleTimeline || staleSystem ? 'write' : 'held'
}

/** The order of records: by epoch, then by version (versions restart at 1 after a store lost its record). */
export type RecordPosition = Pick<StateRecord, 'epoch' | 'version'>

/** True when `record` comes after `than` (always when `than` is null). Pure. */
export function isNewerRecord(record: RecordPosition, than: RecordPosition | null): boolean {
  if (than === null) return true
  return record.epoch > than.epoch || (record.epoch === than.epoch && record.version > than.version)
}
