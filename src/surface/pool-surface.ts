import pg from 'pg'
import type { PoolClient, PoolOptions, QueryArrayConfig, QueryArrayResult, QueryConfig, QueryConfigValues, QueryResult, QueryResultRow, Submittable } from 'pg'
import type { Clock } from '../clock.js'
import { type ConsistencyContext, currentConsistency, requireLsn } from './consistency.js'
import { type Endpoint, parseLsn } from '../endpoint/endpoint.js'
import { classifyError, failedBeforeSending } from '../error-policy.js'
import { OutcomeUnknownError } from '../errors.js'
import { type Lane, LaneRetiredError } from '../endpoint/lane.js'
import { requestLog } from '../log.js'
import { isCertainlyReadOnly } from './statement-kind.js'

/**
 * pg's query config plus per-query routing: `route` forces the primary or a replica (overriding
 * `routeReads`), `maxStalenessMs` is this read's replica-lag budget in milliseconds.
 */
export type RoutedQueryConfig<I = any[]> = QueryConfig<I> & {
  route?: 'primary' | 'replica'
  maxStalenessMs?: number
}

/** What a surface sends its statements to: `write` (the primary), `read` (replicas), or `auto` (by statement). */
export type Intent = 'write' | 'read' | 'auto'

/** Where one attempt of a request runs. */
export interface Target {
  readonly endpoint: Endpoint
  readonly lane: Lane
  /** Topology generation when the target was chosen; stale failure reports are ignored. */
  readonly generation: number
  /** Whether the node is the verified primary or a replica. */
  readonly role: 'primary' | 'replica'
  /** True when the node is known to satisfy the read-your-writes requirement. */
  readonly caughtUp: boolean
}

/** Per-read requirements passed to the host. */
export interface ReadRequest {
  /** Replicas that already failed this read. */
  readonly exclude: ReadonlySet<string>
  /** Per-query staleness budget in ms, overriding `maxReplicaLagMs`. */
  readonly maxStalenessMs: number | undefined
  /** Read-your-writes: the replica must have replayed this position. */
  readonly minLsn: bigint | null
}

/** What a surface needs from the FailoverPool that owns the topology. */
export interface RoutingHost {
  readonly clock: Clock
  readonly readYourWritesTimeoutMs: number
  readonly ending: boolean
  /** The verified primary's write target when it is ready now (the synchronous hot path), else null. */
  readyWriteTarget(): Target | null
  /** Calls back with where to run, waiting (bounded) for a primary when needed. */
  target(kind: 'write' | 'read', since: number, read: ReadRequest | null, callback: (err: Error | undefined, target?: Target) => void): void
  /** A request saw `err` on `target`; the host decides what it means for the topology. */
  report(target: Target, err: unknown): void
  /** The lanes of every endpoint for a kind of traffic. */
  lanes(kind: 'write' | 'read'): readonly Lane[]
  /** pg.Pool#options of the current primary (or the first endpoint). */
  primaryOptions(): PoolOptions
  /** Requests waiting for a primary to be verified (part of a write surface's waitingCount). */
  waitingForPrimary(): number
  /** Takes a token from the retry budget; false when retrying now would stampede a node. */
  spendRetry(): boolean
}

type QueryCallback = (err: Error | undefined, result?: QueryResult) => void
type ConnectCallback = (err: Error | undefined, client?: PoolClient, release?: (err?: Error | boolean) => void) => void

/** Attempts per request before giving up even within the deadline; guards against a retry loop. */
const MAX_ATTEMPTS = 10
const CAPTURE_LSN_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn'
const REPLAYED_LSN_SQL = 'SELECT pg_last_wal_replay_lsn()::text AS lsn'
const BASE_OPTIONS = Symbol('baseOptions')

interface Attempt {
  readonly since: number
  /**
   * The caller's read-your-writes context, captured once at the call: pg invokes our callbacks in
   * the socket's async context, where AsyncLocalStorage would answer for whoever opened the socket.
   */
  readonly context: ConsistencyContext | undefined
  attempt: number
  readOnlyRetried: boolean
  /** Set once a replica answered 25006 to an auto-routed statement: it writes after all. */
  forceWrite: boolean
  exclude: Set<string> | null
}

/**
 * The pg.Pool surface shared by `FailoverPool`, `pool.reader` and `pool.writer`: query, connect,
 * end and the counts behave as pg.Pool's, while each statement runs on the node the host picks for
 * this surface's intent. Retries follow one rule: only what provably did not run (or a read).
 */
export abstract class PoolSurface extends pg.Pool {
  /** @internal */
  protected abstract readonly host: RoutingHost
  /** @internal */
  protected abstract readonly intent: Intent

  /**
   * pg.Pool's `options`, reflecting the current primary's connection settings, so code that opens
   * side connections from them (query cancellation) reaches the primary.
   */
  // @ts-expect-error pg's typings declare `options` as a field; here it is an accessor that follows the primary.
  override get options(): PoolOptions {
    // pg-pool's constructor reads this before subclass fields exist.
    return this.host ? this.host.primaryOptions() : (this as unknown as Record<symbol, PoolOptions>)[BASE_OPTIONS]!
  }
  override set options(value: PoolOptions) {
    ;(this as unknown as Record<symbol, PoolOptions>)[BASE_OPTIONS] = value
  }

  /** Clients open across every endpoint's pool for this surface (as pg.Pool#totalCount). */
  // @ts-expect-error pg's typings declare a field; pg-pool itself defines a getter, as here.
  override get totalCount(): number {
    return this.sumLanes((l) => l.totalCount)
  }
  /** Idle clients across every endpoint (as pg.Pool#idleCount). */
  // @ts-expect-error as above
  override get idleCount(): number {
    return this.sumLanes((l) => l.idleCount)
  }
  /** Requests waiting for a client (as pg.Pool#waitingCount). */
  // @ts-expect-error as above
  override get waitingCount(): number {
    const waitingForPrimary = this.host && this.intent !== 'read' ? this.host.waitingForPrimary() : 0
    return this.sumLanes((l) => l.waitingCount) + waitingForPrimary
  }
  /** Clients past `maxLifetimeSeconds` that close on release (as pg.Pool#expiredCount). */
  // @ts-expect-error as above
  override get expiredCount(): number {
    return this.sumLanes((l) => l.expiredCount)
  }

  /**
   * Checks out a real `pg.Client`, in promise or callback form, exactly as pg.Pool#connect. The
   * client stays on its node until released, whatever happens meanwhile.
   */
  override connect(): Promise<PoolClient>
  override connect(callback: (err: Error | undefined, client: PoolClient | undefined, done: (release?: any) => void) => void): void
  override connect(callback?: any): Promise<PoolClient> | void {
    const { result, cb } = promisify<PoolClient>(callback)
    if (this.isClosed()) {
      cb(new Error('Cannot use a pool after calling end on the pool'))
      return result
    }
    const kind = this.intent === 'read' ? 'read' : 'write'
    const state = newAttempt(this.host.clock.now())
    // A checked-out primary client may write anything: the next read must see it.
    if (state.context && kind === 'write') state.context.pendingWrite = true
    this.checkout(kind, state, cb as ConnectCallback)
    return result
  }

  /**
   * Runs a statement exactly as pg.Pool#query (text, config object or submittable; promise or
   * callback) on the node this surface's intent selects.
   */
  override query<T extends Submittable>(queryStream: T): T
  override query<R extends any[] = any[], I = any[]>(queryConfig: RoutedQueryConfig<I> & QueryArrayConfig<I>, values?: QueryConfigValues<I>): Promise<QueryArrayResult<R>>
  override query<R extends QueryResultRow = any, I = any[]>(queryConfig: RoutedQueryConfig<I>): Promise<QueryResult<R>>
  override query<R extends QueryResultRow = any, I = any[]>(queryTextOrConfig: string | RoutedQueryConfig<I>, values?: QueryConfigValues<I>): Promise<QueryResult<R>>
  override query<R extends any[] = any[], I = any[]>(queryConfig: RoutedQueryConfig<I> & QueryArrayConfig<I>, callback: (err: Error, result: QueryArrayResult<R>) => void): void
  override query<R extends QueryResultRow = any, I = any[]>(queryTextOrConfig: string | RoutedQueryConfig<I>, callback: (err: Error, result: QueryResult<R>) => void): void
  override query<R extends QueryResultRow = any, I = any[]>(queryText: string, values: QueryConfigValues<I>, callback: (err: Error, result: QueryResult<R>) => void): void
  override query(text: any, values?: any, callback?: any): any {
    if (typeof text === 'function') {
      const { result, cb } = promisify<QueryResult>(text)
      setImmediate(() => cb(new Error('Passing a function as the first parameter to pool.query is not supported')))
      return result
    }
    if (typeof values === 'function') {
      callback = values
      values = undefined
    }
    const { result, cb } = promisify<QueryResult>(callback)
    if (this.isClosed()) {
      cb(new Error('Cannot use a pool after calling end on the pool'))
      return result
    }
    this.dispatch(text, values, cb as QueryCallback, newAttempt(this.host.clock.now()))
    return result
  }

  /**
   * Ends the pool in promise or callback form, exactly as pg.Pool#end: a second call fails with
   * pg.Pool's message, `ending` is set at once and `ended` when everything is closed.
   */
  override end(): Promise<void>
  override end(callback: () => void): void
  override end(callback?: (err?: Error) => void): Promise<void> | void {
    const { result, cb } = promisify<void>(callback as ((err: Error | undefined) => void) | undefined)
    if (this.ending) {
      cb(new Error('Called end on pool more than once'))
      return result
    }
    ;(this as { ending: boolean }).ending = true
    this.shutdown().then(
      () => {
        ;(this as { ended: boolean }).ended = true
        cb(undefined)
      },
      (err: Error) => {
        ;(this as { ended: boolean }).ended = true
        cb(err)
      },
    )
    return result
  }

  /** What ending means for this surface; called once, after `ending` is set. */
  protected abstract shutdown(): Promise<void>

  /** True once this surface (or its FailoverPool) is ending. */
  protected isClosed(): boolean {
    return this.ending || this.host.ending
  }

  // ---------------------------------------------------------------- statements

  private kindOf(text: any, state: Attempt): 'write' | 'read' {
    if (state.forceWrite || this.intent === 'write') return 'write'
    const route = typeof text === 'object' && text !== null ? (text as { route?: unknown }).route : undefined
    if (route === 'primary') return 'write'
    if (route === 'replica' || this.intent === 'read') return 'read'
    const sql = typeof text === 'string' ? text : typeof text?.text === 'string' && typeof text.submit !== 'function' ? text.text : null
    return sql !== null && isCertainlyReadOnly(sql) ? 'read' : 'write'
  }

  private dispatch(text: any, values: any, cb: QueryCallback, state: Attempt): void {
    const kind = this.kindOf(text, state)
    if (kind === 'read' && state.context) {
      return this.resolveMinLsn(state.context, state.since, (minLsn) => this.route(kind, minLsn, text, values, cb, state))
    }
    this.route(kind, null, text, values, cb, state)
  }

  private route(kind: 'write' | 'read', minLsn: bigint | null, text: any, values: any, cb: QueryCallback, state: Attempt): void {
    const ready = kind === 'write' ? this.host.readyWriteTarget() : null
    if (ready !== null) return this.runOn(ready, kind, minLsn, text, values, cb, state)
    const read = kind === 'read' ? readRequest(text, state, minLsn) : null
    this.host.target(kind, state.since, read, (err, target) => {
      if (err || !target) return cb(err)
      this.runOn(target, kind, minLsn, text, values, cb, state)
    })
  }

  private runOn(target: Target, kind: 'write' | 'read', minLsn: bigint | null, text: any, values: any, cb: QueryCallback, state: Attempt): void {
    target.lane.acquire((acquireErr, client, release) => {
      if (acquireErr || !client || !release) {
        if (this.retryAfterAcquireFailure(target, acquireErr, state)) return this.dispatch(text, values, cb, state)
        return cb(acquireErr)
      }
      if (minLsn !== null && target.role === 'replica' && !target.caughtUp) {
        requestLog('read needing %s on %s: checking its replay position', minLsn, target.endpoint.name)
        return this.ensureReplayed(target, client, minLsn, (ok) => {
          if (ok) return this.execute(target, client, release, kind, state.context, text, values, cb, state)
          release()
          exclude(state, target)
          this.dispatch(text, values, cb, state)
        })
      }
      this.execute(target, client, release, kind, state.context, text, values, cb, state)
    })
  }

  private execute(
    target: Target,
    client: PoolClient,
    release: (err?: Error | boolean) => void,
    kind: 'write' | 'read',
    context: ConsistencyContext | undefined,
    text: any,
    values: any,
    cb: QueryCallback,
    state: Attempt,
  ): void {
    let finished = false
    const counters = target.endpoint.counters
    if (kind === 'write') counters.writes++
    else counters.reads++
    const fail = (err: Error): void => {
      counters.errors++
      release(err)
      this.afterError(target, kind, err, text, values, cb, state)
    }
    const onClientError = (err: Error): void => {
      if (finished) return
      finished = true
      fail(err)
    }
    client.once('error', onClientError)
    try {
      client.query(text, values, (err: Error | undefined, res: QueryResult) => {
        client.removeListener('error', onClientError)
        if (finished) return
        finished = true
        if (err) return fail(err)
        if (context && kind === 'write') return this.captureLsn(client, release, context, () => cb(undefined, res))
        // pg-pool releases with the callback's own error argument (null on success); listeners see the same.
        release(err)
        cb(undefined, res)
      })
    } catch (thrown) {
      client.removeListener('error', onClientError)
      finished = true
      release(thrown as Error)
      cb(thrown as Error)
    }
  }

  private afterError(target: Target, kind: 'write' | 'read', err: Error, text: any, values: any, cb: QueryCallback, state: Attempt): void {
    const errorClass = classifyError(err)
    const replayable = typeof text?.submit !== 'function' && state.attempt < MAX_ATTEMPTS
    if (errorClass === 'read-only') {
      if (target.role === 'primary') {
        this.host.report(target, err)
        if (replayable && !state.readOnlyRetried) {
          requestLog('retrying on the new primary after 25006 from %s', target.endpoint.name)
          state.readOnlyRetried = true
          return this.retry(text, values, cb, state, err)
        }
      } else if (replayable && this.intent === 'auto') {
        // Auto-routed as a read, but it writes (a user function, say): nothing was written; go to the primary.
        state.forceWrite = true
        return this.retry(text, values, cb, state, err)
      }
      return cb(err)
    }
    if (errorClass === 'connection') {
      this.host.report(target, err)
      // A read may run again elsewhere; anything else only if it provably never left.
      if (replayable && (kind === 'read' || failedBeforeSending(err))) {
        if (kind === 'read') exclude(state, target)
        return this.retry(text, values, cb, state, err)
      }
      return cb(new OutcomeUnknownError(target.endpoint.name, err))
    }
    cb(err)
  }

  private retry(text: any, values: any, cb: QueryCallback, state: Attempt, err: Error): void {
    if (!this.host.spendRetry()) {
      requestLog('retry budget spent: surfacing %s', err.message)
      return cb(err)
    }
    state.attempt++
    this.dispatch(text, values, cb, state)
  }

  private checkout(kind: 'write' | 'read', state: Attempt, cb: ConnectCallback): void {
    const { context } = state
    const run = (minLsn: bigint | null): void => {
      const read = kind === 'read' ? { exclude: state.exclude ?? new Set<string>(), maxStalenessMs: undefined, minLsn } : null
      this.host.target(kind, state.since, read, (err, target) => {
        if (err || !target) return cb(err)
        target.lane.acquire((acquireErr, client, release) => {
          if (acquireErr || !client || !release) {
            if (this.retryAfterAcquireFailure(target, acquireErr, state)) return this.checkout(kind, state, cb)
            return cb(acquireErr)
          }
          if (minLsn !== null && target.role === 'replica' && !target.caughtUp) {
            return this.ensureReplayed(target, client, minLsn, (ok) => {
              if (ok) return this.handOut(target, client, release, cb)
              release()
              exclude(state, target)
              this.checkout(kind, state, cb)
            })
          }
          this.handOut(target, client, release, cb)
        })
      })
    }
    if (kind === 'read' && context) this.resolveMinLsn(context, state.since, run)
    else run(null)
  }

  /**
   * Hands a checked-out client to the caller. pg-pool only listens for 'error' on idle clients, so
   * a server ending the session of a client an ORM holds between statements (idle in transaction,
   * during a failover) would emit an unhandled 'error' and crash the process. We listen while it is
   * checked out — the error still reaches the caller's next query, and any listener of its own —
   * report it as an endpoint failure, and stop listening when it is released.
   */
  private handOut(target: Target, client: PoolClient, release: (err?: Error | boolean) => void, cb: ConnectCallback): void {
    const onError = (err: Error): void => this.host.report(target, err)
    client.on('error', onError)
    const releaseOnce = (err?: Error | boolean): void => {
      client.removeListener('error', onError)
      release(err)
    }
    client.release = releaseOnce
    cb(undefined, client, releaseOnce)
  }

  /** A failed checkout never reached the server, so it may go again; true when it should. */
  private retryAfterAcquireFailure(target: Target, err: Error | undefined, state: Attempt): boolean {
    if (state.attempt >= MAX_ATTEMPTS || this.isClosed()) return false
    state.attempt++
    // A retired lane means the request was never sent: it simply goes to the new target.
    if (err instanceof LaneRetiredError) return true
    const errorClass = classifyError(err)
    if (errorClass === 'connection' || errorClass === 'read-only') {
      this.host.report(target, err)
      if (target.role === 'replica') exclude(state, target)
      return this.host.spendRetry()
    }
    return false
  }

  // ---------------------------------------------------------------- read-your-writes

  /** Records the primary's WAL position after a write, so this caller's later reads see it. */
  private captureLsn(client: PoolClient, release: (err?: Error | boolean) => void, context: ConsistencyContext, done: () => void): void {
    client.query(CAPTURE_LSN_SQL, (err: Error | undefined, res: QueryResult<{ lsn: string }>) => {
      release(err)
      const lsn = res?.rows[0]?.lsn
      if (err || !lsn) context.pendingWrite = true
      else requireLsn(context, parseLsn(lsn))
      done()
    })
  }

  /** Before a read: if a checked-out primary client may have written, learn the primary's position now. */
  private resolveMinLsn(context: ConsistencyContext, since: number, run: (minLsn: bigint | null) => void): void {
    if (!context.pendingWrite) return run(context.minLsn)
    this.host.target('write', since, null, (err, target) => {
      if (err || !target) return run(null) // the read proceeds and surfaces the same outage itself
      target.lane.acquire((acquireErr, client, release) => {
        if (acquireErr || !client || !release) return run(context.minLsn)
        this.captureLsn(client, release, context, () => {
          if (context.minLsn !== null) context.pendingWrite = false
          run(context.minLsn)
        })
      })
    })
  }

  /**
   * Makes sure a replica has replayed `minLsn` before a read runs there: one round trip when it
   * has; otherwise a server-side wait bounded by `readYourWritesTimeoutMs`, then one more check.
   */
  private ensureReplayed(target: Target, client: PoolClient, minLsn: bigint, done: (ok: boolean) => void): void {
    const check = (then: (ok: boolean) => void): void => {
      client.query(REPLAYED_LSN_SQL, (err: Error | undefined, res: QueryResult<{ lsn: string | null }>) => {
        const lsn = res?.rows[0]?.lsn
        if (err || !lsn) return then(false)
        const replayed = parseLsn(lsn)
        requestLog('%s has replayed %s, needs %s', target.endpoint.name, lsn, minLsn)
        target.endpoint.noteReplayed(replayed)
        then(replayed >= minLsn)
      })
    }
    check((ok) => {
      requestLog('read-your-writes on %s: %s', target.endpoint.name, ok ? 'caught up' : 'behind, waiting')
      if (ok) return done(true)
      const waitMs = this.host.readYourWritesTimeoutMs
      if (waitMs <= 0) return done(false)
      client.query(replayWaitSql(minLsn, waitMs), (err: Error | undefined) => {
        if (err) return done(false)
        check(done)
      })
    })
  }

  private sumLanes(count: (lane: Lane) => number): number {
    // pg-pool's constructor may read counts before subclass fields exist.
    if (!this.host) return 0
    let total = 0
    for (const lane of this.host.lanes(this.intent === 'read' ? 'read' : 'write')) total += count(lane)
    return total
  }
}

function newAttempt(since: number): Attempt {
  return { since, context: currentConsistency(), attempt: 1, readOnlyRetried: false, forceWrite: false, exclude: null }
}

function exclude(state: Attempt, target: Target): void {
  ;(state.exclude ??= new Set()).add(target.endpoint.name)
}

function readRequest(text: any, state: Attempt, minLsn: bigint | null): ReadRequest {
  const budget = typeof text === 'object' && text !== null ? (text as { maxStalenessMs?: unknown }).maxStalenessMs : undefined
  return { exclude: state.exclude ?? EMPTY, maxStalenessMs: typeof budget === 'number' ? budget : undefined, minLsn }
}

const EMPTY: ReadonlySet<string> = new Set()

/** A server-side wait (no client polling) until this standby has replayed `lsn`, at most `waitMs`. */
function replayWaitSql(lsn: bigint, waitMs: number): string {
  const target = `${(lsn >> 32n).toString(16)}/${(lsn & 0xffffffffn).toString(16)}`
  return `DO $pgfp$ DECLARE deadline timestamptz := clock_timestamp() + interval '${(waitMs / 1000).toFixed(3)} seconds';
BEGIN
  WHILE pg_last_wal_replay_lsn() < '${target}'::pg_lsn AND clock_timestamp() < deadline LOOP PERFORM pg_sleep(0.001); END LOOP;
END $pgfp$`
}

/** pg-pool's promise-or-callback convention: with a callback, no promise; without, a promise. */
export function promisify<T>(callback: ((err: Error | undefined, value?: T) => void) | undefined): {
  result: Promise<T> | undefined
  cb: (err: Error | undefined, value?: T, ...rest: unknown[]) => void
} {
  if (callback) return { result: undefined, cb: callback as never }
  let resolve!: (value: T) => void
  let reject!: (err: Error) => void
  const result = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { result: result.catch(rethrowHere), cb: (err, value) => (err ? reject(err) : resolve(value as T)) }
}

/** As pg-pool does: give a rejected error a stack that leads back to the caller, not to the socket. */
function rethrowHere(err: Error): never {
  Error.captureStackTrace(err)
  throw err
}
