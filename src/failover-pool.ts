import pg from 'pg'
import type { PoolClient, PoolOptions, QueryResult } from 'pg'
import type { TimerHandle } from './clock.js'
import { jitter } from './clock.js'
import { Endpoint, EndpointRetiredError, type PoolEventName } from './endpoint.js'
import { classifyError, failedBeforeSending } from './error-policy.js'
import { type EndpointAnswer, NoPrimaryError, OutcomeUnknownError, maskPassword } from './errors.js'
import { requestLog, topologyLog } from './log.js'
import { type FailoverPoolOptions, type ResolvedOptions, resolveOptions } from './options.js'
import { PromotionWatch } from './promotion-watch.js'
import { roleOf } from './role-probe.js'
import { type FailoverPoolStatus, type EndpointRole, buildStatus } from './status.js'
import { type Candidate, type Election, type ProbeOutcome, elect } from './topology.js'

/** Payload of the `failover` event. */
export interface FailoverEvent {
  /** The primary before the failover (null if none had been verified yet). */
  readonly from: string | null
  /** The newly verified primary. */
  readonly to: string
  /** Why the pool left the old primary, e.g. `connection failure: ECONNREFUSED`. */
  readonly reason: string
  /** From the first sign of trouble to the new primary being verified, in milliseconds. */
  readonly durationMs: number
  /** Topology epoch after the failover; grows by one with every change of primary. */
  readonly epoch: number
}

/** Events a FailoverPool emits beyond pg.Pool's, with their payloads. */
export interface FailoverPoolEvents {
  failover: (event: FailoverEvent) => void
}

// Typed listeners for our own events; pg.Pool's overloads still apply for its events.
export interface FailoverPool {
  on<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  on(event: 'connect' | 'acquire' | 'remove', listener: (client: PoolClient) => void): this
  on(event: 'release', listener: (err: Error | undefined, client: PoolClient) => void): this
  on(event: 'error', listener: (err: Error, client: PoolClient) => void): this
  once<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  once(event: 'connect' | 'acquire' | 'remove', listener: (client: PoolClient) => void): this
  once(event: 'release', listener: (err: Error | undefined, client: PoolClient) => void): this
  once(event: 'error', listener: (err: Error, client: PoolClient) => void): this
  off<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  off(event: string | symbol, listener: (...args: any[]) => void): this
}

type QueryCallback = (err: Error | undefined, result?: QueryResult) => void
type ConnectCallback = (err: Error | undefined, client?: PoolClient, release?: (err?: Error | boolean) => void) => void
type PrimaryCallback = (err: Error | undefined, endpoint?: Endpoint, generation?: number) => void

interface Waiter {
  readonly callback: PrimaryCallback
  readonly since: number
  timer: TimerHandle | null
}

const BASE_OPTIONS = Symbol('baseOptions')
/** Attempts per request before giving up even within the deadline; guards against a retry loop. */
const MAX_ATTEMPTS = 10

/**
 * A drop-in `pg.Pool` over several PostgreSQL endpoints. `query` and `connect` always reach the
 * verified primary; when it fails or is demoted, the pool re-discovers the primary once for all
 * waiting requests and carries on without a process restart.
 *
 * Events: pg.Pool's `connect`, `acquire`, `release`, `remove`, `error` (same arguments), plus
 * `failover` ({@link FailoverEvent}).
 */
export class FailoverPool extends pg.Pool {
  readonly #opts: ResolvedOptions
  readonly #endpoints: readonly Endpoint[]
  readonly #watches = new Map<Endpoint, PromotionWatch>()
  readonly #waiters = new Set<Waiter>()
  readonly #mismatched = new Set<string>()
  readonly #fenced = new Set<string>()
  #primary: Endpoint | null = null
  /** Bumped whenever a primary is adopted (even the same one again), to ignore stale failure reports. */
  #generation = 0
  #epoch = 0
  #failovers = 0
  #systemId: string | null = null
  #minTimeline: number | null = null
  #discovering = false
  #rediscover: string | null = null
  #discoveryTimer: TimerHandle | null = null
  #trouble: { from: string | null; reason: string; since: number } | null = null
  #lastAnswers: EndpointAnswer[] = []
  #lastElectionReason = 'not probed yet'

  /**
   * @param options endpoints plus any pg.Pool option; see {@link FailoverPoolOptions}.
   * @throws ConfigError for invalid options (naming the field and value, never a password).
   */
  constructor(options: FailoverPoolOptions) {
    const resolved = resolveOptions(options)
    super(resolved.poolConfig)
    this.#opts = resolved
    this.#endpoints = resolved.endpoints.map((e) => new Endpoint(e, resolved.poolConfig, (ep, event, args) => this.#onPoolEvent(ep, event, args), resolved.clock))
    this.#startDiscovery('start')
  }

  /**
   * pg.Pool's `options`, reflecting the current primary's connection settings (host, port, ...), so
   * code that opens side connections from them (query cancellation) reaches the primary.
   */
  // @ts-expect-error pg's typings declare `options` as a field; here it is an accessor so it can follow the primary.
  override get options(): PoolOptions {
    // pg-pool's constructor reads this before our fields exist.
    const endpoint = #endpoints in this ? (this.#primary ?? this.#endpoints[0]) : undefined
    return endpoint ? endpoint.options : (this as unknown as Record<symbol, PoolOptions>)[BASE_OPTIONS]!
  }
  override set options(value: PoolOptions) {
    ;(this as unknown as Record<symbol, PoolOptions>)[BASE_OPTIONS] = value
  }

  /** Clients open across every endpoint (as pg.Pool#totalCount). */
  // @ts-expect-error pg's typings declare a field; pg-pool itself defines a getter, as here.
  override get totalCount(): number {
    return this.#sum((e) => e.totalCount)
  }
  /** Idle clients across every endpoint (as pg.Pool#idleCount). */
  // @ts-expect-error pg's typings declare a field; pg-pool itself defines a getter, as here.
  override get idleCount(): number {
    return this.#sum((e) => e.idleCount)
  }
  /** Requests waiting for a client, including those waiting for a primary to be verified. */
  // @ts-expect-error pg's typings declare a field; pg-pool itself defines a getter, as here.
  override get waitingCount(): number {
    return this.#sum((e) => e.waitingCount) + (#waiters in this ? this.#waiters.size : 0)
  }
  /** Clients past `maxLifetimeSeconds` that will close on release (as pg.Pool#expiredCount). */
  // @ts-expect-error pg's typings declare a field; pg-pool itself defines a getter, as here.
  override get expiredCount(): number {
    return this.#sum((e) => e.expiredCount)
  }

  /**
   * Checks out a real `pg.Client` from the verified primary, in promise or callback form, exactly as
   * pg.Pool#connect. The client stays on that node until released, whatever happens meanwhile.
   */
  override connect(): Promise<PoolClient>
  override connect(callback: (err: Error | undefined, client: PoolClient | undefined, done: (release?: any) => void) => void): void
  override connect(callback?: any): Promise<PoolClient> | void {
    const { result, cb } = promisify<PoolClient>(callback as ((err: Error | undefined, value?: PoolClient) => void) | undefined)
    if (this.ending) {
      cb(new Error('Cannot use a pool after calling end on the pool'))
      return result
    }
    this.#checkout(this.#opts.clock.now(), 1, cb as ConnectCallback)
    return result
  }

  /**
   * Runs a statement on the verified primary, exactly as pg.Pool#query (text, config object or
   * submittable; promise or callback). A statement that provably did not run (refused before it was
   * sent, or rejected with 25006 by a demoted node) is retried once the new primary is verified; one
   * lost mid-flight fails with `OutcomeUnknownError` and is never replayed.
   */
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
    if (this.ending) {
      cb(new Error('Cannot use a pool after calling end on the pool'))
      return result
    }
    this.#dispatch(text, values, cb as QueryCallback, this.#opts.clock.now(), 1, false)
    return result
  }

  /**
   * Closes every connection and stops every timer, in promise or callback form, exactly as
   * pg.Pool#end: it waits for checked-out clients to be released, and a second call fails.
   */
  override end(): Promise<void>
  override end(callback: () => void): void
  override end(callback?: (err?: Error) => void): Promise<void> | void {
    const { result, cb } = promisify<void>(callback as ((err: Error | undefined) => void) | undefined)
    if (this.ending) {
      cb(new Error('Called end on pool more than once'))
      return result
    }
    (this as { ending: boolean }).ending = true
    if (this.#discoveryTimer !== null) this.#opts.clock.clearTimeout(this.#discoveryTimer)
    this.#discoveryTimer = null
    for (const watch of this.#watches.values()) watch.stop()
    const ended = new Error('Cannot use a pool after calling end on the pool')
    for (const waiter of [...this.#waiters]) this.#settleWaiter(waiter, ended)
    Promise.all(this.#endpoints.map((e) => e.end())).then(
      () => {
        (this as { ended: boolean }).ended = true
        cb(undefined)
      },
      (err: Error) => {
        (this as { ended: boolean }).ended = true
        cb(err)
      },
    )
    return result
  }

  /** A JSON-serialisable snapshot of the topology: primary, roles, lag, failovers. No passwords. */
  status(): FailoverPoolStatus {
    return buildStatus({
      primary: this.#primary?.name ?? null,
      epoch: this.#epoch,
      failovers: this.#failovers,
      systemId: this.#systemId,
      timeline: this.#minTimeline,
      discovering: this.#discovering,
      lastElection: this.#lastElectionReason,
      endpoints: this.#endpoints.map((e) => ({ endpoint: e, role: this.#roleOf(e) })),
    })
  }

  // ---------------------------------------------------------------- requests

  #dispatch(text: any, values: any, cb: QueryCallback, since: number, attempt: number, readOnlyRetried: boolean): void {
    this.#withPrimary(since, (err, endpoint, generation) => {
      if (err || !endpoint) return cb(err)
      endpoint.acquire((acquireErr, client, release) => {
        if (acquireErr || !client || !release) {
          if (this.#retryAfterAcquireFailure(endpoint, generation!, acquireErr, attempt)) {
            return this.#dispatch(text, values, cb, since, attempt + 1, readOnlyRetried)
          }
          return cb(acquireErr)
        }
        let finished = false
        const onClientError = (clientErr: Error): void => {
          if (finished) return
          finished = true
          release(clientErr)
          this.#afterQueryError(endpoint, generation!, clientErr, text, values, cb, since, attempt, readOnlyRetried)
        }
        client.once('error', onClientError)
        try {
          client.query(text, values, (queryErr: Error | undefined, res: QueryResult) => {
            client.removeListener('error', onClientError)
            if (finished) return
            finished = true
            release(queryErr)
            if (queryErr) return this.#afterQueryError(endpoint, generation!, queryErr, text, values, cb, since, attempt, readOnlyRetried)
            cb(undefined, res)
          })
        } catch (thrown) {
          client.removeListener('error', onClientError)
          finished = true
          release(thrown as Error)
          cb(thrown as Error)
        }
      })
    })
  }

  #afterQueryError(endpoint: Endpoint, generation: number, err: Error, text: any, values: any, cb: QueryCallback, since: number, attempt: number, readOnlyRetried: boolean): void {
    const kind = classifyError(err)
    const replayable = typeof text?.submit !== 'function' && attempt < MAX_ATTEMPTS
    if (kind === 'read-only') {
      this.#reportFailure(endpoint, generation, err)
      if (replayable && !readOnlyRetried) {
        requestLog('retrying on the new primary after 25006 from %s', endpoint.name)
        return this.#dispatch(text, values, cb, since, attempt + 1, true)
      }
      return cb(err)
    }
    if (kind === 'connection') {
      this.#reportFailure(endpoint, generation, err)
      if (replayable && failedBeforeSending(err)) return this.#dispatch(text, values, cb, since, attempt + 1, readOnlyRetried)
      return cb(new OutcomeUnknownError(endpoint.name, err))
    }
    cb(err)
  }

  #checkout(since: number, attempt: number, cb: ConnectCallback): void {
    this.#withPrimary(since, (err, endpoint, generation) => {
      if (err || !endpoint) return cb(err)
      endpoint.acquire((acquireErr, client, release) => {
        if (acquireErr || !client) {
          if (this.#retryAfterAcquireFailure(endpoint, generation!, acquireErr, attempt)) return this.#checkout(since, attempt + 1, cb)
          return cb(acquireErr)
        }
        cb(undefined, client, release)
      })
    })
  }

  /** A failed checkout never reached the server, so it may go again; true when it should. */
  #retryAfterAcquireFailure(endpoint: Endpoint, generation: number, err: Error | undefined, attempt: number): boolean {
    if (attempt >= MAX_ATTEMPTS || this.ending) return false
    if (err instanceof EndpointRetiredError) return true
    const kind = classifyError(err)
    if (kind === 'connection' || kind === 'read-only') {
      this.#reportFailure(endpoint, generation, err)
      return true
    }
    return false
  }

  /** Calls back with the verified primary at once, or when one is verified, or with NoPrimaryError at the deadline. */
  #withPrimary(since: number, callback: PrimaryCallback): void {
    const primary = this.#primary
    if (primary !== null) return callback(undefined, primary, this.#generation)
    if (this.ending) return callback(new Error('Cannot use a pool after calling end on the pool'))
    const clock = this.#opts.clock
    const remaining = since + this.#opts.failoverTimeoutMs - clock.now()
    if (remaining <= 0 || this.#waiters.size >= this.#opts.maxQueuedRequests) {
      const why = remaining <= 0 ? undefined : new Error(`${this.#waiters.size} requests already wait for a primary (maxQueuedRequests)`)
      return callback(new NoPrimaryError(this.#lastAnswers, Math.round(clock.now() - since), why ? { cause: why } : undefined))
    }
    const waiter: Waiter = { callback, since, timer: null }
    waiter.timer = clock.setTimeout(() => {
      waiter.timer = null
      this.#settleWaiter(waiter, new NoPrimaryError(this.#lastAnswers, Math.round(clock.now() - since)))
    }, remaining)
    // A request waiting for a primary is user work: it keeps the process alive, as pg-pool's pending connects do.
    ;(waiter.timer as { ref?: () => void }).ref?.()
    this.#waiters.add(waiter)
    if (!this.#discovering && this.#discoveryTimer === null) this.#startDiscovery('a request is waiting for a primary')
  }

  #settleWaiter(waiter: Waiter, err: Error | undefined, endpoint?: Endpoint): void {
    if (!this.#waiters.delete(waiter)) return
    if (waiter.timer !== null) this.#opts.clock.clearTimeout(waiter.timer)
    waiter.callback(err, endpoint, this.#generation)
  }

  // ---------------------------------------------------------------- topology (the only place it changes)

  /**
   * The primary failed or was demoted: stop sending it anything, evict its clients and re-discover.
   * Reports from requests that started before the current primary was adopted are ignored, so one
   * failover costs one discovery however many requests saw it.
   */
  #reportFailure(endpoint: Endpoint, generation: number, err: unknown): void {
    if (err instanceof Error && !(err instanceof EndpointRetiredError)) endpoint.lastError = err
    if (endpoint !== this.#primary || generation !== this.#generation) return
    const reason =
      classifyError(err) === 'read-only'
        ? `demoted: ${endpoint.name} answered 25006 read_only_sql_transaction`
        : `connection failure on ${endpoint.name}: ${maskPassword(err instanceof Error ? err.message : String(err))}`
    topologyLog('primary %s suspect: %s', endpoint.name, reason)
    this.#suspendPrimary(reason)
    endpoint.retire()
    this.#startDiscovery(reason)
  }

  #suspendPrimary(reason: string): void {
    if (this.#trouble === null) this.#trouble = { from: this.#primary?.name ?? null, reason, since: this.#opts.clock.now() }
    this.#primary = null
  }

  #onPromoted(endpoint: Endpoint): void {
    if (this.ending) return
    const reason = `promotion of ${endpoint.name} noticed`
    topologyLog(reason)
    // The cluster has moved on: writing to the old primary now could be lost, so stop at once.
    if (this.#primary !== null && this.#primary !== endpoint) this.#suspendPrimary(reason)
    this.#startDiscovery(reason)
  }

  /** Probes every endpoint in parallel; single-flight (a request made meanwhile runs once more after). */
  #startDiscovery(reason: string): void {
    if (this.ending) return
    if (this.#discovering) {
      this.#rediscover = reason
      return
    }
    if (this.#discoveryTimer !== null) this.#opts.clock.clearTimeout(this.#discoveryTimer)
    this.#discoveryTimer = null
    this.#discovering = true
    topologyLog('discovery: %s', reason)
    const outcomes = new Map<Endpoint, ProbeOutcome>(this.#endpoints.map((e) => [e, { kind: 'pending' }]))
    const candidates = (): Candidate[] => this.#endpoints.map((e) => ({ name: e.name, outcome: outcomes.get(e)! }))
    let adopted = false
    const consider = (): void => {
      if (adopted || this.ending) return
      const election = elect(candidates(), { systemId: this.#systemId, minTimeline: this.#minTimeline })
      if (election.kind === 'primary') {
        adopted = true
        this.#apply(election)
      }
    }
    const probes = this.#endpoints.map((endpoint) =>
      endpoint.probe(this.#opts.probeTimeoutMs).then(
        (probe) => {
          outcomes.set(endpoint, { kind: 'ok', probe })
          consider()
        },
        (error: Error) => {
          outcomes.set(endpoint, { kind: 'failed', error })
          consider()
        },
      ),
    )
    void Promise.all(probes).then(() => {
      this.#discovering = false
      if (this.ending) return
      const election = elect(candidates(), { systemId: this.#systemId, minTimeline: this.#minTimeline })
      this.#lastAnswers = this.#endpoints.map((e) => answerOf(e, outcomes.get(e)!, election))
      this.#apply(election)
      this.#syncWatches()
      if (this.#primary === null) this.#failWaitersOnConfigurationError(outcomes)
      const again = this.#rediscover
      this.#rediscover = null
      if (again !== null) this.#startDiscovery(again)
      else if (this.#primary === null) this.#scheduleDiscovery()
    })
  }

  /**
   * When every endpoint rejects us for a configuration reason (bad password, unknown database),
   * waiting for a failover cannot help: fail the waiting requests now with the server's own error.
   */
  #failWaitersOnConfigurationError(outcomes: ReadonlyMap<Endpoint, ProbeOutcome>): void {
    const errors = [...outcomes.values()].map((o) => (o.kind === 'failed' ? o.error : null))
    if (errors.some((e) => e === null || classifyError(e) !== 'configuration')) return
    for (const waiter of [...this.#waiters]) this.#settleWaiter(waiter, errors[0]!)
  }

  #scheduleDiscovery(): void {
    if (this.ending || this.#discoveryTimer !== null) return
    this.#discoveryTimer = this.#opts.clock.setTimeout(() => {
      this.#discoveryTimer = null
      this.#startDiscovery('no primary yet: probing again')
    }, jitter(this.#opts.discoveryIntervalMs))
  }

  #apply(election: Election): void {
    this.#lastElectionReason = election.kind === 'primary' ? `primary ${election.name}` : election.reason
    if (election.kind === 'wait') return
    for (const name of election.mismatched) this.#mismatched.add(name)
    if (election.kind !== 'primary') {
      if (election.kind === 'ambiguous' && this.#primary !== null) {
        topologyLog('refusing writes: %s', election.reason)
        this.#suspendPrimary(election.reason)
      }
      return
    }
    for (const name of election.fenced) this.#fenced.add(name)
    this.#fenced.delete(election.name)
    if (this.#systemId === null) this.#systemId = election.systemId
    if (election.timeline !== null) this.#minTimeline = Math.max(this.#minTimeline ?? 0, election.timeline)
    const next = this.#endpoints.find((e) => e.name === election.name)!
    if (this.#primary === next) return
    const previous = this.#primary
    if (previous !== null) previous.retire()
    this.#primary = next
    this.#generation++
    this.#watches.get(next)?.stop()
    const trouble = this.#trouble
    this.#trouble = null
    const from = previous?.name ?? trouble?.from ?? null
    if (from !== next.name) this.#epoch++
    if (from !== null && from !== next.name) {
      this.#failovers++
      const event: FailoverEvent = {
        from,
        to: next.name,
        reason: trouble?.reason ?? `promotion of ${next.name}`,
        durationMs: Math.round(trouble ? this.#opts.clock.now() - trouble.since : 0),
        epoch: this.#epoch,
      }
      topologyLog('failover %s -> %s (%s) in %d ms', event.from, event.to, event.reason, event.durationMs)
      this.emit('failover', event)
    } else {
      topologyLog('primary %s verified (epoch %d)', next.name, this.#epoch)
    }
    for (const waiter of [...this.#waiters]) this.#settleWaiter(waiter, undefined, next)
  }

  /** Keeps a promotion watch on every verified standby of our cluster, and none elsewhere. */
  #syncWatches(): void {
    if (!this.#opts.promotionWatch) return
    for (const endpoint of this.#endpoints) {
      const isStandby = endpoint.lastError === null && endpoint.lastProbe !== null && endpoint.lastProbe.inRecovery && !this.#mismatched.has(endpoint.name)
      let watch = this.#watches.get(endpoint)
      if (isStandby && endpoint !== this.#primary) {
        if (!watch) {
          watch = new PromotionWatch(
            endpoint,
            {
              windowMs: this.#opts.promotionWatchWindowMs,
              checkMs: this.#opts.promotionWatchCheckMs,
              retryMs: Math.max(this.#opts.discoveryIntervalMs, 1_000),
              connectTimeoutMs: this.#opts.probeTimeoutMs,
            },
            this.#opts.clock,
            (e) => this.#onPromoted(e),
          )
          this.#watches.set(endpoint, watch)
        }
        watch.start()
      } else {
        watch?.stop()
      }
    }
  }

  #roleOf(endpoint: Endpoint): EndpointRole {
    if (this.#mismatched.has(endpoint.name)) return 'mismatched-system'
    if (this.#fenced.has(endpoint.name)) return 'fenced'
    if (endpoint === this.#primary) return 'primary'
    if (endpoint.lastError !== null && (endpoint.lastProbeAt ?? -1) >= 0 && endpoint.lastProbe === null) return 'unreachable'
    if (endpoint.lastError !== null && classifyError(endpoint.lastError) === 'connection') return 'unreachable'
    if (endpoint.lastProbe === null) return 'unknown'
    const role = roleOf(endpoint.lastProbe)
    return role === 'primary' ? 'unverified-primary' : role
  }

  // ---------------------------------------------------------------- inner pool events

  #onPoolEvent(endpoint: Endpoint, event: PoolEventName, args: unknown[]): void {
    if (event === 'error') {
      const err = args[0] as Error
      if (classifyError(err) === 'connection' || classifyError(err) === 'read-only') {
        this.#reportFailure(endpoint, this.#generation, err)
      }
      // pg.Pool would crash a process with no 'error' listener; a failover must not.
      if (this.listenerCount('error') > 0) this.emit('error', ...args)
      return
    }
    if (event === 'release') {
      const err = args[0]
      if (err instanceof Error && classifyError(err) !== 'statement' && classifyError(err) !== 'configuration') {
        this.#reportFailure(endpoint, this.#generation, err)
      }
    }
    this.emit(event, ...args)
  }

  #sum(count: (e: Endpoint) => number): number {
    if (!(#endpoints in this)) return 0
    const endpoints = this.#endpoints
    let total = 0
    for (const e of endpoints) total += count(e)
    return total
  }
}

function answerOf(endpoint: Endpoint, outcome: ProbeOutcome, election: Election): EndpointAnswer {
  if (election.kind !== 'wait' && election.mismatched.includes(endpoint.name)) {
    return { endpoint: endpoint.name, role: 'mismatched-system', error: 'system identifier differs from the cluster' }
  }
  if (outcome.kind === 'ok') return { endpoint: endpoint.name, role: roleOf(outcome.probe) }
  if (outcome.kind === 'failed') return { endpoint: endpoint.name, role: 'unreachable', error: maskPassword(outcome.error.message) }
  return { endpoint: endpoint.name, role: 'unknown' }
}

/** pg-pool's promise-or-callback convention: with a callback, no promise; without, a promise. */
function promisify<T>(callback: ((err: Error | undefined, value?: T) => void) | undefined): {
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
  return { result, cb: (err, value) => (err ? reject(err) : resolve(value as T)) }
}
