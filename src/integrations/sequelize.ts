/**
 * Sequelize 6 on a FailoverPool.
 *
 * Sequelize takes no pool: it pools `Client` objects of the module given as `dialectModule`, one
 * long-lived session each (`new Client(config)`, `connect(cb)`, callback `query`, `end(cb)`; see
 * `lib/dialects/postgres/connection-manager.js`). {@link sequelizeDialect} hands it a module whose
 * `Client` is a `pg.Client` that ignores the address Sequelize gives it and connects through
 * `pool.connectClient`: to the verified primary, or to a replica for Sequelize's `replication.read`
 * connections. The pool ties every such session to its node and cuts it when it leaves the node
 * (failover, demotion, split brain); pg then emits `'error'` and Sequelize destroys the connection
 * and creates a new one, which the pool points at the new primary. The Sequelize instance is never
 * re-created.
 *
 * Sequelize itself is not imported: it is an optional peer of this package.
 */
import pg from 'pg'
import { jitter, withDeadline } from '../clock.js'
import { classifyError } from '../error-policy.js'
import { ConfigError, isFailoverPoolError } from '../errors.js'
import type { FailoverPool } from '../failover-pool.js'
import { watchStatements } from '../surface/outcome.js'
import { isSafeToRunAgain } from '../surface/statement-kind.js'

/**
 * The host name that sends a Sequelize connection to the verified primary: use it for
 * `replication.write` (or as the top-level `host`). Any host other than
 * {@link SEQUELIZE_REPLICA_HOST} does the same; this one says so.
 */
export const SEQUELIZE_PRIMARY_HOST = 'pgfp-primary'

/**
 * The host name that sends a Sequelize connection to a replica, chosen as `pool.reader` chooses
 * (`readStrategy`, lag limits) and falling back by `readFallback`: use it in `replication.read`,
 * or as the top-level `host` of a read-only Sequelize instance.
 */
export const SEQUELIZE_REPLICA_HOST = 'pgfp-replica'

/** Options of {@link sequelizeDialect}. */
export interface SequelizeDialectOptions {
  /**
   * How long, in ms, one new Sequelize connection keeps retrying when the node the pool chose
   * fails while it connects (refused, reset, timed out, "starting up": the pool has not noticed a
   * failover yet), with a backoff from 25 ms to 1 s between attempts. Nothing has run on such a
   * connection, so a retry is always safe; without it Sequelize would fail the query that asked for
   * the connection. Default 30000 (the pool's default `failoverTimeoutMs`); 0 = no retry (use it
   * with the pool's fail-fast mode, `failoverTimeoutMs: 0`). Configuration errors (authentication,
   * unknown database), `NoPrimaryError` and `NoReplicaError` are never retried.
   */
  connectRetryMs?: number
}

/** The module {@link sequelizeDialect} returns: pass it as Sequelize's `dialectModule`. */
export interface SequelizeDialectModule {
  /**
   * What Sequelize constructs for each connection: a `pg.Client` of the application's `pg` whose
   * `connect` (callback and promise forms) goes through the pool instead of to the configured
   * host. Everything else is pg's own.
   */
  readonly Client: typeof pg.Client
  /** pg's `types` (Sequelize reads `getTypeParser` and `arrayParser`). */
  readonly types: typeof pg.types
}

/** Sequelize's `replication` block for a FailoverPool; see {@link sequelizeReplication}. */
export interface SequelizeReplicationOptions {
  /** The connection options of the write pool: its host is {@link SEQUELIZE_PRIMARY_HOST}. */
  write: { host: string }
  /** The connection options of the read pool: one entry, host {@link SEQUELIZE_REPLICA_HOST}. */
  read: Array<{ host: string }>
}

/**
 * Sequelize's `replication` option for a Sequelize instance on {@link sequelizeDialect}: reads
 * (`SELECT` outside a transaction, without `useMaster`) go to replicas, everything else to the
 * primary. One read entry is enough: the pool picks a replica for every read connection.
 *
 * ```ts
 * new Sequelize({ dialect: 'postgres', dialectModule: sequelizeDialect(pool), replication: sequelizeReplication() })
 * ```
 */
export function sequelizeReplication(): SequelizeReplicationOptions {
  return { write: { host: SEQUELIZE_PRIMARY_HOST }, read: [{ host: SEQUELIZE_REPLICA_HOST }] }
}

const DEFAULT_CONNECT_RETRY_MS = 30_000
const FIRST_BACKOFF_MS = 25
const MAX_BACKOFF_MS = 1_000
/** How long a failed attempt's socket may take to close before the client is given up instead of reused. */
const SOCKET_CLOSE_TIMEOUT_MS = 5_000

/** pg.Client's own state that a retry resets (pg >= 8.11; these names have not changed since 8.0). */
interface ClientInternals {
  connection: pg.Connection
  _connecting: boolean
  _connected: boolean
  _connectionError: boolean
  _ended: boolean
  _ending: boolean
  _queryable: boolean
}

type ConnectCallback = (err: Error | null, client?: pg.Client) => void
type Listener = (...args: unknown[]) => void

/**
 * A Sequelize `dialectModule` over `pool` (a FailoverPool the application created; it stays
 * the application's to end):
 *
 * ```ts
 * const sequelize = new Sequelize({
 *   dialect: 'postgres',
 *   dialectModule: sequelizeDialect(pool),
 *   replication: sequelizeReplication(), // optional: SELECTs to replicas
 *   pool: { max: 10 },                   // Sequelize's own pool of sessions
 * })
 * ```
 *
 * - **Where a connection goes.** Sequelize's `host` and `port` are ignored: a connection made for
 *   the host {@link SEQUELIZE_REPLICA_HOST} goes to a replica, any other to the verified primary
 *   (waiting for one up to the pool's `failoverTimeoutMs`). The node is chosen when the connection
 *   is made and kept for its life (bounded by Sequelize's `pool.idle`, default 10 s idle, and
 *   `pool.maxUses`): a read connection made while no replica is usable stays on the primary it
 *   fell back to. User, password, database and TLS settings are the endpoint's (Sequelize's are
 *   used where the endpoint has none); the other session settings (`dialectOptions`:
 *   `application_name`, `statement_timeout`, ...) are Sequelize's. TCP keepalive follows
 *   Sequelize's `keepAlive`, else the pool's, else on (first probe after 10 s).
 * - **Failover.** A session is cut when the pool leaves its node, so it can never acknowledge a
 *   write afterwards; Sequelize then replaces it with one on the new primary. A statement sent
 *   before its connection broke fails with pg's error marked outcome-unknown:
 *   `isOutcomeUnknownError(err)` answers true for Sequelize's error wrapping it. A new connection
 *   that the old node refuses is retried (see {@link SequelizeDialectOptions.connectRetryMs}).
 * - `native: true` is not supported (reading the module's `native` throws a ConfigError).
 *
 * @throws ConfigError when `connectRetryMs` is not a number >= 0.
 */
export function sequelizeDialect(pool: FailoverPool, options: SequelizeDialectOptions = {}): SequelizeDialectModule {
  const retryMs = options.connectRetryMs ?? DEFAULT_CONNECT_RETRY_MS
  if (typeof retryMs !== 'number' || !(retryMs >= 0)) throw new ConfigError('connectRetryMs', retryMs, 'must be a number of ms >= 0')

  class FailoverPoolClient extends pg.Client {
    readonly #role: 'write' | 'read'
    /** True while pool.connectClient runs for us: the connect() it calls is pg's own. */
    #viaPool = false
    /** True during the whole connect through the pool, retries included: pg's 'end' of a failed attempt is held. */
    #connecting = false
    #endHeld = false
    /** Attempts that opened a socket, and the end of the latest one's socket. */
    #attempts = 0
    #socketClosed: Promise<void> = Promise.resolve()
    /** Listeners the application (Sequelize) put on the connection before the first attempt. */
    #appListeners: Array<[string | symbol, Listener[]]> | null = null

    constructor(config?: string | pg.ClientConfig) {
      const own: pg.ClientConfig = typeof config === 'string' ? { connectionString: config } : (config ?? {})
      // TCP keepalive: Sequelize's, else the pool's, else on (the connection keeps what it is made with).
      super({
        ...own,
        keepAlive: own.keepAlive ?? pool.options.keepAlive ?? true,
        keepAliveInitialDelayMillis: own.keepAliveInitialDelayMillis ?? pool.options.keepAliveInitialDelayMillis ?? 10_000,
      })
      this.#role = own.host === SEQUELIZE_REPLICA_HOST ? 'read' : 'write'
      // A statement sent before the connection broke: its error is marked outcome-unknown (a read: safe to retry).
      watchStatements(this as unknown as pg.PoolClient, isSafeToRunAgain)
    }

    override connect(): Promise<pg.Client>
    override connect(callback: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): void
    override connect(callback?: ((err: Error) => void) | ((err: null, c: pg.Client) => void)): Promise<pg.Client> | void {
      if (this.#viaPool) {
        // pool.connectClient has pointed this client at a node (with a fresh socket): open it there.
        this.#beginAttempt()
        return callback ? super.connect(callback) : super.connect()
      }
      const cb = callback as ConnectCallback | undefined
      const internals = this as unknown as ClientInternals
      if (this.#connecting || internals._connecting || internals._connected) {
        // A second connect gets pg's answer; the first one and its socket are left alone.
        const err = new Error('Client has already been connected. You cannot reuse a client.')
        if (!cb) return Promise.reject(err)
        process.nextTick(() => cb(err))
        return
      }
      const connected = this.#connectThroughPool()
      if (!cb) return connected.then(() => this)
      connected.then(
        () => cb(null, this),
        (err: Error) => cb(err),
      )
    }

    /** Holds pg's 'end' of an attempt that failed while a retry may follow (Sequelize rejects a connect on 'end'). */
    override emit(event: string | symbol, ...args: unknown[]): boolean {
      if (event === 'end' && this.#connecting) {
        this.#endHeld = true
        return false
      }
      return super.emit(event, ...args)
    }

    async #connectThroughPool(): Promise<void> {
      const internals = this as unknown as ClientInternals
      const deadline = performance.now() + retryMs
      this.#connecting = true
      try {
        for (let attempt = 0; ; attempt++) {
          if (internals._ending) throw new Error('Client was ended while connecting')
          this.#endHeld = false
          this.#keepAppListenersOnly()
          this.#viaPool = true
          try {
            await pool.connectClient(this, this.#role)
            break
          } catch (err) {
            if (!retryable(err) || internals._ending || performance.now() >= deadline) throw err
            if (!(await this.#socketGone())) throw err
            await sleep(Math.min(jitter(Math.min(MAX_BACKOFF_MS, FIRST_BACKOFF_MS * 2 ** attempt)), Math.max(0, deadline - performance.now())))
          } finally {
            this.#viaPool = false
          }
        }
      } catch (err) {
        this.#connecting = false
        // pg's 'end' after a failed connect, in order: after Sequelize's connect callback.
        if (this.#endHeld) process.nextTick(() => this.emit('end'))
        throw err
      }
      this.#connecting = false
      if (internals._ending) {
        // end() was called while the client waited for a node: it was a no-op then; close it now.
        await this.end().catch(() => undefined)
        throw new Error('Client was ended while connecting')
      }
    }

    /**
     * Before each attempt, the connection carries only the listeners Sequelize put on the first one
     * (`parameterStatus`): pool.connectClient moves them to the fresh connection it builds, and a
     * failed attempt's connection also holds pg's own, which must not follow.
     */
    #keepAppListenersOnly(): void {
      const connection = this.connection
      this.#appListeners ??= connection
        .eventNames()
        .filter((event) => event !== 'newListener')
        .map((event) => [event, connection.listeners(event) as Listener[]])
      if (this.#attempts === 0) return
      for (const event of connection.eventNames()) if (event !== 'newListener') connection.removeAllListeners(event)
      for (const [event, listeners] of this.#appListeners) for (const listener of listeners) connection.on(event, listener)
    }

    /** An attempt opens its socket: a retry first resets what pg's failed connect left (pg refuses to connect a client twice). */
    #beginAttempt(): void {
      const internals = this as unknown as ClientInternals
      if (this.#attempts > 0) {
        internals._connecting = false
        internals._connectionError = false
        internals._ended = false
        internals._queryable = true
      }
      const connection = this.connection
      this.#socketClosed = new Promise((resolve) => connection.once('end', () => resolve()))
      this.#attempts++
    }

    /** After a failed attempt: its socket is closed and pg is done with it (false if it would not close). */
    async #socketGone(): Promise<boolean> {
      if (this.#attempts === 0) return true
      this.connection.stream.destroy()
      return withDeadline(this.#socketClosed, SOCKET_CLOSE_TIMEOUT_MS, () => new Error('the socket did not close')).then(
        () => true,
        () => false,
      )
    }
  }
  Object.defineProperty(FailoverPoolClient, 'name', { value: 'FailoverPoolClient' })

  const dialectModule: SequelizeDialectModule = { Client: FailoverPoolClient, types: pg.types }
  Object.defineProperty(dialectModule, 'native', {
    enumerable: false,
    get(): never {
      throw new ConfigError('native', true, "pg-native's client cannot be pointed at the verified primary; leave Sequelize's `native` off")
    },
  })
  return dialectModule
}

/** A connect that failed on the node (nothing ran): another attempt may go to the node the pool finds next. */
function retryable(err: unknown): boolean {
  return !isFailoverPoolError(err) && classifyError(err) === 'connection'
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}
