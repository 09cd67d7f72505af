import type { PoolClient } from 'pg'
import { classifyError, neverRan } from '../error-policy.js'

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

/**
 * Watches the statements of a client the pool handed out: an error of a statement that was sent
 * before the connection broke is marked outcome-unknown (`isOutcomeUnknownError(err)` answers
 * true, also through an ORM's wrapper); nothing else changes — arguments, results, return values
 * (promise, undefined or the submittable), the error object itself. Installed once per client
 * object (pg-pool reuses them). Cursors and streams deliver their own errors and are left alone.
 */
export function watchStatements(client: PoolClient): void {
  const target = client as PoolClient & { [WATCHED]?: true }
  if (target[WATCHED]) return
  Object.defineProperty(target, WATCHED, { value: true, enumerable: false })
  const original = client.query
  const watched = function (this: PoolClient, ...args: any[]): any {
    const first = args[0]
    if (first !== null && typeof first === 'object' && typeof first.submit === 'function') return original.apply(this, args as never)
    const last = args[args.length - 1]
    if (typeof last === 'function') {
      args[args.length - 1] = function (this: unknown, err: unknown, res: unknown) {
        if (err) markIfLost(err)
        return last.call(this, err, res)
      }
      return original.apply(this, args as never)
    }
    if (first !== null && typeof first === 'object' && typeof first.callback === 'function') {
      const callback = first.callback
      args[0] = { ...first, callback: (err: unknown, res: unknown) => (err && markIfLost(err), callback(err, res)) }
      return original.apply(this, args as never)
    }
    const result = original.apply(this, args as never) as unknown
    if (result !== null && typeof result === 'object' && typeof (result as Promise<unknown>).then === 'function') {
      return (result as Promise<unknown>).then(undefined, (err: unknown) => {
        markIfLost(err)
        throw err
      })
    }
    return result
  }
  Object.defineProperty(target, 'query', { value: watched, writable: true, configurable: true, enumerable: false })
}
