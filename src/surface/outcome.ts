import type { PoolClient } from 'pg'
import { classifyError, neverRan } from '../error-policy.js'
import { sqlOf } from './statement-kind.js'

/**
 * The marker on an error whose statement was sent before the connection broke: it may or may not
 * have run. A string key (ORMs such as MikroORM copy an error's own property names onto their
 * wrappers, but not symbols), not enumerable (it never shows in logs or JSON), and the error's
 * class, message and code stay as they are (ORMs wrap and inspect them).
 */
export const OUTCOME_MARK = 'pgFailoverPoolOutcome'

/** Marks `err` as outcome-unknown (see {@link OUTCOME_MARK}). */
export function markOutcomeUnknown(err: Error): void {
  if (Object.isExtensible(err)) Object.defineProperty(err, OUTCOME_MARK, { value: 'unknown', enumerable: false, configurable: true })
}

/** Marks `err` when the statement it answers was sent and the connection then broke. */
export function markIfLost(err: unknown): void {
  if (err instanceof Error && classifyError(err) === 'connection' && !neverRan(err)) markOutcomeUnknown(err)
}

const WATCHED = Symbol('pgfp.statementsWatched')
const RERUN = Symbol('pgfp.rerun')
const TX_STATUS = Symbol('pgfp.txStatus')

/** Runs a statement again through the surface that handed the client out (a fresh connection, by its rules). */
export type Rerun = (text: unknown, values: unknown, callback: (err: Error | undefined, result?: unknown) => void) => void

type Watched = PoolClient & { [WATCHED]?: true; [RERUN]?: Rerun | null; [TX_STATUS]?: string | null }

/**
 * Watches the statements of a client the pool hands out (installed once per client object, as
 * pg-pool reuses them):
 * - an error of a statement sent before the connection broke is marked outcome-unknown
 *   (`isOutcomeUnknownError(err)` answers true, also through an ORM's wrapper);
 * - a statement that cannot have written (`isReadOnly`: a plain read calling only built-ins) lost
 *   that way, sent while the session was not inside a transaction (PostgreSQL's ReadyForQuery
 *   status `I`), is run again through the surface that
 *   handed the client out and its answer goes to the caller: a read has no outcome to lose, and
 *   outside a transaction there is no snapshot to keep — ORMs run reads on checked-out clients
 *   too, and a failover should not turn them into errors. The broken client stays broken.
 * Nothing else changes: arguments, results, return values (promise, undefined or the
 * submittable), the error object itself. Cursors and streams deliver their own errors and are left
 * alone. `rerun` is the surface of the current checkout (null while the client is in the pool).
 */
export function watchStatements(client: PoolClient, rerun: Rerun | null, isReadOnly: (sql: string) => boolean): void {
  const target = client as Watched
  target[RERUN] = rerun
  if (target[WATCHED]) return
  Object.defineProperty(target, WATCHED, { value: true, enumerable: false })
  Object.defineProperty(target, RERUN, { value: rerun, writable: true, enumerable: false })
  Object.defineProperty(target, TX_STATUS, { value: null, writable: true, enumerable: false })
  if (typeof (client as { getTransactionStatus?: unknown }).getTransactionStatus !== 'function') {
    // pg before 8.16 does not expose the status: follow ReadyForQuery ourselves.
    ;(client as unknown as { connection?: NodeJS.EventEmitter }).connection?.on('readyForQuery', (msg: { status?: string }) => (target[TX_STATUS] = msg?.status ?? null))
  }
  const original = client.query
  const watched = function (this: Watched, ...args: any[]): any {
    const first = args[0]
    if (first !== null && typeof first === 'object' && typeof first.submit === 'function') return original.apply(this, args as never)
    const again = this[RERUN] && rerunnable(this, first, isReadOnly) ? this[RERUN] : null
    const values = typeof args[1] === 'function' ? undefined : args[1]
    const last = args[args.length - 1]
    if (typeof last === 'function') {
      args[args.length - 1] = function (this: unknown, err: unknown, res: unknown) {
        answer(err, res, again, first, values, (e, r) => last.call(this, e, r))
      }
      return original.apply(this, args as never)
    }
    if (first !== null && typeof first === 'object' && typeof first.callback === 'function') {
      const callback = first.callback
      args[0] = {
        ...first,
        callback: (err: unknown, res: unknown) => answer(err, res, again, first, values, callback),
      }
      return original.apply(this, args as never)
    }
    const result = original.apply(this, args as never) as unknown
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      // Only a failure allocates: the success path stays pg's own promise plus one then().
      return (result as Promise<unknown>).then(undefined, (err: unknown) =>
        err ? new Promise((resolve, reject) => answer(err, undefined, again, first, values, (e, r) => (e ? reject(e) : resolve(r)))) : Promise.reject(err),
      )
    }
    return result
  }
  Object.defineProperty(target, 'query', { value: watched, writable: true, configurable: true, enumerable: false })
}

/**
 * Answers the caller of a watched statement: a connection error re-runs it where `again` (the
 * surface's re-run, null when the statement is not rerunnable) allows; any other error is marked
 * outcome-unknown if the statement may have run.
 */
function answer(err: unknown, res: unknown, again: Rerun | null, text: unknown, values: unknown, deliver: (err: any, res: any) => void): void {
  if (err && again && classifyError(err) === 'connection') return again(text, values, deliver)
  if (err) markIfLost(err)
  deliver(err, res)
}

/** The client stops being the surface's to re-run on (it went back to the pool). */
export function unwatchCheckout(client: PoolClient): void {
  const target = client as Watched
  if (target[WATCHED]) target[RERUN] = null
}

/** A statement `isReadOnly` vouches for, sent on a session idle outside a transaction with nothing queued before it. */
function rerunnable(client: Watched, text: unknown, isReadOnly: (sql: string) => boolean): boolean {
  // The session checks first: they are cheap and most ORM statements run inside a transaction.
  const status = typeof (client as { getTransactionStatus?: () => string | null }).getTransactionStatus === 'function' ? (client as unknown as { getTransactionStatus(): string | null }).getTransactionStatus() : client[TX_STATUS]
  if (status !== 'I') return false
  // Nothing in flight or queued ahead of it on this session (pg runs one statement at a time).
  const internal = client as unknown as { _activeQuery?: unknown; _queryQueue?: unknown[] }
  if (!('_activeQuery' in internal) || internal._activeQuery != null || (internal._queryQueue?.length ?? 0) !== 0) return false
  const sql = sqlOf(text)
  return sql !== null && isReadOnly(sql)
}
