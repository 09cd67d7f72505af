/**
 * What a failed request means for the ledger. For `pool.query` writes the library decides (the
 * suite checks its answer): OutcomeUnknownError is "may have run"; NoPrimaryError,
 * AllEndpointsDownError, SplitBrainError, 25006 and pg-pool's checkout timeout are "did not run".
 * Anything else is `other` and reported. For the transaction writer (`pool.connect()`, whose
 * errors reach the caller as they are) the suite decides from the step that failed.
 */
import { classifyError } from '../../src/advanced.js'
import { AllEndpointsDownError, NoPrimaryError, isOutcomeUnknownError, SplitBrainError } from '../../src/index.js'

export interface Classified {
  readonly outcome: 'clean' | 'unknown' | 'other'
  /** Short, stable text for the report (no ids). */
  readonly reason: string
  /** Endpoint name the statement was sent to, when the error says (OutcomeUnknownError). */
  readonly endpoint: string | null
}

export function describeError(err: unknown): string {
  const message = err instanceof Error ? err.message : String(err)
  const code = (err as { code?: unknown } | null)?.code
  return `${typeof code === 'string' ? `${code} ` : ''}${message}`.replace(/\s+/g, ' ').slice(0, 160)
}

/** A `pool.query` write's failure, as the library reported it. */
export function classifyWriteError(err: unknown): Classified {
  if (isOutcomeUnknownError(err)) return { outcome: 'unknown', reason: 'OutcomeUnknownError', endpoint: (err as { endpoint?: string }).endpoint ?? null }
  const clean = cleanReason(err)
  if (clean !== null) return { outcome: 'clean', reason: clean, endpoint: null }
  return { outcome: 'other', reason: describeError(err), endpoint: null }
}

/** Where the transaction writer was when it failed. */
export type TxStep = 'connect' | 'begin' | 'insert' | 'commit'

/** A transaction writer's failure: decided by the step (the client never switches nodes). */
export function classifyTxError(step: TxStep, err: unknown): Classified {
  const clean = cleanReason(err)
  if (step === 'connect') {
    if (clean !== null) return { outcome: 'clean', reason: `connect: ${clean}`, endpoint: null }
    if (classifyError(err) === 'connection') return { outcome: 'clean', reason: 'connect: connection error', endpoint: null }
    return { outcome: 'other', reason: `connect: ${describeError(err)}`, endpoint: null }
  }
  // Before COMMIT was sent nothing can have committed: the server rolls the transaction back.
  if (step !== 'commit') return { outcome: 'clean', reason: `${step} failed: ${clean ?? shortClass(err)}`, endpoint: null }
  if (classifyError(err) === 'connection') return { outcome: 'unknown', reason: 'COMMIT lost with the connection', endpoint: null }
  return { outcome: 'clean', reason: `COMMIT failed: ${clean ?? describeError(err)}`, endpoint: null }
}

function cleanReason(err: unknown): string | null {
  if ((err instanceof NoPrimaryError)) return 'NoPrimaryError'
  if ((err instanceof AllEndpointsDownError)) return 'AllEndpointsDownError'
  if ((err instanceof SplitBrainError)) return 'SplitBrainError'
  if ((err as { code?: unknown } | null)?.code === '25006') return '25006 read_only_sql_transaction'
  if (err instanceof Error && err.message.includes('timeout exceeded when trying to connect')) return 'pool checkout timeout'
  return null
}

function shortClass(err: unknown): string {
  const cls = classifyError(err)
  return cls === 'connection' ? 'connection error' : describeError(err)
}
