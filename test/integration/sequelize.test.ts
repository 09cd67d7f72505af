/**
 * Sequelize 6 on a FailoverPool through `sequelizeDialect(pool)`, against real clusters, with
 * Sequelize's own API: a model from `sequelize.define`, `Model.create`, `findAll`, transactions.
 */
import pg from 'pg'
import { BaseError, DataTypes, type Model, type ModelStatic, QueryTypes, Sequelize } from 'sequelize'
import { describe, expect, it } from 'vitest'
import { ConfigError, type FailoverPool, isOutcomeUnknownError, isSafeToRetryError } from '../../src/index.js'
import { SEQUELIZE_REPLICA_HOST, sequelizeDialect, sequelizeReplication } from '../../src/integrations/sequelize.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { replicasKnown, useResources } from '../support/pools.js'
import { nextEvent, waitUntil } from '../support/wait.js'
import { createHoldTriggers, heldStatements, HOLD_LOCK, holdLock } from '../support/writes-in-flight.js'

const res = useResources()

/** The application_name of Sequelize's sessions, to count them on a server. */
const APP = 'pgfp-sequelize'

/** A Sequelize instance on `pool`, closed at teardown (before the pool ends). */
function sequelizeOn(pool: FailoverPool, options: { replication?: boolean; max?: number } = {}): Sequelize {
  const sequelize = new Sequelize({
    dialect: 'postgres',
    dialectModule: sequelizeDialect(pool),
    ...(options.replication ? { replication: sequelizeReplication() } : {}),
    dialectOptions: { application_name: APP },
    pool: { max: options.max ?? 5, acquire: 50_000 },
    logging: false,
  })
  res.defer(() => sequelize.close())
  return sequelize
}

/**
 * The `entries` model and its table. A row with note 'held in insert' waits in its INSERT for
 * the advisory lock a test holds ({@link holdLock}), so that a plain `Entry.create` is certainly
 * still running on the server when a fault strikes, however slow the machine.
 */
async function defineEntries(sequelize: Sequelize): Promise<ModelStatic<Model>> {
  const Entry = sequelize.define('Entry', { id: { type: DataTypes.INTEGER, primaryKey: true }, port: DataTypes.INTEGER, note: DataTypes.STRING }, { tableName: 'entries', timestamps: false })
  await Entry.sync()
  await createHoldTriggers(sequelize, 'entries')
  return Entry
}

/** Sequelize's statements waiting for a lock: its held creates (see {@link defineEntries}). */
const HELD = `application_name = '${APP}'`

/** Sequelize's sessions on `node`. */
async function sessions(cluster: Cluster, node: ClusterNode): Promise<number> {
  const rows = await cluster.sql<{ n: number }>(node, 'SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = $1', [APP])
  return rows[0]!.n
}

/** One write the application made through Sequelize (one row, or two in a transaction) and how it ended. */
interface Write {
  readonly ids: number[]
  readonly kind: 'create' | 'transaction' | 'held'
  outcome: 'pending' | 'acked' | 'error'
  /** inet_server_port() of the node that acknowledged it (RETURNING, through the model instance). */
  port: number | null
  error: unknown
}

function track(writes: Write[], kind: Write['kind'], ids: number[], run: () => Promise<number>): Promise<void> {
  const write: Write = { ids, kind, outcome: 'pending', port: null, error: null }
  writes.push(write)
  return run().then(
    (port) => {
      write.outcome = 'acked'
      write.port = port
    },
    (error: unknown) => {
      write.outcome = 'error'
      write.error = error
    },
  )
}

const describeError = (w: Write): string => {
  const e = w.error as { name?: string; message?: string; parent?: { message?: string } }
  return `${w.kind} ${w.ids.join('+')}: ${e?.name}: ${e?.message} (parent: ${e?.parent?.message})`
}

describe('Sequelize on a FailoverPool (sequelizeDialect)', () => {
  it('the same Sequelize instance rides out a killed primary: no acknowledged write lost, every write error outcome-unknown or provably not committed', { timeout: 120_000 }, async () => {
    // Synchronous replication: every acknowledged commit is on node1 when node0 dies.
    const cluster = await res.cluster({ standbys: 1, synchronous: true })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { failoverTimeoutMs: 40_000 })
    const sequelize = sequelizeOn(pool, { max: 8 })
    const Entry = await defineEntries(sequelize)
    const port = sequelize.fn('inet_server_port')
    let nextId = 0

    // Writers loop through Sequelize's API: autocommit creates, and transactions of two creates.
    const writes: Write[] = []
    let stopped = false
    const createLoop = async (): Promise<void> => {
      while (!stopped) {
        const id = ++nextId
        await track(writes, 'create', [id], async () => (await Entry.create({ id, port, note: 'plain' })).get('port') as number)
      }
    }
    const transactionLoop = async (): Promise<void> => {
      while (!stopped) {
        const ids = [++nextId, ++nextId]
        await track(writes, 'transaction', ids, () =>
          sequelize.transaction(async (transaction) => {
            await Entry.create({ id: ids[0], port, note: 'plain' }, { transaction })
            return (await Entry.create({ id: ids[1], port, note: 'plain' }, { transaction })).get('port') as number
          }),
        )
      }
    }
    // (Writes issued before the pool has noticed node0's death get a new connection that node0
    // refuses or drops: sequelizeDialect retries it, so they wait for node1 instead of failing.)
    const loops = [createLoop(), createLoop(), transactionLoop()]
    await waitUntil(() => writes.filter((w) => w.outcome === 'acked').length >= 20, { what: 'writes acknowledged before the fault', timeout: 20_000 })

    // Writes certainly running on node0 when it dies: held creates, one of them inside a transaction.
    await holdLock(res, n0)
    const inFlight: Promise<void>[] = []
    for (let i = 0; i < 3; i++) {
      const id = ++nextId
      inFlight.push(track(writes, 'held', [id], async () => (await Entry.create({ id, port, note: 'held in insert' })).get('port') as number))
    }
    const heldTx = ++nextId
    inFlight.push(
      track(writes, 'held', [heldTx], () => sequelize.transaction(async (transaction) => (await Entry.create({ id: heldTx, port, note: 'held in insert' }, { transaction })).get('port') as number)),
    )
    await heldStatements(cluster, n0, HELD, 4, 20_000)

    const failover = nextEvent(pool, 'failover', { timeout: 60_000 })
    await cluster.kill(n0)
    await cluster.promote(n1)
    // As an HA tool would: the new primary has no standby, so it must not wait for one.
    await cluster.sql(n1, "ALTER SYSTEM SET synchronous_standby_names = ''")
    await cluster.sql(n1, 'SELECT pg_reload_conf()')
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })

    // The same instance writes to node1, in both loops.
    const ackedOn = (kind: Write['kind'], p: number): number => writes.filter((w) => w.kind === kind && w.outcome === 'acked' && w.port === p).length
    await waitUntil(() => ackedOn('create', n1.port) >= 10 && ackedOn('transaction', n1.port) >= 5, { what: 'writes acknowledged by node1 through the same Sequelize instance', timeout: 40_000 })
    stopped = true
    await Promise.all([...loops, ...inFlight])

    // The held writes were cut mid-flight: none acknowledged, each error says the outcome is unknown.
    const held = writes.filter((w) => w.kind === 'held')
    expect(held.map((w) => w.outcome)).toEqual(['error', 'error', 'error', 'error'])
    // (Sequelize throws its own errors: the mark is found on the driver error inside.)
    expect(held.every((w) => w.error instanceof BaseError && isOutcomeUnknownError(w.error))).toBe(true)

    // No acknowledged write lost: each one is on node1 (read there directly, and through Sequelize).
    const acked = writes.filter((w) => w.outcome === 'acked')
    expect(acked.every((w) => w.port === n0.port || w.port === n1.port)).toBe(true)
    const onNode1 = new Set((await cluster.sql<{ id: number }>(n1, 'SELECT id FROM entries')).map((r) => r.id))
    expect(acked.flatMap((w) => w.ids).filter((id) => !onNode1.has(id))).toEqual([])

    // Every error the application saw, as Sequelize threw it, is recognisably outcome-unknown, or
    // else says truthfully that the write did not happen: a statement whose connection was already
    // dead when Sequelize sent it ("not queryable": nothing sent; for a transaction, COMMIT never
    // sent) is not marked, is safe to retry, and none of its rows is on node1.
    const errors = writes.filter((w) => w.outcome === 'error')
    const definite = errors.filter((w) => !isOutcomeUnknownError(w.error))
    expect(definite.filter((w) => !/not queryable/.test(describeError(w)) || !isSafeToRetryError(w.error)).map(describeError)).toEqual([])
    expect(definite.flatMap((w) => w.ids).filter((id) => onNode1.has(id))).toEqual([])
    const viaSequelize = new Set((await Entry.findAll({ attributes: ['id'], raw: true })).map((r) => (r as unknown as { id: number }).id))
    expect(viaSequelize).toEqual(onNode1)
    // Nothing the application never asked for, and a transaction is all or nothing.
    expect([...onNode1].filter((id) => id > nextId)).toEqual([])
    const halfDone = writes.filter((w) => w.kind === 'transaction' && onNode1.has(w.ids[0]!) !== onNode1.has(w.ids[1]!))
    expect(halfDone.map((w) => w.ids)).toEqual([])
    expect(pool.status().primary).toBe(n1.name)
  })

  it('replication.read connections go to replicas, writes and transactions to the primary', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool(cluster)

    // The module Sequelize reads: pg's types, a pg.Client class, no native binding.
    const dialect = sequelizeDialect(pool)
    expect(dialect.types).toBe(pg.types)
    expect(new dialect.Client({ host: SEQUELIZE_REPLICA_HOST })).toBeInstanceOf(pg.Client)
    expect(() => new Sequelize({ dialect: 'postgres', dialectModule: dialect, native: true, logging: false })).toThrow(ConfigError)
    expect(() => sequelizeDialect(pool, { connectRetryMs: -1 })).toThrow(ConfigError)
    // A read connection is placed when it is made (before the standbys are verified it would fall
    // back to the primary, by readFallback), so let the pool verify them first.
    await replicasKnown(pool, 2, 20_000)
    // pg's promise form of connect too (Sequelize uses the callback form), wherever the client was pointed.
    const direct = new dialect.Client({ host: SEQUELIZE_REPLICA_HOST, port: 1 })
    res.defer(() => direct.end())
    expect(await direct.connect()).toBe(direct)
    expect([n1.port, n2.port]).toContain((await direct.query('SELECT inet_server_port() AS port')).rows[0].port)
    // As with pg, a client connects once; a second connect leaves the live session alone.
    await expect(direct.connect()).rejects.toThrow(/already been connected/)
    expect((await direct.query('SELECT 1 AS one')).rows[0].one).toBe(1)

    const sequelize = sequelizeOn(pool, { replication: true, max: 4 })
    const Entry = await defineEntries(sequelize)
    const port = sequelize.fn('inet_server_port')
    const created = await Promise.all([1, 2, 3, 4].map(async (id) => (await Entry.create({ id, port, note: 'plain' })).get('port')))
    expect(created).toEqual([n0.port, n0.port, n0.port, n0.port])
    await cluster.waitForReplication(n0)

    // findAll is a SELECT: Sequelize's read pool, whose connections the pool put on replicas
    // (several at once, so that several read connections exist: each is given a replica in turn).
    const replicaPorts = new Set<number>()
    await waitUntil(
      async () => {
        const batch = await Promise.all(
          Array.from({ length: 8 }, () => Entry.findAll({ attributes: [[port, 'port']], where: { id: 1 }, raw: true }).then((rows) => (rows[0] as unknown as { port: number }).port)),
        )
        for (const p of batch) replicaPorts.add(p)
        return replicaPorts.size === 2 || replicaPorts.has(n0.port)
      },
      { what: 'reads reaching both replicas', timeout: 20_000 },
    )
    expect([...replicaPorts].sort()).toEqual([n1.port, n2.port].sort())
    expect(await Entry.count()).toBe(4)

    // Raw SELECTs too; and what must see the primary does: useMaster, and a transaction's reads.
    const raw = await sequelize.query<{ port: number }>('SELECT inet_server_port() AS port', { type: QueryTypes.SELECT })
    expect([n1.port, n2.port]).toContain(raw[0]!.port)
    const master = await sequelize.query<{ port: number }>('SELECT inet_server_port() AS port', { type: QueryTypes.SELECT, useMaster: true })
    expect(master[0]!.port).toBe(n0.port)
    const inTx = await sequelize.transaction(async (transaction) => {
      const rows = await Entry.findAll({ attributes: [[port, 'port']], where: { id: 1 }, raw: true, transaction })
      await Entry.update({ note: 'updated' }, { where: { id: 1 }, transaction })
      return (rows[0] as unknown as { port: number }).port
    })
    expect(inTx).toBe(n0.port)
    expect((await cluster.sql<{ note: string }>(n0, 'SELECT note FROM entries WHERE id = 1'))[0]!.note).toBe('updated')
    // The server's view: Sequelize's sessions on each node.
    expect(await sessions(cluster, n1)).toBeGreaterThan(0)
    expect(await sessions(cluster, n2)).toBeGreaterThan(0)
  })

  it("a failover cuts Sequelize's sessions on the old primary (still up and writable): a write running there is never acknowledged", async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { healthCheckIntervalMs: 2_000 })
    const sequelize = sequelizeOn(pool, { max: 4 })
    const Entry = await defineEntries(sequelize)
    const port = sequelize.fn('inet_server_port')
    // node1 is promoted below and written to: it must have the table and trigger first.
    await cluster.waitForReplication(n0)

    // A create running on node0 (held in the trigger), and a transaction open there with one row written.
    const holder = await holdLock(res, n0)
    const running = Entry.create({ id: 1, port, note: 'held in insert' }).then(
      () => 'acknowledged' as const,
      (e: unknown) => e,
    )
    let proceed!: () => void
    const gate = new Promise<void>((resolve) => (proceed = resolve))
    let firstInserted!: () => void
    const inserted = new Promise<void>((resolve) => (firstInserted = resolve))
    const open = sequelize
      .transaction(async (transaction) => {
        await Entry.create({ id: 2, port, note: 'plain' }, { transaction })
        firstInserted()
        await gate
        await Entry.create({ id: 3, port, note: 'plain' }, { transaction })
      })
      .then(
        () => 'acknowledged' as const,
        (e: unknown) => e,
      )
    await inserted
    await heldStatements(cluster, n0, HELD, 1)
    expect(await sessions(cluster, n0)).toBeGreaterThanOrEqual(2)

    // node1 is promoted while node0 stays up and writable: only the pool's decision stops node0.
    const failover = nextEvent(pool, 'failover')
    await cluster.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })
    expect(await cluster.isInRecovery(n0)).toBe(false)

    // The running create fails at once, marked outcome-unknown (it may still commit on node0, which
    // no longer counts); the open transaction cannot go on, and is never committed anywhere.
    const result = await running
    expect(result).toBeInstanceOf(Error)
    expect(isOutcomeUnknownError(result), String(result)).toBe(true)
    proceed()
    expect(await open).toBeInstanceOf(Error)
    // Every Sequelize session on node0 is gone (the held one once its statement can end: the lock
    // released, it may commit there, which no longer counts).
    await holder.query(`SELECT pg_advisory_unlock(${HOLD_LOCK})`)
    await waitUntil(async () => (await sessions(cluster, n0)) === 0, { what: "Sequelize's sessions on node0 to end", timeout: 20_000 })
    expect(await cluster.sql(n0, 'SELECT id FROM entries WHERE id IN (2, 3)')).toEqual([])

    // The same instance writes to node1.
    expect((await Entry.create({ id: 4, port, note: 'plain' })).get('port')).toBe(n1.port)
    expect((await cluster.sql<{ id: number }>(n1, 'SELECT id FROM entries ORDER BY id')).map((r) => r.id)).toEqual([4])
  })
})
