import type { PoolClient, QueryResult } from 'pg'
import { holdClient, wasCut } from '../endpoint/client-cut.js'
import { type AcquireCallback, LaneRetiredError, statementEnded, statementSent } from '../endpoint/lane.js'
import { type ErrorClass, classifyError, neverRan } from '../error-policy.js'
import { NoPrimaryError, OutcomeUnknownError } from '../errors.js'
import { requestLog } from '../log.js'
import { type ConsistencyContext, currentConsistency } from './consistency.js'
import { EarlyCheckout } from './early-checkout.js'
import { captureLsn, ensureReplayed, resolveMinLsn } from './read-your-writes.js'
import type { ReadRequest, RoutingHost, Target } from './routing-host.js'
import { markIfLost, watchStatements } from './outcome.js'
import { certainlyReadOnly, mayHaveWritten, readRequestOf } from './request-statement.js'
import { isSafeToRunAgain } from './statement-kind.js'

/** What a surface sends its statements to: `write` (the primary), `read` (replicas), or `auto` (by statement). */
export type Intent = 'write' | 'read' | 'auto'

/** The surface a request belongs to. */
export interface RequestOwner {
  readonly host: RoutingHost
  readonly intent: Intent
}

type Release = (err?: Error | boolean) => void
type QueryCallback = (err: Error | undefined, result?: QueryResult) => void
type CheckoutCallback = (err: Error | undefined, client?: PoolClient, release?: Release) => void

const NO_RELEASE: Release = () => undefined

/** Attempts per request before giving up even within the deadline; guards against a retry loop. */
const MAX_ATTEMPTS = 10

/**
 * One request — a statement (`pool.query`) or a checkout (`pool.connect`) — from the call to its
 * answer: route (the hot path takes the verified primary synchronously), acquire a client on that
 * endpoint's lane, run it (or hand the client out), report a failure exactly once with the time
 * its attempt started, and retry by one rule: only what provably did not run, or a read.
 */
export class Request {
  readonly #owner: RequestOwner
  readonly #text: any
  readonly #values: any
  readonly #query: QueryCallback | null
  readonly #checkout: CheckoutCallback | null
  /** Clock ms of the call: the failover deadline counts from here. */
  readonly #since: number
  /**
   * The caller's read-your-writes context, captured once at the call: pg invokes our callbacks in
   * the socket's async context, where AsyncLocalStorage would answer for whoever opened the socket.
   */
  readonly #context: ConsistencyContext | undefined
  #attempt = 1
  #readOnlyRetried = false
  /** The primary target the last attempt failed on: the next one waits until the pool has judged it. */
  #retryOf: Target | null = null
  /** Connections given back unused because their target stopped being current before sending. */
  #staleTargets = 0
  /** Set once a replica answered 25006 to an auto-routed statement: it writes after all. */
  #forceWrite = false
  #exclude: Set<string> | null = null

  private constructor(owner: RequestOwner, text: any, values: any, query: QueryCallback | null, checkout: CheckoutCallback | null) {
    this.#owner = owner
    this.#text = text
    this.#values = values
    this.#query = query
    this.#checkout = checkout
    this.#since = owner.host.clock.now()
    this.#context = currentConsistency()
    owner.host.requestStarted()
  }

  /** Runs a statement as pg.Pool#query would, on the node the owner's intent selects. */
  static query(owner: RequestOwner, text: any, values: any, callback: QueryCallback): void {
    new Request(owner, text, values, callback, null).#dispatch()
  }

  /** Checks a client out as pg.Pool#connect would; it stays on its node until released. */
  static checkout(owner: RequestOwner, callback: CheckoutCallback): void {
    const request = new Request(owner, undefined, undefined, null, callback)
    // A checked-out primary client may write anything: the next read must see it.
    if (request.#context && owner.intent !== 'read') request.#context.pendingWrite = true
    request.#dispatch()
  }

  /** The one way a request ends: the caller is answered and the request stops counting as in flight. */
  #done(err: Error | undefined, result?: QueryResult): void {
    this.#owner.host.requestFinished()
    if (this.#query) this.#query(err, result)
    // pg-pool hands a release function even with an error (calling it does nothing).
    else this.#checkout!(err, undefined, NO_RELEASE)
  }

  #kind(): 'write' | 'read' {
    const intent = this.#owner.intent
    if (this.#checkout) return intent === 'read' ? 'read' : 'write'
    if (this.#forceWrite || intent === 'write') return 'write'
    const text = this.#text
    const route = typeof text === 'object' && text !== null ? (text as { route?: unknown }).route : undefined
    if (route === 'primary') return 'write'
    if (route === 'replica' || intent === 'read') return 'read'
    return certainlyReadOnly(this.#text) ? 'read' : 'write'
  }

  #dispatch(): void {
    const kind = this.#kind()
    if (kind === 'read' && this.#context) {
      return resolveMinLsn(this.#owner.host, this.#context, this.#since, (minLsn) => this.#route(kind, minLsn))
    }
    this.#route(kind, null)
  }

  #route(kind: 'write' | 'read', minLsn: bigint | null): void {
    const host = this.#owner.host
    const retryOf = this.#retryOf
    this.#retryOf = null
    const ready = kind === 'write' && retryOf === null ? host.readyWriteTarget() : null
    // The hot path: a first attempt that found its target at once.
    if (ready !== null) return this.#acquire(ready, kind, minLsn)
    const earlyLane = kind === 'write' && retryOf === null ? host.earlyWriteLane() : null
    // Whichever answers first: the target, or (fail-fast) the early checkout's failed connect.
    let answered = false
    const failedEarly = (err: Error): void => {
      if (answered) return
      answered = true
      this.#done(err)
    }
    const early = earlyLane !== null ? new EarlyCheckout(earlyLane, host.failFast ? failedEarly : null) : null
    host.target(
      kind,
      this.#since,
      kind === 'read' ? readRequestOf(this.#text, this.#exclude, minLsn) : null,
      (err, target) => {
        if (answered) return
        answered = true
        if (err || !target) {
          early?.discard()
          return this.#done(err)
        }
        if (early !== null && early.lane === target.lane) return this.#acquire(target, kind, minLsn, early)
        early?.discard()
        this.#acquire(target, kind, minLsn)
      },
      retryOf,
    )
  }

  /**
   * One attempt on `target`: its failures are reported with the endpoint's era at this moment.
   * `early`: a checkout of the target's lane started before the target was known.
   */
  #acquire(target: Target, kind: 'write' | 'read', minLsn: bigint | null, early: EarlyCheckout | null = null): void {
    const host = this.#owner.host
    const era = host.eraOf(target.endpoint)
    const onClient: AcquireCallback = (err, client, release) => {
      if (err || !client || !release) return this.#acquireFailed(target, err, era)
      // Ours until handed out or sent on: its socket dying meanwhile must not crash the process.
      const unhold = holdClient(client)
      if (minLsn !== null && target.role === 'replica' && !target.caughtUp) {
        requestLog('read needing %s on %s: checking its replay position', minLsn, target.endpoint.name)
        return ensureReplayed(target, client, minLsn, host.readYourWritesTimeoutMs, (ok) => {
          if (ok) return this.#run(target, client, release, unhold, kind, era)
          unhold()
          release()
          this.#excludeTarget(target)
          this.#dispatch()
        })
      }
      this.#run(target, client, release, unhold, kind, era)
    }
    if (early !== null) early.use(onClient)
    else target.lane.acquire(onClient)
  }

  /**
   * The send-time check: the target must still be where this kind of statement goes — the primary
   * of the current generation, a replica still serving reads. A connection handed out for an older
   * generation is given back (cut, if its node was left) and the request routed again: it never
   * reached the server, so nothing can run on a node the pool has left, whatever the queueing.
   */
  #stillCurrent(target: Target, client: PoolClient, release: Release, unhold: () => void, era: number): boolean {
    const host = this.#owner.host
    if (host.isCurrent(target)) return true
    unhold()
    requestLog('%s is no longer current for this request: routing again', target.endpoint.name)
    release(wasCut(client) || host.leftSince(target.endpoint, era) ? true : undefined)
    this.#routeAgain()
    return false
  }

  /**
   * The topology changed under this request before it was sent (its target stopped being current,
   * its lane was replaced): it goes to the new target. Finitely often, but never a loop: past
   * MAX_ATTEMPTS such changes it fails as never sent.
   */
  #routeAgain(): void {
    if (++this.#staleTargets <= MAX_ATTEMPTS) return this.#dispatch()
    const host = this.#owner.host
    this.#done(new NoPrimaryError([], Math.round(host.clock.now() - this.#since), { cause: new Error(`the topology changed ${MAX_ATTEMPTS} times while this request was being routed; it was never sent`) }))
  }

  #run(target: Target, client: PoolClient, release: Release, unhold: () => void, kind: 'write' | 'read', era: number): void {
    if (!this.#stillCurrent(target, client, release, unhold, era)) return
    if (this.#checkout) return this.#handOut(target, client, release, unhold, era)
    let finished = false
    const endpoint = target.endpoint
    const counters = endpoint.counters
    if (kind === 'write') counters.writes++
    else counters.reads++
    const host = this.#owner.host
    const failed = (err: Error): void => {
      statementEnded(client)
      counters.errors++
      release(err)
      const errorClass = classifyError(err)
      this.#report(target, err, errorClass, era)
      this.#afterError(target, kind, err, errorClass)
    }
    const onClientError = (err: Error): void => {
      if (finished) return
      finished = true
      failed(err)
    }
    client.on('error', onClientError)
    unhold()
    statementSent(client)
    try {
      client.query(this.#text, this.#values, (err: Error | undefined, res: QueryResult) => {
        if (finished) return client.removeListener('error', onClientError)
        finished = true
        if (err) {
          client.removeListener('error', onClientError)
          return failed(err)
        }
        statementEnded(client)
        // The pool left the node while this ran (it answered within the leave's grace, or the
        // client could not be cut in time): a write there may be lost, so it is never acknowledged.
        if ((wasCut(client) || host.leftSince(endpoint, era)) && mayHaveWritten(this.#text)) {
          client.removeListener('error', onClientError)
          release(true)
          const left = new Error(`${endpoint.name} is no longer the primary; the write may be lost there`)
          return this.#done(new OutcomeUnknownError(endpoint.name, left, `The statement succeeded on ${endpoint.name} after the pool left it`))
        }
        const context = this.#context
        if (context && kind === 'write') {
          // Still ours while the position is read on it: keep listening for its socket dying.
          return captureLsn(client, release, context, () => {
            client.removeListener('error', onClientError)
            this.#done(undefined, res)
          })
        }
        client.removeListener('error', onClientError)
        // pg-pool releases with the callback's own error argument (null on success); listeners see the same.
        release(err)
        this.#done(undefined, res)
      })
    } catch (thrown) {
      client.removeListener('error', onClientError)
      statementEnded(client)
      finished = true
      release(thrown as Error)
      this.#done(thrown as Error)
    }
  }

  /**
   * Hands a checked-out client to the caller. pg-pool only listens for 'error' on idle clients, so
   * a server ending the session of a client an ORM holds between statements (idle in transaction,
   * during a failover) would emit an unhandled 'error' and crash the process. We listen while it is
   * checked out — the error still reaches the caller's next query and any listener of its own — and
   * report the first endpoint failure it shows (its own 'error' or a `release(err)`), once.
   */
  #handOut(target: Target, client: PoolClient, release: Release, unhold: () => void, era: number): void {
    let reported = false
    const reportOnce = (err: unknown): void => {
      if (reported || !(err instanceof Error)) return
      reported = true
      this.#report(target, err, classifyError(err), era)
    }
    client.on('error', reportOnce)
    unhold()
    const releaseOnce = (err?: Error | boolean): void => {
      client.removeListener('error', reportOnce)
      reportOnce(err)
      release(err)
    }
    client.release = releaseOnce
    // ORMs run their statements here: a write lost mid-flight must be recognisable as outcome-unknown,
    // a read lost the same way as safe to retry — by the caller, who owns the session's state.
    watchStatements(client, isSafeToRunAgain)
    this.#owner.host.requestFinished()
    this.#checkout!(undefined, client, releaseOnce)
  }

  /** Reports an endpoint failure or a demotion to the topology (statement errors are the caller's). */
  #report(target: Target, error: Error, errorClass: ErrorClass, era: number): void {
    if ((errorClass === 'connection' || errorClass === 'read-only') && !(error instanceof LaneRetiredError)) {
      this.#owner.host.report({ target, error, errorClass, era })
    }
  }

  /** A failed checkout never reached the server, so it may go again (not in fail-fast mode: pg.Pool would not). */
  #acquireFailed(target: Target, err: Error | undefined, era: number): void {
    const error = err ?? new Error(`no client from ${target.endpoint.name}`)
    // A replaced lane means the request was never sent: it simply goes to the new target (the
    // pool's own doing, never an attempt of the caller's, and never the caller's error).
    if (error instanceof LaneRetiredError) return this.#routeAgain()
    if (this.#attempt >= MAX_ATTEMPTS) return this.#done(error)
    this.#attempt++
    const errorClass = classifyError(error)
    if (errorClass === 'connection' || errorClass === 'read-only') {
      this.#report(target, error, errorClass, era)
      if (target.role === 'replica') this.#excludeTarget(target)
      else this.#retryOf = target
      if (!this.#owner.host.failFast && this.#owner.host.spendRetry()) return this.#dispatch()
    }
    this.#done(error)
  }

  #afterError(target: Target, kind: 'write' | 'read', err: Error, errorClass: ErrorClass): void {
    const replayable = typeof this.#text?.submit !== 'function' && this.#attempt < MAX_ATTEMPTS && !this.#owner.host.failFast
    if (errorClass === 'read-only') {
      if (target.role === 'primary' && replayable && !this.#readOnlyRetried) {
        // Nothing was written. Demoted, or the caller's own read-only transaction? The pool probes
        // the node before deciding; this request waits for that verdict, then either runs on the
        // new primary or gets its 25006 (the node is still the primary: the error was the caller's).
        this.#readOnlyRetried = true
        return this.#owner.host.target(
          'write',
          this.#since,
          null,
          (waitErr, next) => {
            if (waitErr || !next) return this.#done(waitErr ?? err)
            if (next.generation === target.generation && next.endpoint === target.endpoint) return this.#done(err)
            requestLog('retrying on the new primary after 25006 from %s', target.endpoint.name)
            if (!this.#owner.host.spendRetry()) return this.#done(err)
            this.#attempt++
            this.#acquire(next, 'write', null)
          },
          target,
        )
      }
      if (target.role === 'replica' && replayable && this.#owner.intent === 'auto') {
        // Auto-routed as a read, but it writes (a user function, say): nothing was written; go to the primary.
        this.#forceWrite = true
        return this.#retry(err)
      }
      return this.#done(err)
    }
    if (errorClass === 'connection') {
      // What cannot have written may run again elsewhere — and anything else only if it provably
      // never ran (never sent, or refused by a proxy such as PgBouncer before it reached a server).
      if (replayable && (neverRan(err) || !mayHaveWritten(this.#text))) {
        if (target.role === 'replica') this.#excludeTarget(target)
        else this.#retryOf = target
        return this.#retry(err)
      }
      // Fail-fast mode answers as pg.Pool would, with the driver's own error (marked when the
      // statement was sent); otherwise the loss is named for what it is.
      if (this.#owner.host.failFast) {
        markIfLost(err)
        return this.#done(err)
      }
      return this.#done(neverRan(err) ? err : new OutcomeUnknownError(target.endpoint.name, err))
    }
    this.#done(err)
  }

  #retry(err: Error): void {
    if (!this.#owner.host.spendRetry()) {
      requestLog('retry budget spent: surfacing %s', err.message)
      return this.#done(err)
    }
    this.#attempt++
    this.#dispatch()
  }

  #excludeTarget(target: Target): void {
    ;(this.#exclude ??= new Set()).add(target.endpoint.name)
  }

}
