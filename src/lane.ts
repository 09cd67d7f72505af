import pg from 'pg'
import type { PoolClient, PoolConfig, PoolOptions } from 'pg'

/** pg.Pool's events, which a facade re-emits with pg.Pool's arguments. */
export type PoolEventName = 'connect' | 'acquire' | 'release' | 'remove' | 'error'

/** Receives every event of a lane's pools, including retired ones still draining. */
export type LaneEventSink = (event: PoolEventName, args: unknown[]) => void

/** Callback shape of pg.Pool#connect. */
export type AcquireCallback = (err: Error | undefined, client?: PoolClient, release?: (err?: Error | boolean) => void) => void

/** Raised to requests waiting for a client of a lane that was retired: they never reached the server. */
export class LaneRetiredError extends Error {
  constructor(endpoint: string) {
    super(`the pool of ${endpoint} was retired while the request waited for a connection`)
    this.name = 'LaneRetiredError'
  }
}

interface PendingAcquire {
  abort(err: Error): void
}

/**
 * One endpoint's pg.Pool for one kind of traffic (writes or reads), with every pg.Pool option the
 * user gave. Separate lanes keep pg.Pool's counts and events meaningful per facade (`pool`,
 * `pool.reader`). Retiring swaps in a fresh pg.Pool and ends the old one through its public API.
 */
export class Lane {
  private pool: pg.Pool
  private readonly draining = new Set<pg.Pool>()
  private readonly pendingAcquires = new Set<PendingAcquire>()
  /** Clients running one of our own `pool.query` statements (they have our error listener). */
  private readonly running = new Set<PoolClient>()

  constructor(
    private readonly endpointName: string,
    private readonly config: PoolConfig,
    private readonly sink: LaneEventSink,
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
    let settled = false
    const pending: PendingAcquire = {
      abort: (err) => {
        if (settled) return
        settled = true
        callback(err)
      },
    }
    this.pendingAcquires.add(pending)
    this.pool.connect((err, client, release) => {
      this.pendingAcquires.delete(pending)
      if (settled) {
        if (client) release(err)
        return
      }
      settled = true
      callback(err, client, release)
    })
  }

  /** Marks a client as running one of our statements, so a hard retire may cut it loose. */
  track(client: PoolClient): void {
    this.running.add(client)
  }
  untrack(client: PoolClient): void {
    this.running.delete(client)
  }

  /**
   * Replaces the pg.Pool with a fresh one: idle clients close now, checked-out clients close when
   * released (never switched under their user), waiting requests are told to look elsewhere. With
   * `cutRunning`, statements of ours still running there (on a node that stopped answering) are cut
   * off so their callers learn the outcome is unknown instead of hanging.
   */
  retire(cutRunning = false): void {
    const old = this.pool
    this.pool = this.createPool()
    this.draining.add(old)
    old.end().then(
      () => this.draining.delete(old),
      () => this.draining.delete(old),
    )
    for (const pending of [...this.pendingAcquires]) pending.abort(new LaneRetiredError(this.endpointName))
    this.pendingAcquires.clear()
    if (cutRunning) {
      for (const client of this.running) destroySocket(client)
      this.running.clear()
    }
  }

  /** Ends every pool, waiting for checked-out clients as pg.Pool#end does. */
  async end(): Promise<void> {
    for (const pending of [...this.pendingAcquires]) pending.abort(new LaneRetiredError(this.endpointName))
    await Promise.all([this.pool.end(), ...[...this.draining].map((p) => waitForEnd(p))])
  }

  private createPool(): pg.Pool {
    const options: PoolConfig = { ...this.config }
    if (this.config.password !== undefined) options.password = this.config.password
    const pool = new pg.Pool(options)
    for (const event of ['connect', 'acquire', 'release', 'remove', 'error'] as const) {
      pool.on(event, (...args: unknown[]) => this.sink(event, args))
    }
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

/** Destroys a client's socket without waiting for the server (which may be frozen or gone). */
export function destroySocket(client: pg.ClientBase): void {
  ;(client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream?.destroy()
}
