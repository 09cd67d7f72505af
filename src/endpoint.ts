import pg from 'pg'
import type { ClientConfig, PoolClient, PoolConfig, PoolOptions } from 'pg'
import type { Clock } from './clock.js'
import type { ResolvedEndpoint } from './endpoint-config.js'
import { hidePassword } from './endpoint-config.js'
import { type ProbeResult, probeRole } from './role-probe.js'

/** pg.Pool's events, which the facade re-emits with pg.Pool's arguments. */
export type PoolEventName = 'connect' | 'acquire' | 'release' | 'remove' | 'error'

/** Receives every event of every inner pool, including retired ones still draining. */
export type PoolEventSink = (endpoint: Endpoint, event: PoolEventName, args: unknown[]) => void

/** Callback shape of pg.Pool#connect. */
export type AcquireCallback = (err: Error | undefined, client?: PoolClient, release?: (err?: Error | boolean) => void) => void

/** Raised to requests waiting for a client of a pool that was retired: they never reached the server. */
export class EndpointRetiredError extends Error {
  constructor(endpoint: string) {
    super(`endpoint ${endpoint} was retired while the request waited for a connection`)
    this.name = 'EndpointRetiredError'
  }
}

interface PendingAcquire {
  abort(err: Error): void
}

/**
 * One PostgreSQL node: its own pg.Pool (with every pg.Pool option the user gave), a dedicated
 * monitor session for role probes, and what the last probe found. It reports; it never decides
 * topology (the facade does).
 */
export class Endpoint {
  readonly name: string
  readonly host: string
  readonly port: number
  /** Last successful probe, or null before the first one. */
  lastProbe: ProbeResult | null = null
  /** When the last probe finished (clock ms), successful or not. */
  lastProbeAt: number | null = null
  /** Wall-clock time (Date.now()) of the last probe, for status(). */
  lastProbeWallTime: number | null = null
  /** The last connection-class error seen on this endpoint, cleared by a successful probe. */
  lastError: Error | null = null

  private pool: pg.Pool
  private readonly draining = new Set<pg.Pool>()
  private readonly pendingAcquires = new Set<PendingAcquire>()
  private readonly clientConfig: PoolConfig
  private monitor: pg.Client | null = null
  private monitorConnecting: Promise<pg.Client> | null = null

  constructor(
    resolved: ResolvedEndpoint,
    sharedConfig: PoolConfig,
    private readonly sink: PoolEventSink,
    private readonly clock: Clock,
  ) {
    this.name = resolved.name
    this.host = resolved.host
    this.port = resolved.port
    this.clientConfig = { ...sharedConfig, ...resolved.config }
    const password = 'password' in resolved.config ? resolved.config.password : sharedConfig.password
    if (password !== undefined) hidePassword(this.clientConfig, password)
    this.pool = this.createPool()
  }

  /** The current inner pool's options (what pg.Pool#options would show for this node). */
  get options(): PoolOptions {
    return this.pool.options
  }

  /** Clients held by this endpoint across its current and draining pools. */
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

  /**
   * Checks a client out of the current pool. If the pool is retired before a client arrives, the
   * callback gets an {@link EndpointRetiredError} (the request never reached the server) and the
   * late client goes straight back.
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

  /**
   * Replaces the inner pool with a fresh one: idle clients of the old pool close now, checked-out
   * clients close when released (never switched under their user), and waiting requests are told
   * to look elsewhere. Used when the node failed or was demoted.
   */
  retire(): void {
    const old = this.pool
    this.pool = this.createPool()
    this.draining.add(old)
    old.end().then(
      () => this.draining.delete(old),
      () => this.draining.delete(old),
    )
    for (const pending of [...this.pendingAcquires]) pending.abort(new EndpointRetiredError(this.name))
    this.pendingAcquires.clear()
    this.closeMonitor()
  }

  /**
   * One role probe on the dedicated monitor session, bounded by `timeoutMs` (connect included).
   * On failure the session is closed so the next probe reconnects.
   */
  async probe(timeoutMs: number): Promise<ProbeResult> {
    let timer: ReturnType<Clock['setTimeout']> | undefined
    const deadline = new Promise<never>((_, reject) => {
      timer = this.clock.setTimeout(() => {
        const err = Object.assign(new Error(`role probe of ${this.name} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })
        reject(err)
      }, timeoutMs)
    })
    try {
      const result = await Promise.race([this.monitorClient().then((c) => probeRole(c, () => this.clock.now())), deadline])
      this.lastProbe = result
      this.lastError = null
      return result
    } catch (err) {
      this.lastError = err instanceof Error ? err : new Error(String(err))
      this.closeMonitor()
      throw this.lastError
    } finally {
      this.lastProbeAt = this.clock.now()
      this.lastProbeWallTime = Date.now()
      if (timer !== undefined) this.clock.clearTimeout(timer)
    }
  }

  /** A standalone client with this endpoint's settings, not counted in the pool (for monitoring). */
  createClient(overrides: ClientConfig = {}): pg.Client {
    const config: ClientConfig = { ...this.clientConfig, keepAlive: true, ...overrides }
    if (this.clientConfig.password !== undefined) hidePassword(config, this.clientConfig.password)
    const client = new pg.Client(config)
    // A monitor session's error is handled where it is used; without a listener it would crash the process.
    client.on('error', () => undefined)
    return client
  }

  /** Closes every pool (waiting for checked-out clients, as pg.Pool#end does) and the monitor session. */
  async end(): Promise<void> {
    this.closeMonitor()
    for (const pending of [...this.pendingAcquires]) pending.abort(new EndpointRetiredError(this.name))
    await Promise.all([this.pool.end(), ...[...this.draining].map((p) => (p.ended ? undefined : waitForEnd(p)))])
  }

  private monitorClient(): Promise<pg.Client> {
    if (this.monitor) return Promise.resolve(this.monitor)
    if (this.monitorConnecting) return this.monitorConnecting
    const client = this.createClient({ application_name: monitorApplicationName(this.clientConfig) })
    this.monitorConnecting = client.connect().then(
      () => {
        this.monitorConnecting = null
        this.monitor = client
        unrefClient(client)
        client.once('end', () => {
          if (this.monitor === client) this.monitor = null
        })
        return client
      },
      (err: unknown) => {
        this.monitorConnecting = null
        client.end().catch(() => undefined)
        throw err
      },
    )
    return this.monitorConnecting
  }

  private closeMonitor(): void {
    const pending = this.monitorConnecting
    this.monitorConnecting = null
    pending?.then((c) => destroyClient(c), () => undefined)
    if (this.monitor) destroyClient(this.monitor)
    this.monitor = null
  }

  private createPool(): pg.Pool {
    const pool = new pg.Pool({ ...this.clientConfig, ...(this.clientConfig.password !== undefined ? { password: this.clientConfig.password } : {}) })
    for (const event of ['connect', 'acquire', 'release', 'remove', 'error'] as const) {
      pool.on(event, (...args: unknown[]) => this.sink(this, event, args))
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

/**
 * Lets the process exit while this client's socket is open: background sessions (probes, watches)
 * must never keep an application alive on their own; user requests keep it alive instead.
 */
export function unrefClient(client: pg.Client): void {
  ;(client as unknown as { unref?: () => void }).unref?.()
}

/** Ends a client without waiting for the server (which may be frozen or gone). */
export function destroyClient(client: pg.Client): void {
  const stream = (client as unknown as { connection?: { stream?: { destroy(): void } } }).connection?.stream
  client.end().catch(() => undefined)
  stream?.destroy()
}

function monitorApplicationName(config: ClientConfig): string {
  const base = config.application_name ?? 'pg-failover-pool'
  return `${base} monitor`.slice(0, 63)
}
