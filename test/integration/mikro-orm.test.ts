/**
 * MikroORM 6 on a FailoverPool. MikroORM has no option for a pool instance; it takes a ready knex
 * instance as `driverOptions` (it checks `driverOptions.context.client instanceof knex.Client`
 * against its own knex, hence the project's npm override `"knex": "$knex"`), and knex >= 3.3 takes
 * the pool as `connectionPool`. Entities are EntitySchema definitions (no decorators). The primary
 * is killed (SIGKILL) under a write loop and the most advanced standby promoted: the SAME MikroORM
 * instance carries on (a fresh em.fork() per unit of work), no acknowledged write is lost, and the
 * writes in flight fail with errors that isOutcomeUnknownError recognises: MikroORM's
 * DriverException copies the driver error's own property names, the pool's non-enumerable mark
 * included, and a failed COMMIT reaches the caller as knex's (the driver's own) error. Also runs
 * examples/mikro-orm.ts against the cluster.
 */
import { EntitySchema, MikroORM } from '@mikro-orm/postgresql'
import knex, { type Knex } from 'knex'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { type FailoverPool, isOutcomeUnknownError } from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { runExample } from '../support/process.js'
import { promoteMostAdvanced } from '../support/standbys.js'
import { nextEvent } from '../support/wait.js'
import { carriesMark, createHoldTriggers, errorOf, heldStatements, HOLD_LOCK, holdLock, settle, terminateHeld, writeLoop } from '../support/writes-in-flight.js'

interface Order {
  id: number
  note: string
  /** Filled by the server (DEFAULT inet_server_port()): which node wrote the row. */
  port?: number
}

const OrderSchema = new EntitySchema<Order>({
  name: 'Order',
  tableName: 'm_orders',
  properties: {
    id: { type: 'number', primary: true, autoincrement: true },
    note: { type: 'string' },
    port: { type: 'number', nullable: true, persist: false },
  },
})

/** The held flushes' statements as pg_stat_activity shows them: knex's INSERT, and COMMIT. */
const HELD = "query LIKE 'insert into%m_orders%' OR query ILIKE 'commit%'"

let cluster: Cluster
let n0: ClusterNode
let n1: ClusterNode
let n2: ClusterNode
let pool: FailoverPool
let writerKnex: Knex
let orm: MikroORM
let readerOrm: MikroORM

const shared = useResources('all')

beforeAll(async () => {
  cluster = await shared.cluster({ standbys: 2, synchronous: true })
  ;[n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
  // Room for two flushes held in flight, the write loop and the reads next to them.
  pool = shared.pool(cluster, { max: 6 })
  writerKnex = knex({ client: 'pg', connectionPool: pool })
  // `dbName` only because MikroORM's config requires one: connections come from the pool.
  orm = await MikroORM.init({ entities: [OrderSchema], dbName: 'postgres', driverOptions: writerKnex })
  readerOrm = await MikroORM.init({ entities: [OrderSchema], dbName: 'postgres', driverOptions: knex({ client: 'pg', connectionPool: pool.reader }) })
  // Runs before the pool and the cluster are torn down (newest first).
  shared.defer(async () => {
    await readerOrm.close().catch(() => undefined)
    await orm.close().catch(() => undefined)
  })
  await pool.query('CREATE TABLE m_orders (id serial PRIMARY KEY, note text NOT NULL, port int NOT NULL DEFAULT inet_server_port())')
  // Flushes a test holds in flight (test/support/writes-in-flight.ts): one waits in its INSERT, one at COMMIT.
  await createHoldTriggers(pool, 'm_orders')
})

/** One unit of work: a fresh EntityManager, one new order, one flush. */
async function placeOrder(note: string): Promise<Order> {
  const em = orm.em.fork()
  const order = em.create(OrderSchema, { note })
  await em.persist(order).flush()
  return order
}

describe('MikroORM 6 (driverOptions: a knex on the pool) on a FailoverPool (primary + 2 synchronous standbys)', () => {
  it('examples/mikro-orm.ts runs against the cluster and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('mikro-orm.ts', cluster.nodes.map((n) => n.url), 40_000)
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' })
    expect(stdout).toContain('created task 1 on the primary')
    expect(stdout).toContain(`tasks written: 1 "water the plants" (done) on port ${n0.port}, 2 "buy seeds" on port ${n0.port}`)
    expect(stdout).toMatch(new RegExp(`reader: a replica \\(server port (${n1.port}|${n2.port})\\) counts \\d+ tasks`))
    expect(stdout).not.toContain(cluster.password)
  })

  it('MikroORM runs on the knex it was given: a flush is one pool.connect() on the primary; the reader ORM reads on a standby', async () => {
    // Not a knex of MikroORM's own (which would connect to 127.0.0.1:5432 from dbName).
    expect(orm.em.getConnection().getKnex()).toBe(writerKnex)
    const connect = vi.spyOn(pool, 'connect')
    try {
      const order = await placeOrder('first')
      expect(order.id).toEqual(expect.any(Number))
      // BEGIN; INSERT ... RETURNING; COMMIT on one checked-out client.
      expect(connect).toHaveBeenCalledTimes(1)
    } finally {
      connect.mockRestore()
    }
    await orm.em.fork().transactional(async (em) => {
      const first = await em.findOneOrFail(OrderSchema, { note: 'first' })
      first.note = 'first (edited)'
      em.persist(em.create(OrderSchema, { note: 'second' }))
    })
    const found = await orm.em.fork().find(OrderSchema, {}, { orderBy: { id: 'asc' } })
    expect(found.map((o) => ({ note: o.note, port: o.port }))).toEqual([
      { note: 'first (edited)', port: n0.port },
      { note: 'second', port: n0.port },
    ])

    for (let i = 0; i < 4; i++) {
      const [where] = await readerOrm.em.getConnection().execute<{ port: number; replica: boolean }[]>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica')
      expect(where?.replica).toBe(true)
      expect([n1.port, n2.port]).toContain(where?.port)
    }
    await cluster.waitForReplication(n0)
    expect(await readerOrm.em.fork().count(OrderSchema)).toBe(2)
  })

  it('a flush cut by a FATAL 57P01 (its backend terminated), in its INSERT or at COMMIT: the error says outcome-unknown', async () => {
    const holder = await holdLock(shared, n0)
    const inInsert = settle(placeOrder('held in insert (terminated)'))
    const atCommit = settle(placeOrder('held at commit (terminated)'))
    await heldStatements(cluster, n0, HELD, 2)
    await terminateHeld(cluster, n0, HELD)

    // MikroORM's DriverException, with the pg error's properties (the mark too) copied onto it.
    const e1 = errorOf(await inInsert) as Error & { code?: string }
    expect({ name: e1.name, code: e1.code, marked: carriesMark(e1) }).toEqual({ name: 'DriverException', code: '57P01', marked: true })
    expect(isOutcomeUnknownError(e1)).toBe(true)
    // A failed COMMIT: knex's error, which is pg's own (its message prefixed with the SQL), marked.
    const e2 = errorOf(await atCommit) as Error & { code?: string }
    expect({ message: e2.message, code: e2.code, marked: carriesMark(e2) }).toEqual({
      message: expect.stringMatching(/^COMMIT; - terminating connection due to administrator command/),
      code: '57P01',
      marked: true,
    })
    expect(isOutcomeUnknownError(e2)).toBe(true)

    // Neither committed, and neither was replayed (a replay would commit once the lock is free).
    await holder.query(`SELECT pg_advisory_unlock(${HOLD_LOCK})`)
    expect(await orm.em.fork().count(OrderSchema, { note: { $like: 'held%' } })).toBe(0)
    expect(pool.status()).toMatchObject({ primary: n0.name, failovers: 0 })
  })

  it('kill -9 the primary under a write loop, promote the most advanced standby: the same MikroORM carries on, no acknowledged write lost, flushes in flight outcome-unknown', async () => {
    await holdLock(shared, n0)
    const heldInsert = settle(placeOrder('held in insert'))
    const heldCommit = settle(placeOrder('held at commit'))
    await heldStatements(cluster, n0, HELD, 2)

    // One flush at a time, as fast as they are acknowledged, through the same MikroORM throughout.
    const loop = writeLoop(async (note) => (await placeOrder(note)).note)
    const { acknowledged, failed } = loop
    await expect.poll(() => acknowledged.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3)

    const failover = nextEvent(pool, 'failover')
    await cluster.kill(n0)
    const { primary: next, standbys: [other] } = await promoteMostAdvanced(cluster, [n1, n2])
    expect(await failover).toMatchObject({ from: n0.name, to: next.name })
    const atFailover = acknowledged.length
    await expect.poll(() => acknowledged.length, { timeout: 20_000 }).toBeGreaterThanOrEqual(atFailover + 5)
    await loop.stop()

    // The flushes in flight when the node died failed, each recognisably outcome-unknown.
    const e1 = errorOf(await heldInsert) as Error
    expect({ name: e1.name, message: e1.message, marked: carriesMark(e1) }).toEqual({
      name: 'DriverException',
      message: expect.stringMatching(/^insert into "m_orders".* - Connection terminated unexpectedly/),
      marked: true,
    })
    expect(isOutcomeUnknownError(e1)).toBe(true)
    const e2 = errorOf(await heldCommit) as Error
    expect({ message: e2.message, marked: carriesMark(e2) }).toEqual({ message: 'COMMIT; - Connection terminated unexpectedly', marked: true })
    expect(isOutcomeUnknownError(e2)).toBe(true)

    // Every acknowledged write is on the new primary; the held ones are not (never replayed).
    const rows = await cluster.sql<{ note: string; port: number }>(next, "SELECT note, port FROM m_orders WHERE note LIKE 'loop %' OR note LIKE 'held%' ORDER BY id")
    const onNext = new Set(rows.map((r) => r.note))
    expect(acknowledged.filter((note) => !onNext.has(note))).toEqual([])
    expect([...onNext].filter((note) => note.startsWith('held'))).toEqual([])
    // A loop flush caught by the kill is outcome-unknown, or else it provably did not commit (its
    // connection broke before its COMMIT was sent: knex's "not queryable" or "Transaction query
    // already complete"), and then it is not there.
    expect(failed.filter((f) => !isOutcomeUnknownError(f.error) && onNext.has(f.note)).map((f) => `${f.note}: ${String(f.error)}`)).toEqual([])
    // The loop's writes came from the old primary, then from the new one (no other node wrote).
    expect(new Set(rows.map((r) => r.port))).toEqual(new Set([n0.port, next.port]))
    expect(pool.status()).toMatchObject({ primary: next.name, failovers: 1 })

    // The same MikroORM: a transactional unit of work and a find, on the new primary.
    await orm.em.fork().transactional(async (em) => {
      em.persist([em.create(OrderSchema, { note: 'after a' }), em.create(OrderSchema, { note: 'after b' })])
    })
    const after = await orm.em.fork().find(OrderSchema, { note: { $like: 'after %' } }, { orderBy: { id: 'asc' } })
    expect(after.map((o) => ({ note: o.note, port: o.port }))).toEqual([
      { note: 'after a', port: next.port },
      { note: 'after b', port: next.port },
    ])

    // The reader ORM reaches the standby left, once it streams from the new primary.
    await expect
      .poll(async () => (await readerOrm.em.getConnection().execute<{ port: number; replica: boolean }[]>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica'))[0], {
        timeout: 10_000,
      })
      .toEqual({ port: other!.port, replica: true })
  })

  it('orm.close() leaves the pool open (knex does not own a pool it was given)', async () => {
    await readerOrm.close()
    await orm.close()
    expect(await orm.isConnected()).toBe(false)
    expect(pool.ending).toBe(false)
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM m_orders WHERE note LIKE 'after %'")
    expect(rows[0]!.n).toBe(2)
  })
})
