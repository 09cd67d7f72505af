import type { PoolClient } from 'pg'
import { wasCut } from '../endpoint/client-cut.js'
import { classifyError, neverRan } from '../error-policy.js'
import { sqlOf } from './statement-kind.js'

/**
 * The marker on an error whose statement's fate the pool knows: `'unknown'` when it was sent
 * before the connection broke (it may or may not have run), `'safe-to-retry'` when it provably
 * changed nothing (never sent, refused by a proxy, or a statement that can only read). A string key
 * (ORMs such as MikroORM copy an error's own property names onto their wrappers, but not symbols),
 * not enumerable (it never shows in logs or JSON), and the error's class, message and code stay as
 * they are (ORMs wrap and inspect them).
 */
export const OUTCOME_MARK = 'pgFailoverPoolOutcome'

/** Marks `err` as outcome-unknown (see {@link OUTCOME_MARK}). */
export function markOutcomeUnknown(err: Error): void {
  mark(err, 'unknown')
}

/** Marks `err` as safe to retry: its statement changed nothing (see {@link OUTCOME_MARK}). */
export function markSafeToRetry(err: Error): void {
  mark(err, 'safe-to-retry')
}

function mark(err: Error, value: 'unknown' | 'safe-to-retry'): void {
  if (Object.isExtensible(err)) Object.defineProperty(err, OUTCOME_MARK, { value, enumerable: false, configurable: true })
}

/** Marks `err` when the statement it answers was sent and the connection then broke. */
export function markIfLost(err: unknown): void {
  if (err instanceof Error && classifyError(err) === 'connection' && !neverRan(err)) markOutcomeUnknown(err)
}

const WATCHED = Symbol('pgfp.statementsWatched')

type Watched = PoolClient & { [WATCHED]?: true }

/**
 * Watches the statements of a client the pool hands out (installed once per client object, as
 * pg-pool reuses them). Nothing is ever run again on another connection: a checked-out client is
 * a session — settings, search path, role, temporary tables, prepared statements, a transaction —
 * and none of that can move. Instead, an error of a statement lost to a broken connection says
 * what the caller may do about it:
 * - outcome-unknown (`isOutcomeUnknownError`) when it was sent and may have written;
 * - safe to retry (`isSafeToRetryError`) when it provably changed nothing: it never left (or a
 *   proxy refused it), or it can only read (`canOnlyRead`: a plain read calling only built-ins).
 * A client the pool cut (it left the node) sends nothing more, and a statement that still answers
 * after the cut (a client without a socket of pg's cannot be stopped mid-flight) is reported as
 * outcome-unknown, never as a success. Arguments, return values (promise, undefined or the
 * submittable) and the error objects themselves stay as they are; cursors and streams deliver
 * their own errors and are left alone.
 */
export function watchStatements(client: PoolClient, canOnlyRead: (sql: string) => boolean): void {
  const target = client as Watched
  if (target[WATCHED]) return
  Object.defineProperty(target, WATCHED, { value: true, enumerable: false })
  const original = client.query
  const watched = function (this: Watched, ...args: any[]): any {
    const first = args[0]
    if (first !== null && typeof first === 'object' && typeof first.submit === 'function') return original.apply(this, args as never)
    if (wasCut(this)) return refuse(args)
    const verdict = (err: unknown, res: unknown): { err: unknown; res: unknown } => judge(this, first, err, res, canOnlyRead)
    const last = args[args.length - 1]
    if (typeof last === 'function') {
      args[args.length - 1] = function (this: unknown, err: unknown, res: unknown) {
        const v = verdict(err, res)
        last.call(this, v.err, v.res)
      }
      return original.apply(this, args as never)
    }
    if (first !== null && typeof first === 'object' && typeof first.callback === 'function') {
      const callback = first.callback
      args[0] = {
        ...first,
        callback: (err: unknown, res: unknown) => {
          const v = verdict(err, res)
          callback(v.err, v.res)
        },
      }
      return original.apply(this, args as never)
    }
    const result = original.apply(this, args as never) as unknown
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      // Only a failure (or a cut client's late success) allocates: the success path stays pg's promise plus one then().
      return (result as Promise<unknown>).then(
        (res) => {
          const v = verdict(undefined, res)
          return v.err ? Promise.reject(v.err) : res
        },
        (err: unknown) => Promise.reject(verdict(err, undefined).err),
      )
    }
    return result
  }
  Object.defineProperty(target, 'query', { value: watched, writable: true, configurable: true, enumerable: false })
}

/** What the caller of a watched statement gets: the error marked by its fate, or a cut client's late success turned into outcome-unknown. */
function judge(client: PoolClient, text: unknown, err: unknown, res: unknown, canOnlyRead: (sql: string) => boolean): { err: unknown; res: unknown } {
  if (!err) {
    if (!wasCut(client)) return { err: undefined, res }
    const late = new Error('the pool left this node while the statement ran: it may or may not have been applied there')
    markOutcomeUnknown(late)
    return { err: late, res: undefined }
  }
  if (err instanceof Error && classifyError(err) === 'connection') {
    const sql = sqlOf(text)
    if (neverRan(err) || (sql !== null && canOnlyRead(sql))) markSafeToRetry(err)
    else markOutcomeUnknown(err)
  }
  return { err, res }
}

/** A statement on a client the pool cut: refused before it leaves, as pg refuses one on a broken client. */
function refuse(args: any[]): unknown {
  const err = new Error('Client has encountered a connection error and is not queryable')
  markSafeToRetry(err)
  const last = args[args.length - 1]
  if (typeof last === 'function') {
    process.nextTick(() => last(err))
    return undefined
  }
  const first = args[0]
  if (first !== null && typeof first === 'object' && typeof first.callback === 'function') {
    process.nextTick(() => first.callback(err))
    return undefined
  }
  return Promise.reject(err)
}
