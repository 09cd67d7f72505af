import { classifyError, neverRan } from './error-policy.js'
/**
 * Error classes thrown by pg-failover-pool. Every class carries a stable `code` (a string that
 * never changes between releases, safe to switch on), and `instanceof` compares that code, so it
 * answers right even when two copies of the library are installed (an application and an ORM
 * adapter resolving different versions, or the ESM and CommonJS builds loaded side by side),
 * where a prototype check would say false.
 *
 * No message, property or `cause` built here ever contains a password: endpoint descriptions are
 * produced by {@link describeEndpointForError}-style helpers that only know names and host:port.
 */

/** Stable codes carried by every error this library creates. */
export type FailoverPoolErrorCode =
  | 'PGFP_CONFIG'
  | 'PGFP_NO_PRIMARY'
  | 'PGFP_OUTCOME_UNKNOWN'
  | 'PGFP_NO_REPLICA'
  | 'PGFP_ALL_ENDPOINTS_DOWN'
  | 'PGFP_SPLIT_BRAIN'
  | 'PGFP_SWITCHOVER_REFUSED'
  | 'PGFP_POOL_ENDED'
  | 'PGFP_STATE_STORE'
  | 'PGFP_ENDPOINT_SOURCE'

/** Base class of every error created by this library. */
export class FailoverPoolError extends Error {
  /** Stable machine-readable code; see {@link FailoverPoolErrorCode}. */
  readonly code: FailoverPoolErrorCode

  constructor(code: FailoverPoolErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options)
    this.code = code
    this.name = new.target.name
  }

  /**
   * `err instanceof NoPrimaryError` is true for an error of that class from any copy of this
   * library: it checks the stable code, not the prototype. `instanceof FailoverPoolError` is true
   * for every error this library creates.
   */
  static override [Symbol.hasInstance]<T>(this: abstract new (...args: any[]) => T, value: unknown): value is T {
    if (!isFailoverPoolError(value)) return false
    const code = CLASS_CODES.get(this)
    return code === undefined || value.code === code
  }
}

/** @internal True when `err` is any error created by this library (any copy of it): what `instanceof FailoverPoolError` asks. */
export function isFailoverPoolError(err: unknown): err is FailoverPoolError {
  return err instanceof Error && typeof (err as { code?: unknown }).code === 'string' && (err as unknown as { code: string }).code.startsWith('PGFP_')
}

/**
 * Invalid options given to `new FailoverPool()`. Names the offending field and value; a password
 * is never echoed (it is replaced by `****`).
 */
export class ConfigError extends FailoverPoolError {
  /** Dotted path of the offending option, e.g. `endpoints[1]` or `connectionTimeoutMillis`. */
  readonly field: string
  /** The offending value as text, with any password masked. */
  readonly value: string

  constructor(field: string, value: unknown, problem: string) {
    const shown = formatValue(value)
    super('PGFP_CONFIG', `Invalid option ${field} = ${shown}: ${problem}`)
    this.field = field
    this.value = shown
  }
}


/** What one endpoint answered during the last attempt to find a primary. */
export interface EndpointAnswer {
  /** Endpoint name (default `host:port`). */
  readonly endpoint: string
  /** The role it reported, or `unreachable` when the probe failed. */
  readonly role: 'primary' | 'standby' | 'read-only' | 'unreachable' | 'mismatched-system' | 'unknown'
  /** The probe's error message, when the probe failed. */
  readonly error?: string
}

/**
 * No verified primary became available within `failoverTimeoutMs`. `answers` lists what each
 * endpoint said on the most recent probe so an operator can tell "all down" from "all standbys".
 */
export class NoPrimaryError extends FailoverPoolError {
  /** One entry per endpoint, in configuration order. */
  readonly answers: readonly EndpointAnswer[]
  /** How long the request waited, in milliseconds. */
  readonly waitedMs: number

  constructor(answers: readonly EndpointAnswer[], waitedMs: number, options?: { cause?: unknown }) {
    const summary = answers
      .map((a) => `${a.endpoint}: ${a.role}${a.error ? ` (${a.error})` : ''}`)
      .join('; ')
    super('PGFP_NO_PRIMARY', `No verified primary within ${waitedMs} ms. ${summary || 'no endpoint answered'}`, options)
    this.answers = answers
    this.waitedMs = waitedMs
  }
}


/**
 * The connection broke after the statement was sent, so the server may or may not have run (and
 * committed) it; or the write succeeded on a node the pool left while it ran (no longer the
 * primary), where it may be lost. The pool never replays such a statement: the caller must
 * decide, e.g. by checking for the row or using an idempotency key. The driver's original error
 * (or what happened instead) is `cause`.
 */
export class OutcomeUnknownError extends FailoverPoolError {
  /** Name of the endpoint the statement was sent to. */
  readonly endpoint: string

  /** `what`: what happened to the statement, for the message (default: its connection failed after it was sent). */
  constructor(endpoint: string, cause: unknown, what = `The connection to ${endpoint} failed after the statement was sent`) {
    const reason = cause instanceof Error ? cause.message : String(cause)
    super('PGFP_OUTCOME_UNKNOWN', `${what}; it may or may not have been applied (${reason})`, { cause })
    this.endpoint = endpoint
  }
}

/**
 * Prisma's pg adapter rebuilds a driver error as a plain object (`meta.driverAdapterError.cause`,
 * or the DriverAdapterError's `cause`) and drops the original, mark included: a FATAL as
 * `{ kind: 'postgres', originalCode, originalMessage, severity }`, a reset socket as
 * `{ kind: 'ConnectionClosed' }`. Inside an interactive transaction such a failure arrives for a
 * statement that was sent (the session was open), so its outcome is unknown — unless the code says
 * it provably never ran (a proxy's refusal).
 */
function isLostInPrismaAdapter(o: Record<string, unknown>): boolean {
  if (o.kind === 'ConnectionClosed') return true
  if (o.kind !== 'postgres' || typeof o.originalCode !== 'string') return false
  const rebuilt = Object.assign(new Error(String(o.originalMessage ?? '')), { code: o.originalCode, severity: o.severity })
  return classifyError(rebuilt) === 'connection' && !neverRan(rebuilt)
}

/** Properties under which ORMs and libraries keep the error they wrap (TypeORM, Sequelize, Drizzle, MikroORM, Prisma, AggregateError). */
const WRAPPED = ['cause', 'driverError', 'original', 'parent', 'originalError', 'previous', 'error', 'inner', 'meta', 'driverAdapterError'] as const

/**
 * True when the statement behind `err` may or may not have been applied: an
 * {@link OutcomeUnknownError} (from `pool.query`), or a driver error marked by the pool because the
 * connection broke after the statement was sent (on a checked-out client, where ORMs run their
 * writes; in fail-fast mode). Looks through the wrappers ORMs put around driver errors (`cause`,
 * TypeORM's `driverError`, Sequelize's `parent`/`original`, `originalError`, nested errors), so
 * it can be asked of whatever the ORM threw. Never true for an error that provably ran nothing.
 */
export function isOutcomeUnknownError(err: unknown): err is Error {
  return findOutcomeUnknown(err, 0, new Set())
}

function findOutcomeUnknown(err: unknown, depth: number, seen: Set<unknown>): boolean {
  if (err === null || typeof err !== 'object' || depth > 6 || seen.has(err)) return false
  seen.add(err)
  // Prisma copies only the code and message of the error it wraps: the code is enough (isFailoverPoolError accepts it).
  if (isFailoverPoolError(err) && err.code === 'PGFP_OUTCOME_UNKNOWN') return true
  if ((err as Record<string, unknown>).pgFailoverPoolOutcome === 'unknown') return true
  if (isLostInPrismaAdapter(err as Record<string, unknown>)) return true
  for (const key of WRAPPED) {
    const inner = (err as Record<string, unknown>)[key]
    if (inner !== undefined && findOutcomeUnknown(inner, depth + 1, seen)) return true
  }
  const errors = (err as { errors?: unknown }).errors
  return Array.isArray(errors) && errors.some((e) => findOutcomeUnknown(e, depth + 1, seen))
}

/**
 * True when the statement behind `err` provably changed nothing, so the caller may run it again:
 * it never reached PostgreSQL (no primary within the deadline, split brain refused, every breaker
 * open, no replica, a proxy's refusal, a client already broken), or it was a read that calls only
 * built-ins lost with its connection on a checked-out client — which the pool never re-runs by
 * itself, because the session's state (settings, search path, role, temporary tables, prepared
 * statements, a transaction) cannot move to another connection: re-establish it, then retry. Looks
 * through the wrappers ORMs put around driver errors, as {@link isOutcomeUnknownError} does.
 */
export function isSafeToRetryError(err: unknown): err is Error {
  return findSafeToRetry(err, 0, new Set())
}

const NEVER_SENT: ReadonlySet<string> = new Set(['PGFP_NO_PRIMARY', 'PGFP_SPLIT_BRAIN', 'PGFP_ALL_ENDPOINTS_DOWN', 'PGFP_NO_REPLICA'])

function findSafeToRetry(err: unknown, depth: number, seen: Set<unknown>): boolean {
  if (err === null || typeof err !== 'object' || depth > 6 || seen.has(err)) return false
  seen.add(err)
  if ((err as Record<string, unknown>).pgFailoverPoolOutcome === 'unknown') return false
  if ((err as Record<string, unknown>).pgFailoverPoolOutcome === 'safe-to-retry') return true
  if (isFailoverPoolError(err) && NEVER_SENT.has(err.code)) return true
  if (neverRan(err)) return true
  for (const key of WRAPPED) {
    const inner = (err as Record<string, unknown>)[key]
    if (inner !== undefined && findSafeToRetry(inner, depth + 1, seen)) return true
  }
  const errors = (err as { errors?: unknown }).errors
  return Array.isArray(errors) && errors.some((e) => findSafeToRetry(e, depth + 1, seen))
}

/**
 * A read that must be served by a replica (`readFallback: 'replicas-only'`) found none usable:
 * all down, over the lag limits, or behind the caller's read-your-writes position.
 */
export class NoReplicaError extends FailoverPoolError {
  constructor(reason: string) {
    super('PGFP_NO_REPLICA', `No replica can serve this read: ${reason}`)
  }
}


/** One endpoint's state in an {@link AllEndpointsDownError}. */
export interface EndpointBreakerReport {
  readonly endpoint: string
  readonly breaker: 'closed' | 'open' | 'half-open'
  /** Last error message (password masked), or null. */
  readonly lastError: string | null
}

/**
 * Every endpoint's circuit breaker is open: no node can be tried before its wait ends, so the
 * request fails at once instead of waiting for `failoverTimeoutMs`.
 */
export class AllEndpointsDownError extends FailoverPoolError {
  /** Each endpoint's breaker state and last error, in configuration order. */
  readonly endpoints: readonly EndpointBreakerReport[]

  constructor(endpoints: readonly EndpointBreakerReport[]) {
    const summary = endpoints.map((e) => `${e.endpoint}: breaker ${e.breaker}${e.lastError ? ` (${e.lastError})` : ''}`).join('; ')
    super('PGFP_ALL_ENDPOINTS_DOWN', `Every endpoint is down (circuit breakers open). ${summary}`)
    this.endpoints = endpoints
  }
}


/**
 * More than one node is writable and the evidence (timeline, stored epoch) cannot tell which one
 * is the real primary: writes are refused rather than risk two primaries.
 */
export class SplitBrainError extends FailoverPoolError {
  /** The writable nodes in dispute. */
  readonly candidates: readonly string[]

  constructor(candidates: readonly string[], reason: string) {
    super('PGFP_SPLIT_BRAIN', `Writes refused: ${reason}`)
    this.candidates = candidates
  }
}


/**
 * `pool.switchTo(name)` refused: the target is not a verified primary (or its promotion hook
 * failed); or `pool.setEndpoints()` refused to remove the primary (`removing`): no endpoint of the
 * new list verified as the primary to switch to.
 */
export class SwitchoverRefusedError extends FailoverPoolError {
  /** The endpoint that was asked for (`switchTo`), or the primary a new list would remove (`removing`). */
  readonly endpoint: string

  constructor(endpoint: string, reason: string, options?: { cause?: unknown; removing?: boolean }) {
    super('PGFP_SWITCHOVER_REFUSED', `Cannot ${options?.removing ? `remove ${endpoint}, the primary` : `switch to ${endpoint}`}: ${reason}`, options)
    this.endpoint = endpoint
  }
}

/**
 * An endpoint provider's answer was not applied: the source could not answer, or what it answered
 * is not a usable endpoint list (empty, duplicates, a malformed entry). The pool keeps its last good
 * list and reports this (the `endpointsRejected` event, `status().endpointSource`).
 */
export class EndpointSourceError extends FailoverPoolError {
  /** The provider's description (e.g. `DNS SRV _pg._tcp.db`), never a password. */
  readonly source: string

  constructor(source: string, reason: string, options?: { cause?: unknown }) {
    super('PGFP_ENDPOINT_SOURCE', `Endpoint list from ${source} not applied: ${maskPassword(reason)}`, options)
    this.source = source
  }
}

function formatValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(maskPassword(value))
  if (typeof value === 'number' || typeof value === 'boolean' || value === null || value === undefined) return String(value)
  if (typeof value === 'function') return '[function]'
  try {
    return JSON.stringify(value, (key, v) => (key === 'password' ? '****' : typeof v === 'string' ? maskPassword(v) : v))
  } catch {
    return Object.prototype.toString.call(value)
  }
}

/** Replaces the password part of any `scheme://user:password@` URL in `text` with `****`. */
export function maskPassword(text: string): string {
  return text
    .replace(/(\/\/[^:/?#@\s]*:)[^@/?#\s]*@/g, '$1****@')
    // Malformed URLs too (`postgres:/user:pw@...`, `postgres:user:pw@...`): masking too much is safe, too little is not.
    .replace(/([a-z][a-z0-9+.-]*:\/?[^:/?#@\s*]*:)[^@/?#\s*]+@/gi, '$1****@')
    .replace(/((?:^|[\s"'=,])[^:/?#@\s"'*]*:)[^@/?#\s"'*]+@/g, '$1****@')
    .replace(/(password\s*=\s*)('[^']*'|\S+)/gi, '$1****')
}

/**
 * @internal `value` as an Error: itself when it is one, else wrapped (a rejected promise or a
 * throwing hook may hand over anything, and listeners and callers expect an Error).
 */
export function asError(value: unknown): Error {
  return value instanceof Error ? value : new Error(String(value))
}

/** The code each subclass's instances carry (FailoverPoolError itself matches any of them). */
const CLASS_CODES = new Map<abstract new (...args: any[]) => unknown, FailoverPoolErrorCode>([
  [ConfigError, 'PGFP_CONFIG'],
  [NoPrimaryError, 'PGFP_NO_PRIMARY'],
  [OutcomeUnknownError, 'PGFP_OUTCOME_UNKNOWN'],
  [NoReplicaError, 'PGFP_NO_REPLICA'],
  [AllEndpointsDownError, 'PGFP_ALL_ENDPOINTS_DOWN'],
  [SplitBrainError, 'PGFP_SPLIT_BRAIN'],
  [SwitchoverRefusedError, 'PGFP_SWITCHOVER_REFUSED'],
  [EndpointSourceError, 'PGFP_ENDPOINT_SOURCE'],
])
