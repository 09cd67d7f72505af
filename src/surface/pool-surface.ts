import type { EventEmitter } from 'node:events'
import pg from 'pg'
import type { PoolClient, PoolOptions, QueryArrayConfig, QueryArrayResult, QueryConfig, QueryConfigValues, QueryResult, QueryResultRow, Submittable } from 'pg'
import type { Lane } from '../endpoint/lane.js'
import { promisify } from './promisify.js'
import { type Intent, Request, type RequestOwner } from './request.js'
import type { RoutingHost } from './routing-host.js'

/**
 * pg's query config plus per-query routing: `route` forces the primary or a replica (overriding
 * `routeReads`), `maxStalenessMs` is this read's replica-lag budget in milliseconds.
 */
export type RoutedQueryConfig<I = any[]> = QueryConfig<I> & {
  route?: 'primary' | 'replica'
  maxStalenessMs?: number
}

/**
 * The pg.Pool surface shared by `FailoverPool`, `pool.reader` and `pool.writer`: query, connect,
 * end and the counts behave as pg.Pool's, while each statement runs on the node the host picks for
 * this surface's intent. Retries follow one rule: only what provably did not run (or a read).
 */
export abstract class PoolSurface extends pg.Pool {
  /**
   * The clients' errors are handled inside the pool (counted against their endpoint, delivered to
   * your own 'error' listeners, never thrown): the pool says so with a listener of its own on
   * 'error' and 'connect', which libraries that check for handlers before trusting a pool look for
   * (graphile-worker warns "Your pool doesn't have all of the error handlers!" otherwise).
   */
  protected handleClientErrors(): void {
    this.on('error', clientErrorsHandledInside)
    this.on('connect', clientErrorsHandledInside)
  }

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

  /**
   * pg-pool's private list of open clients, which tests and monitoring tools read (`pool._clients`):
   * here the clients of every endpoint's pool for this surface. Not part of pg's typed API.
   */
  get _clients(): PoolClient[] {
    if (!this.host) return []
    return this.host.lanes(this.intent === 'read' ? 'read' : 'write').flatMap((lane) => lane.clients)
  }
  set _clients(_value: PoolClient[]) {
    // pg-pool's constructor initialises its own list; the lanes hold the real ones.
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
    Request.checkout(this.owner(), cb)
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
    Request.query(this.owner(), text, values, cb)
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

  /** What requests made on this surface run with (made once, after the subclass set its host). */
  private owner(): RequestOwner {
    return (this.#owner ??= { host: this.host, intent: this.intent })
  }

  #owner: RequestOwner | undefined

  private sumLanes(count: (lane: Lane) => number): number {
    // pg-pool's constructor may read counts before subclass fields exist.
    if (!this.host) return 0
    let total = 0
    for (const lane of this.host.lanes(this.intent === 'read' ? 'read' : 'write')) total += count(lane)
    return total
  }
}

const BASE_OPTIONS = Symbol('baseOptions')

/** The pool's own 'error' and 'connect' listener (see PoolSurface#handleClientErrors). */
function clientErrorsHandledInside(): void {}

/** True when someone besides the pool itself listens for 'error' on `surface` (someone to deliver an idle client's error to). */
export function hasOwnErrorListener(surface: EventEmitter): boolean {
  const n = surface.listenerCount('error')
  return n > 1 || (n === 1 && surface.listeners('error')[0] !== clientErrorsHandledInside)
}
