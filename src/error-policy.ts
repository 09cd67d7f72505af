/**
 * The error policy: what an error from an endpoint means for the pool. docs/errors.md's "Error policy"
 * table says the same for users; keep the two in step.
 *
 * - `connection`: ECONNREFUSED, ECONNRESET, ETIMEDOUT, EPIPE and the other errnos below; an 08xxx
 *   sent as FATAL; 57P01-57P03; pg's "Connection terminated" and connect timeouts. An endpoint
 *   failure: evict its clients, re-discover the primary. PgBouncer's own FATAL 08P01 refusals
 *   (query_wait_timeout, server_login_retry, max_client_conn, ...) are this class too, and
 *   {@link neverRan} says the statement never reached PostgreSQL, so it is retried, never
 *   reported as outcome-unknown.
 * - `read-only`: 25006. The node was demoted: evict, re-discover, retry once (nothing was written).
 * - `configuration`: 28xxx (authentication), 3D000 (unknown database). Surfaced as is, never a failover.
 * - `statement`: anything else, including an 08xxx sent as a plain ERROR (the session survives),
 *   pg's client-side "Query read timeout" (a slow query, not a dead node) and pg-pool's "timeout
 *   exceeded when trying to connect" (pool exhaustion). The caller's problem, surfaced as is.
 */

/** What an error means for the endpoint it came from. */
export type ErrorClass = 'connection' | 'read-only' | 'configuration' | 'statement'

const CONNECTION_ERRNOS = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'ETIMEDOUT',
  'EPIPE',
  'EHOSTUNREACH',
  'EHOSTDOWN',
  'ENETUNREACH',
  'ENETDOWN',
  'ENOTFOUND',
  'EAI_AGAIN',
  'ECONNABORTED',
])

const CONNECTION_SQLSTATES = new Set(['57P01', '57P02', '57P03'])

/** Messages node-postgres and pg-pool use for broken or timed-out connections (no code attached). */
const CONNECTION_MESSAGES = [
  'Connection terminated',
  'connection timeout',
  'Client has encountered a connection error',
  'terminating connection',
]

/** Errors a client's connect() failed with (see {@link markConnectFailure}). */
const CONNECT_FAILURES = new WeakSet<Error>()

/**
 * Records that `err` is what a client's connect() failed with: the session never opened, so the
 * node was unreachable for it whatever the error says — a custom or native client's error may
 * carry no code or message node-postgres would. Returns `err`.
 */
export function markConnectFailure(err: Error): Error {
  CONNECT_FAILURES.add(err)
  return err
}

/** Classifies an error raised by node-postgres for one endpoint; see the table above. */
export function classifyError(err: unknown): ErrorClass {
  if (!(err instanceof Error)) return 'statement'
  const code = (err as { code?: unknown }).code
  if (typeof code === 'string') {
    if (code === '25006') return 'read-only'
    if (CONNECTION_ERRNOS.has(code) || CONNECTION_SQLSTATES.has(code)) return 'connection'
    // An 08xxx sent as a plain ERROR (e.g. 08P01 for a bind with the wrong number of parameters)
    // leaves the session usable: the statement was wrong, the connection is fine.
    if (code.startsWith('08')) return (err as { severity?: unknown }).severity === 'ERROR' ? 'statement' : 'connection'
    if (code.startsWith('28') || code === '3D000') return 'configuration'
    if (/^[0-9A-Z]{5}$/.test(code)) return 'statement'
  }
  const message = err.message
  if (CONNECTION_MESSAGES.some((m) => message.includes(m))) return 'connection'
  if (CONNECT_FAILURES.has(err)) return 'connection'
  // AggregateError from a dual-stack connect, or an error wrapping the socket error.
  const cause = (err as { cause?: unknown }).cause
  if (cause !== undefined && cause !== err) return classifyError(cause)
  const errors = (err as { errors?: unknown }).errors
  if (Array.isArray(errors) && errors.some((e) => classifyError(e) === 'connection')) return 'connection'
  return 'statement'
}

/**
 * True when node-postgres refused the statement before writing a byte of it to the socket, so it
 * provably did not run and may be retried elsewhere.
 */
export function failedBeforeSending(err: unknown): boolean {
  return err instanceof Error && /is not queryable/.test(err.message)
}

/**
 * PgBouncer's own refusals (FATAL 08P01 with PgBouncer's text): the statement waited in the proxy
 * for a server connection and never reached PostgreSQL. `server login has been failing`
 * (`server_login_retry`: the server is down), `query_wait_timeout` (no server connection became
 * free in time), `pgbouncer cannot connect to server`, and at connect time `no more connections
 * allowed` (`max_client_conn`) and `client_login_timeout`.
 */
const PROXY_REFUSALS = /^(?:query_wait_timeout|server login has been failing|pgbouncer cannot connect to server|no more connections allowed|client_login_timeout)/

/** True for a connection pooler's refusal of a statement it never forwarded (see {@link PROXY_REFUSALS}). */
export function refusedByProxy(err: unknown): boolean {
  return err instanceof Error && (err as { code?: unknown }).code === '08P01' && PROXY_REFUSALS.test(err.message)
}

/** True when the statement provably did not run: refused before sending, or refused by a proxy. */
export function neverRan(err: unknown): boolean {
  return failedBeforeSending(err) || refusedByProxy(err)
}

/** True for a timeout: a node that stopped answering holds whatever runs there until it is cut. */
export function isTimeout(err: unknown): boolean {
  return err instanceof Error && ((err as { code?: unknown }).code === 'ETIMEDOUT' || /timeout|timed out/i.test(err.message))
}
