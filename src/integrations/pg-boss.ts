/**
 * pg-boss on a FailoverPool: {@link pgBossDb} makes the object pg-boss takes as its `db` option.
 * No runtime import of pg-boss (an optional peer): the types here are structural, and match
 * pg-boss 10's `Db` and pg-boss 12's `IDatabase`, `TransactionHandle` and `ListenHandle`.
 */
import type { PoolClient, QueryResult } from 'pg'
import { withDeadline } from '../clock.js'
import type { FailoverPool } from '../failover-pool.js'
import { listenOnPrimary } from './pg-boss-listen.js'

/** Options of {@link pgBossDb}. */
export interface PgBossDbOptions {
  /**
   * Called with every failure of the LISTEN connection (the session was lost, a reconnect or a
   * heartbeat failed). Each is followed by a reconnect attempt; nothing is thrown. Default: ignored.
   */
  onError?: (err: Error) => void
  /**
   * How often the LISTEN session checks, on the session itself, that it still listens (ms, default
   * 10 000, as pg-boss's own listener; 0 turns it off). A check that fails or takes longer than
   * `listenHeartbeatTimeoutMs` drops the session and listens again on the primary.
   */
  listenHeartbeatIntervalMs?: number
  /** Deadline of one heartbeat check (ms, default 5 000). */
  listenHeartbeatTimeoutMs?: number
  /** Longest pause between reconnect attempts of the LISTEN session (ms, default 30 000). */
  maxListenRetryDelayMs?: number
}

/**
 * Runs pg-boss statements. `executeSql` resolves to pg's result; for a multi-statement text sent
 * without values (simple protocol) pg resolves to an array of results, exactly as with pg-boss's
 * own pool (pg-boss 10 ignores those results, pg-boss 12 unwraps arrays).
 */
export interface PgBossExecutor {
  /** Runs `text` with `values` (none: the simple query protocol, so several statements may be sent at once). */
  executeSql(text: string, values?: unknown[]): Promise<QueryResult>
}

/** What {@link PgBossDb.listen} resolves to; pg-boss 12's `ListenHandle`. */
export interface PgBossListenHandle {
  /** Stops listening and closes the session; no reconnect follows. Idempotent. */
  close(): Promise<void>
}

/** An open transaction on one checked-out connection; pg-boss 12's `TransactionHandle`. */
export interface PgBossTransaction {
  /** Runs statements inside the transaction (pass it as the `db` option of any pg-boss call). Rejects once settled. */
  readonly db: PgBossExecutor
  /** COMMIT and release the connection. Rejects when COMMIT fails (the connection is then discarded) or the transaction is already settled. */
  commit(): Promise<void>
  /** ROLLBACK and release the connection; never rejects, idempotent, bounded (a ROLLBACK that cannot get through drops the connection). */
  rollback(): Promise<void>
}

/** The pool's size and use, as pg-boss 12's registry records it (`PoolCounts`). */
export interface PgBossPoolCounts {
  /** `max` of the pool (per endpoint; pg's default 10 when unset). */
  max: number
  /** Connections open to the primary. */
  total: number
  /** Of those, idle ones. */
  idle: number
  /** Requests waiting for a connection or for a primary. */
  waiting: number
}

/** The object to pass as pg-boss's `db` option (every pg-boss version from 10 on); see the module comment for who calls what. */
export interface PgBossDb extends PgBossExecutor {
  /**
   * pg-boss 12 (`useListenNotify: true`): LISTENs on `channel` on a dedicated session on the
   * verified primary, outside the pool's `max`, and calls `onReconnect` after every successful
   * LISTEN (the first included) so pg-boss fetches what it may have missed. When the session is
   * lost — the pool left the node (failover, demotion: it cuts the session), the server ended it,
   * a heartbeat failed — it LISTENs again on the primary the pool verifies next.
   * @throws (rejects) when the first LISTEN fails: pg-boss then polls only.
   */
  listen(channel: string, onNotification: (payload: string) => void, onReconnect: () => void): Promise<PgBossListenHandle>
  /**
   * pg-boss 12 transactional workers: BEGIN on one connection checked out on the verified primary;
   * it never switches nodes, so a failover while it is open fails its next statement (a lost COMMIT
   * is outcome-unknown: `isOutcomeUnknownError`).
   */
  beginTransaction(): Promise<PgBossTransaction>
  /** Runs `fn` in a transaction ({@link beginTransaction}): COMMIT when it resolves, ROLLBACK (and rethrow) when it throws. */
  withTransaction<T>(fn: (db: PgBossExecutor) => Promise<T>): Promise<T>
  /** pg-boss 12 registry heartbeat: the pool's size and use. */
  poolCounts(): PgBossPoolCounts
}

const DEFAULT_HEARTBEAT_INTERVAL_MS = 10_000
const DEFAULT_HEARTBEAT_TIMEOUT_MS = 5_000
const DEFAULT_MAX_RETRY_DELAY_MS = 30_000
/** As pg-boss's own: how long rollback() waits for its ROLLBACK before dropping the connection. */
const ROLLBACK_TIMEOUT_MS = 5_000

/**
 * pg-boss's `db` option over a FailoverPool:
 *
 * ```ts
 * const boss = new PgBoss({ db: pgBossDb(pool) })
 * boss.on('error', console.error)
 * await boss.start()
 * // ... await boss.stop() before pool.end(): pg-boss never opens or closes a db it was given.
 * ```
 *
 * Every statement runs on the verified primary (through `pool.writer`, so also with
 * `routeReads: 'auto'`: pg-boss reads its own writes), waiting for a primary during a failover;
 * a statement that provably did not run is retried, one lost mid-flight fails with
 * `OutcomeUnknownError`. What pg-boss then does is pg-boss's: a `send()` rejects (the job may or
 * may not exist); `fetch()` swallows it and polls again (jobs it may have claimed are failed by
 * timeout after `expireIn` and retried within their retry limit); pg-boss 10's worker does not
 * await its `complete()`/`fail()` (`manager.js`, `watch()`), so a completion lost mid-flight is an
 * unhandled rejection there, as it is on a plain pg.Pool.
 *
 * What pg-boss calls on `db`, by version (read in the published sources):
 *
 * | member | pg-boss 10.x (and 11.x) | pg-boss 12.x (read: 12.38.0) |
 * |---|---|---|
 * | `executeSql(text, values)` | every statement (`manager.js`, `boss.js`, `contractor.js`, `timekeeper.js`), including multi-statement `BEGIN; …; COMMIT;` strings (`plans.locked()`) with `values` undefined | the same (`bam.js` calls `executeSql(text)` on a db it did not make) |
 * | `listen(channel, onNotification, onReconnect)` | never | `Notifier.start()` when `useListenNotify: true`; without it pg-boss warns and polls only |
 * | `beginTransaction()` | never | transactional workers, `work(name, { transactional: true }, …)` (asserted at `work()`) |
 * | `withTransaction(fn)` | never | only on pg-boss's own pool (`_pgbdb`), never on a given db; here for your own use |
 * | `poolCounts()` | never | the instance registry's heartbeat (`registrar.js`) |
 * | `setSessionStatements(statements)` | never | only with a `TestClock`; not provided (pg-boss's `start()` then refuses a TestClock with its own message) |
 *
 * With a db it did not make, pg-boss 12 runs `upsert()` (and its CockroachDB-only multi-statement
 * paths) statement by statement, without a transaction; where that matters, run it in one:
 * `db.withTransaction((tx) => boss.upsert(name, data, { db: tx }))`. pg-boss forwards no event of
 * such a db: LISTEN failures reach {@link PgBossDbOptions.onError}, the pool's own through the pool.
 */
export function pgBossDb(pool: FailoverPool, options: PgBossDbOptions = {}): PgBossDb {
  const writer = pool.writer
  const onError = options.onError ?? (() => undefined)
  const heartbeatIntervalMs = options.listenHeartbeatIntervalMs ?? DEFAULT_HEARTBEAT_INTERVAL_MS
  const heartbeatTimeoutMs = options.listenHeartbeatTimeoutMs ?? DEFAULT_HEARTBEAT_TIMEOUT_MS
  const maxRetryDelayMs = options.maxListenRetryDelayMs ?? DEFAULT_MAX_RETRY_DELAY_MS

  // No values: pool.query(text) keeps pg's simple protocol (multi-statement strings work).
  const executeSql = (text: string, values?: unknown[]): Promise<QueryResult> => (values === undefined ? writer.query(text) : writer.query(text, values))

  const beginTransaction = async (): Promise<PgBossTransaction> => {
    const client = await writer.connect()
    return openTransaction(client)
  }

  return {
    executeSql,
    listen: (channel, onNotification, onReconnect) =>
      listenOnPrimary(pool, channel, onNotification, onReconnect, { onError, heartbeatIntervalMs, heartbeatTimeoutMs, maxRetryDelayMs }),
    beginTransaction,
    async withTransaction<T>(fn: (db: PgBossExecutor) => Promise<T>): Promise<T> {
      const tx = await beginTransaction()
      let result: T
      try {
        result = await fn(tx.db)
      } catch (err) {
        await tx.rollback()
        throw err
      }
      await tx.commit()
      return result
    },
    poolCounts: () => ({
      max: pool.options.max ?? 10,
      total: pool.totalCount,
      idle: pool.idleCount,
      waiting: pool.waitingCount,
    }),
  }
}

/** BEGIN on `client` and the handle that owns it until it is released, exactly once. */
async function openTransaction(client: PoolClient): Promise<PgBossTransaction> {
  let released = false
  // Why the connection died, when it died on its own: later calls report it rather than "settled".
  let connectionError: Error | null = null
  const release = (err?: Error): void => {
    if (released) return
    released = true
    client.removeListener('error', onClientError)
    // With an error the pool discards the connection: it may be mid-transaction or broken.
    client.release(err)
  }
  const onClientError = (err: Error): void => {
    connectionError ??= err
    release(err)
  }
  const settled = (): Error => connectionError ?? new Error('Transaction is already settled')
  client.on('error', onClientError)
  try {
    await client.query('BEGIN')
  } catch (err) {
    release(err as Error)
    throw err
  }
  return {
    db: {
      // A late statement (a handler past its deadline) must never land on a client handed to someone else.
      executeSql: (text, values) => (released ? Promise.reject(settled()) : values === undefined ? client.query(text) : client.query(text, values)),
    },
    async commit() {
      if (released) throw settled()
      try {
        await client.query('COMMIT')
      } catch (err) {
        release(err as Error)
        throw err
      }
      release()
    },
    async rollback() {
      if (released) return
      try {
        await withDeadline(client.query('ROLLBACK'), ROLLBACK_TIMEOUT_MS, () => new Error(`ROLLBACK did not complete within ${ROLLBACK_TIMEOUT_MS} ms`))
        release()
      } catch (err) {
        release(err as Error)
      }
    },
  }
}
