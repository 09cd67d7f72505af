import { AsyncLocalStorage } from 'node:async_hooks'
import { formatLsn, parseLsn } from '../endpoint/lsn.js'
import { ConfigError } from '../errors.js'

/**
 * Read-your-writes state of one logical caller (a request, a job), carried through
 * AsyncLocalStorage: the primary WAL position its reads must see.
 */
export interface ConsistencyContext {
  /** Reads must go to a node that has replayed at least this position (null: no requirement yet). */
  minLsn: bigint | null
  /** A write happened on a checked-out client: fetch the primary's position before the next read. */
  pendingWrite: boolean
}

const storage = new AsyncLocalStorage<ConsistencyContext>()

/** The caller's read-your-writes context, if it runs inside one. */
export function currentConsistency(): ConsistencyContext | undefined {
  return storage.getStore()
}

/** Runs `fn` with a fresh read-your-writes context, optionally seeded from a token. */
export function runWithConsistency<T>(fn: () => T, token?: string | null): T {
  const context: ConsistencyContext = { minLsn: token ? parseToken(token) : null, pendingWrite: false }
  return storage.run(context, fn)
}

/** Raises the context's requirement to `lsn` (never lowers it). */
export function requireLsn(context: ConsistencyContext, lsn: bigint): void {
  if (context.minLsn === null || lsn > context.minLsn) context.minLsn = lsn
}

const TOKEN_PREFIX = 'pgfp1:'

/** The token for a context: opaque text a web app may put in a cookie or header. */
export function tokenOf(context: ConsistencyContext | undefined): string | null {
  return context?.minLsn == null ? null : `${TOKEN_PREFIX}${formatLsn(context.minLsn)}`
}

/**
 * Parses a token made by {@link tokenOf}.
 * @throws ConfigError for text that is not such a token (it may come from a client: never trusted).
 */
export function parseToken(token: string): bigint {
  if (typeof token !== 'string' || !token.startsWith(TOKEN_PREFIX) || !/^[0-9A-F]{1,8}\/[0-9A-F]{1,8}$/i.test(token.slice(TOKEN_PREFIX.length))) {
    throw new ConfigError('consistencyToken', typeof token === 'string' ? token.slice(0, 40) : token, `expected a token like "${TOKEN_PREFIX}0/16B3748"`)
  }
  return parseLsn(token.slice(TOKEN_PREFIX.length))
}
