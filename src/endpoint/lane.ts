import pg from 'pg'
import type { PoolClient, PoolConfig, PoolOptions } from 'pg'

/** pg.Pool's events, which a facade re-emits with pg.Pool's arguments. */
export type PoolEventName = 'connect' | 'acquire' | 'release' | 'remove' | 'error'

/**
 * Receives a lane's pg.Pool events (from its current and draining pools) with pg.Pool's
 * arguments. One method per event, so nothing is allocated per event on the hot path.
 */
export interface LaneEvents {
  connect(client: PoolClient): void
  acquire(client: PoolClient): void
  release(err: Error | boolean | undefined | null, client: PoolClient): void
  remove(client: PoolClient): void
  error(err: Error, client: PoolClient): void
}

/** Callback shape of pg.Pool#connect. */
export type AcquireCallback = (err: Error | undefined, client?: PoolClient, release?: (err?: Error | boolean) => void) => void

/** Raised to requests waiting for a client of a lane that was retired: they never reached the server. */
export class LaneRetiredError extends Error {
  constructor(endpoint: string) {
    super(`the pool of ${endpoint} was retired while the request waited for a connection`)
    this.name = 'LaneRetiredError'
  }
}

/** A checkout in progress; linked into the lane's list so a retire can abort it (O(1), no hashing). */
interface PendingAcquire {
  callback: AcquireCallback | null
  prev: PendingAcquire | null
  next: PendingAcquire | null
}

/**
 * One endpoint's pg.Pool for one kind of traffic (writes or reads), with every pg.Pool option the
 * user gave. Separate lanes keep pg.Pool's counts and events meaningful per facade (`pool`,
 * `pool.reader`). Retiring swaps in a fresh pg.Pool and ends the old one through its public API.
 */
export class Lane {
  private pool: pg.Pool
  private readonly draining = new Set<pg.Pool>()
  private pendingHead: PendingAcquire | null = null
  /** Every client each pool holds, kept from its connect/remove events (not per statement). */
  private readonly clients = new Map<pg.Pool, Set<PoolClient>>()
  /** Callbacks of whenEmpty(), re-checked whenever a client is removed. */
  private emptyWaiters: Array<() => void> = []

  constructor(
    private readonly endpointName: string,
    private readonly config: PoolConfig,
    private readonly events: LaneEvents,
  ) {
    this.pool = this.createPool()
  }

  /** The current pg.Pool's options. */
  get options(): PoolOptions {
    return this.pool.options
  }
  get totalCount(): number {
    return this.sum((p) => p.totalCount)
  }
  get idleCount(): number {
    return this.sum((p) => p.idleCount)
  }
  get waitingCount(): number {
    return this.sum((p) => p.waitingCount)
  }
  get expiredCount(): number {
    return this.sum((p) => p.expiredCount)
  }
  /** Clients checked out right now (busy), for least-busy routing. */
  get activeCount(): number {
    return this.totalCount - this.idleCount
  }

  /**
   * Checks a client out. If the lane is retired before a client arrives, the callback gets a
   * {@link LaneRetiredError} (the request never reached the server) and the late client goes back.
   */
  acquire(callback: AcquireCallback): void {
    const pending: PendingAcquire = { callback, prev: null, next: this.pendingHead }
    if (this.pendingHead) this.pendingHead.prev = pending
    this.pendingHead = pending
    this.pool.connect((err, client, release) => {
      const waiting = pending.callback
      this.unlink(pending)
      if (waiting === null) {
        // Aborted by a retire: the request went elsewhere; give the late client straight back.
        if (client) release(err)
        return
      }
      waiting(err, client, release)
    })
  }

  /**
   * Replaces the pg.Pool with a fresh one: idle clients close now, checked-out clients close when
   * released (never switched under their user), waiting requests are told to look elsewhere. With
   * `cut`, every connection this lane ever handed out (the current pool's and those of pools retired
   * before) is cut: for a node the pool has left, so that nothing still running there can complete
   * and be acknowledged afterwards (its outcome is reported as unknown instead).
   *
   * With `spareRunning`, a client running a `pool.query` statement ({@link statementSent}) is not cut
   * but returned, for the caller to cut once the statement had time to answer (see
   * {@link Endpoint.retire}). Checked-out clients are always cut at once: their user's next
   * statement, a COMMIT say, must never reach the node.
   */
  retire(cut = false, spareRunning = false): PoolClient[] {
    const old = this.pool
    this.pool = this.createPool()
    this.draining.add(old)
    old.end().then(
      () => this.draining.delete(old),
      () => this.draining.delete(old),
    )
    this.abortPending()
    const running: PoolClient[] = []
    if (!cut) return running
    for (const [pool, clients] of this.clients) {
      if (pool === this.pool) continue
      for (const client of clients) {
        if (spareRunning && (client as Marked)[RUNNING_STATEMENT] === true) running.push(client)
        else destroySocket(client)
      }
    }
    return running
  }

  /** Resolves once no client of this lane is open (idle or checked out): what drain() waits for. */
  whenEmpty(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.totalCount === 0) return resolve()
        this.emptyWaiters.push(check)
      }
      check()
    })
  }

  /** Ends every pool, waiting for checked-out clients as pg.Pool#end does. */
  async end(): Promise<void> {
    this.abortPending()
    await Promise.all([this.pool.end(), ...[...this.draining].map((p) => waitForEnd(p))])
  }

  private abortPending(): void {
    const err = new LaneRetiredError(this.endpointName)
    // Detach the whole list first: callbacks may retry at once and link new entries.
    let p = this.pendingHead
    this.pendingHead = null
    while (p !== null) {
      const next = p.next
      const callback = p.callback
      p.callback = null
      p.prev = p.next = null
      callback?.(err)
      p = next
    }
  }

  private unlink(p: PendingAcquire): void {
    p.callback = null
    if (p.prev) p.prev.next = p.next
    else if (this.pendingHead === p) this.pendingHead = p.next
    // (an entry detached by abortPending has neither neighbour nor head: nothing to do)
    if (p.next) p.next.prev = p.prev
    p.prev = p.next = null
  }

  private createPool(): pg.Pool {
    const options: PoolConfig = { ...this.config }
    if (this.config.password !== undefined) options.password = this.config.password
    const pool = new pg.Pool(options)
    const clients = new Set<PoolClient>()
    this.clients.set(pool, clients)
    const events = this.events
    pool.on('connect', (client: PoolClient) => {
      clients.add(client)
      events.connect(client)
    })
    pool.on('acquire', (client: PoolClient) => events.acquire(client))
    pool.on('release', (err: Error | undefined, client: PoolClient) => events.release(err, client))
    pool.on('remove', (client: PoolClient) => {
      clients.delete(client)
      events.remove(client)
      if (pool.ended || (pool !== this.pool && clients.size === 0)) this.clients.delete(pool)
      if (this.emptyWaiters.length > 0) {
        const waiters = this.emptyWaiters
        this.emptyWaiters = []
        // pg-pool counts the client as gone only after 'remove' returns.
        queueMicrotask(() => waiters.forEach((check) => check()))
      }
    })
    // A retired pool's idle clients are closed (or cut) by us: their errors say nothing about the node.
    pool.on('error', (err: Error, client: PoolClient) => {
      if (pool === this.pool) events.error(err, client)
    })
    return pool
  }

  private sum(count: (p: pg.Pool) => number): number {
    let total = count(this.pool)
    for (const p of this.draining) total += count(p)
    return total
  }
}

function waitForEnd(pool: pg.Pool): Promise<void> {
  return new Promise((resolve) => {
    const check = (): void => {
      if (pool.ended || pool.totalCount === 0) resolve()
      else pool.once('remove', check)
    }
    check()
  })
}

/** Set on a client while a `pool.query` statement of ours runs on it (never on a checked-out client). */
const RUNNING_STATEMENT = Symbol('pg-failover-pool running statement')
type Marked = PoolClient & { [RUNNING_STATEMENT]?: boolean }

/** Marks `client` as running a `pool.query` statement: a cut with an answer grace lets it answer (see {@link Lane.retire}). */
export function statementSent(client: PoolClient): void {
  ;(client as Marked)[RUNNING_STATEMENT] = true
}

/** The statement marked by {@link statementSent} has answered (or failed). */
export function statementEnded(client: PoolClient): void {
  ;(client as Marked)[RUNNING_STATEMENT] = false
}

/** Destroys a client's socket without waiting for the server (which may be frozen or gone). */
export function destroySocket(client: pg.ClientBase): void {
  ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
}
