import pg from 'pg'
import type { PoolClient, PoolConfig, PoolOptions } from 'pg'
import { cutClient } from './client-cut.js'

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

/** Raised to requests waiting for a client of a lane that was refreshed: they never reached the server. */
export class LaneRetiredError extends Error {
  constructor(endpoint: string) {
    super(`the pool of ${endpoint} was replaced while the request waited for a connection`)
    this.name = 'LaneRetiredError'
  }
}

/** A checkout in progress; linked into the lane's list so a refresh can abort it (O(1), no hashing). */
interface PendingAcquire {
  callback: AcquireCallback | null
  prev: PendingAcquire | null
  next: PendingAcquire | null
}

/** One inner pg.Pool of a lane and every client it made, connecting ones included. */
interface InnerPool {
  readonly clients: Set<pg.ClientBase>
  /** Clients that finished connecting (the others are still connecting). */
  readonly connected: WeakSet<pg.ClientBase>
  /** Set once the pool was told to end: resolves when its last client is gone. */
  ended: Promise<void> | null
  /** True while the lane opens its warm session (keepWarm); the client constructed then is marked {@link WARM_UP}. */
  warming: boolean
}

/**
 * One endpoint's pg.Pool for one kind of traffic (writes or reads), with every pg.Pool option the
 * user gave. Separate lanes keep pg.Pool's counts and events meaningful per facade (`pool`,
 * `pool.reader`). Refreshing swaps in a fresh pg.Pool and ends the old one through its public API;
 * cutting also destroys every connection the old ones still hold. Every client a lane's pools make
 * is known from the moment it is constructed, so a cut or `end()` reaches clients still connecting.
 * Nothing is kept for a pool once it has ended.
 */
export class Lane {
  #pool: pg.Pool
  readonly #inner = new Map<pg.Pool, InnerPool>()
  #pendingHead: PendingAcquire | null = null
  /** Callbacks of whenEmpty(), re-checked whenever a client is removed. */
  #emptyWaiters: Array<() => void> = []
  #ending = false
  /** Whether this lane keeps one idle session open (see keepWarm). */
  #warm = false

  constructor(
    private readonly endpointName: string,
    private readonly config: PoolConfig,
    private readonly events: LaneEvents,
  ) {
    this.#pool = this.#createPool()
  }

  /** The current pg.Pool's options. */
  get options(): PoolOptions {
    return this.#pool.options
  }
  get totalCount(): number {
    return this.#sum((p) => p.totalCount)
  }
  get idleCount(): number {
    return this.#sum((p) => p.idleCount)
  }
  get waitingCount(): number {
    return this.#sum((p) => p.waitingCount)
  }
  get expiredCount(): number {
    return this.#sum((p) => p.expiredCount)
  }
  /** Every client open or opening in this lane's pools (pg-pool's private `_clients`, which some tools read). */
  get clients(): pg.PoolClient[] {
    const clients: pg.PoolClient[] = []
    for (const pool of this.#inner.keys()) clients.push(...((pool as unknown as { _clients?: pg.PoolClient[] })._clients ?? []))
    return clients
  }
  /** Clients checked out right now (busy), for least-busy routing. */
  get activeCount(): number {
    return this.totalCount - this.idleCount
  }
  /** Inner pools still referenced (the current one plus those still closing): bounded, for leak checks. */
  get retainedPools(): number {
    return this.#inner.size
  }

  /**
   * Checks a client out. If the lane is refreshed before a client arrives, the callback gets a
   * {@link LaneRetiredError} (the request never reached the server) and the late client goes back.
   */
  acquire(callback: AcquireCallback): void {
    if (this.#ending) {
      queueMicrotask(() => callback(new Error('Cannot use a pool after calling end on the pool')))
      return
    }
    const pending: PendingAcquire = { callback, prev: null, next: this.#pendingHead }
    if (this.#pendingHead) this.#pendingHead.prev = pending
    this.#pendingHead = pending
    this.#take(this.#pool, pending, (this.#pool.options.max ?? 10) + 1)
  }

  /**
   * One checkout from `pool` for `pending`. pg-pool hands out an idle client whose session already
   * ended (a FATAL error, a close not yet processed) as if it were alive; its statement would then
   * fail unsent, or be sent on a dead session. Such a client is destroyed and another taken, up to
   * `spares` times.
   */
  #take(pool: pg.Pool, pending: PendingAcquire, spares: number): void {
    pool.connect((err, client, release) => {
      if (!err && client && spares > 0 && pending.callback !== null && isDead(client)) {
        release(true)
        return this.#take(pool, pending, spares - 1)
      }
      const waiting = pending.callback
      this.#unlink(pending)
      if (waiting === null) {
        // Aborted by a refresh: the request went elsewhere; give the late client straight back.
        if (client) release(err)
        return
      }
      waiting(err, client, release)
    })
  }

  /**
   * Replaces the pg.Pool with a fresh one: idle clients close now, checked-out clients close when
   * released (never switched under their user), waiting requests are told — after this call
   * returns, never from inside it — to look elsewhere.
   */
  refresh(): void {
    const old = this.#pool
    this.#pool = this.#createPool()
    this.#endInner(old)
    this.#abortPending()
  }

  /**
   * {@link refresh}, then cuts every connection the older pools hold — idle, checked out, running,
   * still connecting — so that nothing still running on a node the pool has left can complete and
   * be acknowledged afterwards. With `spareRunning`, a client running a `pool.query` statement
   * ({@link statementSent}) is returned instead, for the caller to cut once the statement had time
   * to answer (see Endpoint#leave). Checked-out clients are always cut at once: their user's next
   * statement, a COMMIT say, must never reach the node.
   */
  cut(spareRunning = false): pg.ClientBase[] {
    this.refresh()
    const running: pg.ClientBase[] = []
    for (const [pool, inner] of this.#inner) {
      if (pool === this.#pool) continue
      for (const client of inner.clients) {
        if (spareRunning && (client as Marked)[RUNNING_STATEMENT] === true) running.push(client)
        else cutClient(client)
      }
    }
    return running
  }

  /**
   * Keeps one idle session open in this lane, or stops keeping it: on a standby's write lane, so the
   * first writes after its promotion need no new connection (`warmStandbys`). pg-pool's `min`
   * exempts the session from the idle timeout, but pg-pool opens none by itself: it is opened here,
   * when the lane has no client at all. Its checkout serves no one, so it emits no 'acquire' or
   * 'release'; 'connect' is emitted (the user's session set-up runs on it). A failed open is
   * forgotten: the caller asks again at its next health check.
   */
  keepWarm(warm: boolean): void {
    this.#warm = warm
    const pool = this.#pool
    pool.options.min = this.#minOf()
    const inner = this.#inner.get(pool)
    if (!warm || this.#ending || inner === undefined || inner.warming || pool.totalCount > 0) return
    inner.warming = true
    try {
      // pg-pool constructs the client inside connect(), synchronously: the Tracked class marks it.
      pool.connect((err, client, release) => {
        if (client) release(err)
      })
    } finally {
      inner.warming = false
    }
  }

  #minOf(): number {
    const min = this.config.min ?? 0
    return this.#warm ? Math.max(1, min) : min
  }

  /** Resolves once no client of this lane is open (idle or checked out): what drain() waits for. */
  whenEmpty(): Promise<void> {
    return new Promise((resolve) => {
      const check = (): void => {
        if (this.totalCount === 0) return resolve()
        this.#emptyWaiters.push(check)
      }
      check()
    })
  }

  /**
   * Ends every pool as pg.Pool#end does (checked-out clients are waited for; they are the user's).
   * Clients still connecting are cut first: a connect to a frozen node would otherwise hold the
   * end until the TCP stack gives up.
   */
  async end(): Promise<void> {
    this.#ending = true
    this.#abortPending()
    for (const inner of this.#inner.values()) for (const client of inner.clients) if (!inner.connected.has(client)) cutClient(client)
    this.#endInner(this.#pool)
    await Promise.all([...this.#inner.values()].map((inner) => inner.ended))
  }

  #endInner(pool: pg.Pool): void {
    const inner = this.#inner.get(pool)
    if (!inner || inner.ended) return
    const forget = (): void => {
      this.#inner.delete(pool)
    }
    inner.ended = pool.end().then(forget, forget)
  }

  #abortPending(): void {
    // Detach the whole list first: callbacks may retry at once and link new entries.
    let p = this.#pendingHead
    this.#pendingHead = null
    const callbacks: AcquireCallback[] = []
    while (p !== null) {
      const next = p.next
      if (p.callback) callbacks.push(p.callback)
      p.callback = null
      p.prev = p.next = null
      p = next
    }
    if (callbacks.length === 0) return
    const err = new LaneRetiredError(this.endpointName)
    // Deferred, as pg-pool defers its callbacks: a request routed again must see the state its
    // caller is about to assign, never the one it is replacing.
    queueMicrotask(() => {
      for (const callback of callbacks) callback(err)
    })
  }

  #unlink(p: PendingAcquire): void {
    p.callback = null
    if (p.prev) p.prev.next = p.next
    else if (this.#pendingHead === p) this.#pendingHead = p.next
    // (an entry detached by abortPending has neither neighbour nor head: nothing to do)
    if (p.next) p.next.prev = p.prev
    p.prev = p.next = null
  }

  #createPool(): pg.Pool {
    const inner: InnerPool = { clients: new Set(), connected: new WeakSet(), ended: null, warming: false }
    const options: PoolConfig = { ...this.config, min: this.#minOf(), Client: trackingClass(this.config, inner) }
    if (this.config.password !== undefined) options.password = this.config.password
    const pool = new pg.Pool(options)
    this.#inner.set(pool, inner)
    const events = this.events
    pool.on('connect', (client: PoolClient) => {
      inner.connected.add(client)
      events.connect(client)
    })
    pool.on('acquire', (client: PoolClient) => {
      if ((client as WarmMarked)[WARM_UP] !== true) events.acquire(client)
    })
    pool.on('release', (err: Error | undefined, client: PoolClient) => {
      const marked = client as WarmMarked
      if (marked[WARM_UP] === true) marked[WARM_UP] = false
      else events.release(err, client)
    })
    pool.on('remove', (client: PoolClient) => {
      inner.clients.delete(client)
      events.remove(client)
      if (this.#emptyWaiters.length > 0) {
        const waiters = this.#emptyWaiters
        this.#emptyWaiters = []
        // pg-pool counts the client as gone only after 'remove' returns.
        queueMicrotask(() => waiters.forEach((check) => check()))
      }
    })
    // A replaced pool's idle clients are closed (or cut) by us: their errors say nothing about the node.
    pool.on('error', (err: Error, client: PoolClient) => {
      if (pool === this.#pool) events.error(err, client)
    })
    return pool
  }

  #sum(count: (p: pg.Pool) => number): number {
    let total = 0
    for (const pool of this.#inner.keys()) total += count(pool)
    return total
  }
}

/**
 * The `Client` class an inner pool makes its clients with: the user's own (or pg's), recording
 * each client in `inner` from its construction until it ends — so clients still connecting are
 * known too. The subclass keeps the class's name (code that checks it must see the user's).
 */
function trackingClass(config: PoolConfig, inner: InnerPool): typeof pg.Client {
  const Base = ((config as { Client?: typeof pg.Client }).Client ?? pg.Client) as typeof pg.Client
  class Tracked extends Base {
    constructor(...args: ConstructorParameters<typeof pg.Client>) {
      super(...args)
      if (inner.warming) (this as WarmMarked)[WARM_UP] = true
      // A Client written to pg-pool's bare contract (connect and on) tells no one when it ends: such
      // a client is not tracked, as it could never be forgotten.
      if (typeof (this as { once?: unknown }).once === 'function') {
        inner.clients.add(this)
        this.once('end', () => inner.clients.delete(this))
      }
      // A FATAL error (backend terminated, server shutting down) ends the session; the server closes
      // the socket just after. Until that close arrives pg still calls the client queryable, so one
      // released meanwhile went back to the idle list and its next borrower's statement was sent on
      // a dead session. Marked unqueryable at once, pg-pool destroys it on release instead.
      const connection = (this as unknown as { connection?: { on?(event: string, listener: (msg: { severity?: string }) => void): unknown } }).connection
      connection?.on?.('errorMessage', (msg) => {
        if (msg.severity === 'FATAL' || msg.severity === 'PANIC') (this as unknown as { _queryable: boolean })._queryable = false
      })
    }
  }
  Object.defineProperty(Tracked, 'name', { value: Base.name })
  return Tracked
}

/** True for a client pg would refuse to send anything on (its connection failed or is ending). */
function isDead(client: pg.PoolClient): boolean {
  const state = client as unknown as { _queryable?: boolean; _ending?: boolean }
  return state._queryable === false || state._ending === true
}

/** Set on a lane's warm session until its opening checkout is released (that checkout emits no events). */
const WARM_UP = Symbol('pg-failover-pool warm-up')
type WarmMarked = pg.ClientBase & { [WARM_UP]?: boolean }

/** Set on a client while a `pool.query` statement of ours runs on it (never on a checked-out client). */
const RUNNING_STATEMENT = Symbol('pg-failover-pool running statement')
type Marked = pg.ClientBase & { [RUNNING_STATEMENT]?: boolean }

/** Marks `client` as running a `pool.query` statement: a cut with an answer grace lets it answer (see {@link Lane.cut}). */
export function statementSent(client: pg.ClientBase): void {
  ;(client as Marked)[RUNNING_STATEMENT] = true
}

/** The statement marked by {@link statementSent} has answered (or failed). */
export function statementEnded(client: pg.ClientBase): void {
  ;(client as Marked)[RUNNING_STATEMENT] = false
}
