import type { ReadRequest } from './routing-host.js'
import { isCertainlyReadOnly, isSafeToRunAgain, sqlOf } from './statement-kind.js'

/**
 * What a request's own statement says about where it may go and whether it may run again: pure
 * questions about the text (and the per-query options on a config object), asked by the request
 * runner (request.ts) when it routes and when it decides on a retry.
 */

const EMPTY: ReadonlySet<string> = new Set()

/** True for a plain statement the classifier proves read-only (what `routeReads: 'auto'` sends to replicas). */
export function certainlyReadOnly(text: unknown): boolean {
  const sql = sqlOf(text)
  return sql !== null && isCertainlyReadOnly(sql)
}

/**
 * False only when this statement cannot have written wherever it ran: it calls nothing but
 * built-ins that read ({@link isSafeToRunAgain}: `SELECT my_function()` may write). Where it ran
 * does not help: a replica refuses writes only while it is one, and one promoted between the
 * check before sending and the statement's arrival runs them.
 */
export function mayHaveWritten(text: unknown): boolean {
  const sql = sqlOf(text)
  return sql === null || !isSafeToRunAgain(sql)
}

/** A read's requirements: the replicas this request already failed on, its staleness budget (`maxStalenessMs` on a query config, ms), its read-your-writes position. */
export function readRequestOf(text: unknown, exclude: ReadonlySet<string> | null, minLsn: bigint | null): ReadRequest {
  const budget = typeof text === 'object' && text !== null ? (text as { maxStalenessMs?: unknown }).maxStalenessMs : undefined
  return { exclude: exclude ?? EMPTY, maxStalenessMs: typeof budget === 'number' ? budget : undefined, minLsn }
}
