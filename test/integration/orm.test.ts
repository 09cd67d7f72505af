/**
 * ORMs on a FailoverPool against a real primary + standby: Kysely, Drizzle (node-postgres) and
 * knex (connectionPool) each take the pool as they take a pg.Pool, run writes, reads and
 * transactions on the primary, reads on `pool.reader` on the standby, and, after the primary is
 * stopped and the standby promoted, the SAME ORM instances write to the new primary. Also runs
 * examples/plain-script.ts as a child process so the example cannot rot.
 *
 * One cluster and one failover for the whole file (tests run in order and share it): each ORM is
 * built once in beforeAll and never rebuilt.
 */
import type { PoolClient } from 'pg'
import { eq, sql as dsql } from 'drizzle-orm'
import { type NodePgDatabase, drizzle } from 'drizzle-orm/node-postgres'
import { integer, pgTable, serial, text } from 'drizzle-orm/pg-core'
import knex, { type Knex } from 'knex'
import { type Generated, Kysely, PostgresDialect, sql as ksql } from 'kysely'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import type { FailoverEvent, FailoverPool } from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { runExample } from '../support/process.js'

interface KyselyDb {
  k_orders: { id: Generated<number>; item: string; port: Generated<number> }
}

const dItems = pgTable('d_items', {
  id: serial('id').primaryKey(),
  name: text('name').notNull(),
  // Filled by the server (DEFAULT inet_server_port()): which node wrote the row.
  port: integer('port'),
})

let cluster: Cluster
let n0: ClusterNode
let n1: ClusterNode
let pool: FailoverPool
let kdb: Kysely<KyselyDb>
let kReader: Kysely<KyselyDb>
let ddb: NodePgDatabase
let dReader: NodePgDatabase
let xdb: Knex
let xReader: Knex
/** Every `failover` event the pool emitted. */
const failovers: FailoverEvent[] = []

const shared = useResources('all')

beforeAll(async () => {
  cluster = await shared.cluster({ standbys: 1 })
  ;[n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
  // Room for the three ORM transactions held open across the failover and the statements run meanwhile.
  pool = shared.pool(cluster, { max: 6 })
  pool.on('failover', (e) => failovers.push(e))
  kdb = new Kysely<KyselyDb>({ dialect: new PostgresDialect({ pool }) })
  kReader = new Kysely<KyselyDb>({ dialect: new PostgresDialect({ pool: pool.reader }) })
  ddb = drizzle({ client: pool })
  dReader = drizzle({ client: pool.reader })
  xdb = knex({ client: 'pg', connectionPool: pool })
  xReader = knex({ client: 'pg', connectionPool: pool.reader })
  // Runs before the pool and the cluster are torn down (newest first).
  shared.defer(async () => {
    process.off('uncaughtException', onUncaught)
    openGate?.()
    // The ORMs' own shutdown first: on the views and on knex it must leave the pool to pool.end().
    await kReader.destroy().catch(() => undefined)
    await xReader.destroy().catch(() => undefined)
    await xdb.destroy().catch(() => undefined)
    await kdb.destroy().catch(() => undefined) // Kysely's destroy() is pool.end()
  })
})

/** Counts `pool.connect()` calls and `acquire` events (clients checked out on the primary) during `fn`. */
async function counting<T>(fn: () => Promise<T>): Promise<{ result: T; connects: number; acquires: number }> {
  const connect = vi.spyOn(pool, 'connect')
  let acquires = 0
  const onAcquire = (): void => {
    acquires++
  }
  pool.on('acquire', onAcquire)
  try {
    const result = await fn()
    return { result, connects: connect.mock.calls.length, acquires }
  } finally {
    pool.off('acquire', onAcquire)
    connect.mockRestore()
  }
}

/**
 * Opens a transaction through an ORM and resolves once it is inside (a row written), with the
 * client it holds and its eventual outcome ('committed' or the error). It waits for `gate` before
 * its next statement.
 */
async function openTransaction(start: (wait: () => Promise<void>) => Promise<unknown>): Promise<{ client: PoolClient; outcome: Promise<unknown> }> {
  let client: PoolClient | undefined
  const onAcquire = (c: PoolClient): void => {
    client ??= c
  }
  pool.on('acquire', onAcquire)
  let entered!: () => void
  const inside = new Promise<void>((resolve) => (entered = resolve))
  const outcome = start(async () => {
    entered()
    await gate
  }).then(
    () => 'committed',
    (err: unknown) => err,
  )
  await Promise.race([inside, outcome])
  pool.off('acquire', onAcquire)
  if (!client) throw new Error(`the transaction did not check out a client: ${String(await outcome)}`)
  return { client, outcome }
}

let openGate!: () => void
const gate = new Promise<void>((resolve) => (openGate = resolve))
/** Uncaught exceptions while the primary went down (collected so the test can name them). */
const uncaught: unknown[] = []
const onUncaught = (err: unknown): void => {
  uncaught.push(err)
}
/** `error` listeners on the clients held by the open ORM transactions just before the stop. */
const heldClientErrorListeners: number[] = []

describe('ORMs on a FailoverPool (primary + 1 standby)', () => {
  it('examples/plain-script.ts runs against the cluster, writes on the primary, reads it back and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('plain-script.ts', cluster.nodes.map((n) => n.url))
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' })
    expect(stdout).toContain(`wrote note 1 on the primary (server port ${n0.port})`)
    // A replica that has replayed the write, or the primary: read-your-writes allows either.
    expect(stdout).toMatch(new RegExp(`read note 1 from (a replica \\(server port ${n1.port}\\)|the primary \\(server port ${n0.port}\\)): hello from pid \\d+`))
    expect(stdout).toContain(`status: primary 127.0.0.1:${n0.port}, mode read-write, failovers 0`)
    expect(stdout).toMatch(new RegExp(`127\\.0\\.0\\.1:${n1.port}: standby`))
    expect(stdout).not.toContain(cluster.password)
    const rows = await cluster.sql<{ n: number }>(n0, 'SELECT count(*)::int AS n FROM pgfp_example_notes')
    expect(rows[0]!.n).toBe(1)
  })

  it('Kysely: schema, insert, select and a transaction on the primary; its reader instance reads from the standby', async () => {
    await kdb.schema
      .createTable('k_orders')
      .addColumn('id', 'serial', (c) => c.primaryKey())
      .addColumn('item', 'text', (c) => c.notNull())
      .addColumn('port', 'integer', (c) => c.notNull().defaultTo(ksql`inet_server_port()`))
      .execute()
    // Kysely checks out a client per query: that is pool.connect(), which must reach the primary.
    const { result: inserted, connects } = await counting(() => kdb.insertInto('k_orders').values({ item: 'a' }).returning(['id', 'port']).executeTakeFirstOrThrow())
    expect(inserted.port).toBe(n0.port)
    expect(connects).toBe(1)
    expect(await kdb.selectFrom('k_orders').select('item').execute()).toEqual([{ item: 'a' }])

    const tx = await counting(() =>
      kdb.transaction().execute(async (trx) => {
        const pids: number[] = []
        for (const item of ['b', 'c']) {
          await trx.insertInto('k_orders').values({ item }).execute()
          const { rows } = await ksql<{ pid: number }>`SELECT pg_backend_pid() AS pid`.execute(trx)
          pids.push(rows[0]!.pid)
        }
        return pids
      }),
    )
    // One checkout for BEGIN ... COMMIT: every statement on the same server session.
    expect(tx.connects).toBe(1)
    expect(tx.acquires).toBe(1)
    expect(new Set(tx.result).size).toBe(1)
    const onPrimary = await cluster.sql<{ item: string; port: number }>(n0, 'SELECT item, port FROM k_orders ORDER BY id')
    expect(onPrimary).toEqual(['a', 'b', 'c'].map((item) => ({ item, port: n0.port })))

    // A transaction that throws is rolled back on that same session.
    await expect(
      kdb.transaction().execute(async (trx) => {
        await trx.insertInto('k_orders').values({ item: 'never' }).execute()
        throw new Error('abort')
      }),
    ).rejects.toThrow('abort')
    expect(await cluster.sql(n0, "SELECT 1 FROM k_orders WHERE item = 'never'")).toEqual([])

    const { rows } = await ksql<{ port: number; replica: boolean }>`SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica`.execute(kReader)
    expect(rows[0]).toEqual({ port: n1.port, replica: true })
  })

  it('Drizzle takes the pool path: statements through pool.query, a transaction through one pool.connect()', async () => {
    await ddb.execute(dsql`CREATE TABLE d_items (id serial PRIMARY KEY, name text NOT NULL, port int NOT NULL DEFAULT inet_server_port())`)
    const insert = await counting(() => ddb.insert(dItems).values({ name: 'widget' }).returning())
    expect(insert.result).toEqual([{ id: 1, name: 'widget', port: n0.port }])
    // Not a checkout: outside a transaction Drizzle calls pool.query, which the pool may retry.
    expect(insert.connects).toBe(0)
    expect(await ddb.select({ name: dItems.name }).from(dItems).where(eq(dItems.id, 1))).toEqual([{ name: 'widget' }])

    // On the pg.Client path Drizzle would send BEGIN, the statements and COMMIT as separate
    // pool.query calls, each free to land on another connection.
    const tx = await counting(() =>
      ddb.transaction(async (trx) => {
        await trx.insert(dItems).values({ name: 'gadget' })
        await trx.update(dItems).set({ name: 'widget 2' }).where(eq(dItems.id, 1))
        const { rows } = await trx.execute<{ pid: number }>(dsql`SELECT pg_backend_pid() AS pid`)
        const { rows: again } = await trx.execute<{ pid: number }>(dsql`SELECT pg_backend_pid() AS pid`)
        return [rows[0]!.pid, again[0]!.pid]
      }),
    )
    expect(tx.connects).toBe(1)
    expect(tx.acquires).toBe(1)
    expect(tx.result[0]).toBe(tx.result[1])
    expect(await cluster.sql(n0, 'SELECT id, name, port FROM d_items ORDER BY id')).toEqual([
      { id: 1, name: 'widget 2', port: n0.port },
      { id: 2, name: 'gadget', port: n0.port },
    ])

    await expect(
      ddb.transaction(async (trx) => {
        await trx.insert(dItems).values({ name: 'never' })
        trx.rollback()
      }),
    ).rejects.toThrow(/rollback/i)
    expect(await cluster.sql(n0, "SELECT 1 FROM d_items WHERE name = 'never'")).toEqual([])

    const { rows } = await dReader.execute<{ port: number; replica: boolean }>(dsql`SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica`)
    expect(rows[0]).toEqual({ port: n1.port, replica: true })
  })

  it('knex (connectionPool): schema, insert, select and a transaction on the primary; its reader reads from the standby', async () => {
    await xdb.schema.createTable('x_events', (t) => {
      t.increments('id')
      t.text('kind').notNullable()
      t.integer('port').notNullable().defaultTo(xdb.raw('inet_server_port()'))
    })
    const insert = await counting(() => xdb('x_events').insert({ kind: 'signup' }).returning(['id', 'port']))
    expect(insert.result).toEqual([{ id: 1, port: n0.port }])
    // knex took the pool: its connection came from pool.connect(), not from a pool of its own.
    expect(insert.connects).toBe(1)
    expect(await xdb('x_events').select('kind')).toEqual([{ kind: 'signup' }])

    const tx = await counting(() =>
      xdb.transaction(async (trx) => {
        await trx('x_events').insert({ kind: 'login' })
        const a = await trx.raw<{ rows: { pid: number }[] }>('SELECT pg_backend_pid() AS pid')
        await trx('x_events').insert({ kind: 'logout' })
        const b = await trx.raw<{ rows: { pid: number }[] }>('SELECT pg_backend_pid() AS pid')
        return [a.rows[0]!.pid, b.rows[0]!.pid]
      }),
    )
    expect(tx.connects).toBe(1)
    expect(tx.acquires).toBe(1)
    expect(tx.result[0]).toBe(tx.result[1])
    expect(await cluster.sql(n0, 'SELECT kind, port FROM x_events ORDER BY id')).toEqual(['signup', 'login', 'logout'].map((kind) => ({ kind, port: n0.port })))

    const where = await xReader.raw<{ rows: { port: number; replica: boolean }[] }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica')
    expect(where.rows[0]).toEqual({ port: n1.port, replica: true })
  })

  it('stop the primary, promote the standby: the same Kysely, Drizzle and knex instances write to the new primary', async () => {
    // One transaction per ORM is open (a row written, waiting on the app) when the primary dies.
    const inFlight = [
      await openTransaction((wait) =>
        kdb.transaction().execute(async (trx) => {
          await trx.insertInto('k_orders').values({ item: 'in-flight' }).execute()
          await wait()
          await trx.insertInto('k_orders').values({ item: 'in-flight 2' }).execute()
        }),
      ),
      await openTransaction((wait) =>
        ddb.transaction(async (trx) => {
          await trx.insert(dItems).values({ name: 'in-flight' })
          await wait()
          await trx.insert(dItems).values({ name: 'in-flight 2' })
        }),
      ),
      await openTransaction((wait) =>
        xdb.transaction(async (trx) => {
          await trx('x_events').insert({ kind: 'in-flight' })
          await wait()
          await trx('x_events').insert({ kind: 'in-flight 2' })
        }),
      ),
    ]
    heldClientErrorListeners.push(...inFlight.map((t) => t.client.listenerCount('error')))
    process.on('uncaughtException', onUncaught)

    await cluster.stop(n0, 'fast')
    // pg_ctl returning does not mean the pool has read the closed sockets; until it has, an ORM
    // could be handed a dead idle client and its write would truthfully end outcome-unknown.
    await expect.poll(() => pool.status().primary, { timeout: 5_000 }).toBeNull()
    // Issued while there is no primary at all: each waits for one instead of failing.
    const pending = Promise.all([
      kdb.insertInto('k_orders').values({ item: 'after' }).returning('port').executeTakeFirstOrThrow(),
      ddb.insert(dItems).values({ name: 'after' }).returning({ port: dItems.port }),
      xdb('x_events').insert({ kind: 'after' }).returning('port'),
    ])
    openGate()
    await cluster.promote(n1)
    const [k, d, x] = await pending
    expect([k.port, d[0]!.port, x[0]!.port]).toEqual([n1.port, n1.port, n1.port])

    // A transaction never moves to another node: the open ones failed, and nothing of them committed.
    const outcomes = await Promise.all(inFlight.map((t) => t.outcome))
    expect(outcomes.map((o) => (o instanceof Error ? 'failed' : o))).toEqual(['failed', 'failed', 'failed'])
    expect(await cluster.sql(n1, "SELECT 'k' FROM k_orders WHERE item LIKE 'in-flight%' UNION ALL SELECT 'd' FROM d_items WHERE name LIKE 'in-flight%' UNION ALL SELECT 'x' FROM x_events WHERE kind LIKE 'in-flight%'")).toEqual([])

    expect(failovers).toHaveLength(1)
    expect(failovers[0]).toMatchObject({ from: n0.name, to: n1.name })
    expect(pool.status()).toMatchObject({ primary: n1.name, failovers: 1 })

    // A raw statement through each ORM reaches the new primary.
    const kPort = (await ksql<{ port: number }>`SELECT inet_server_port() AS port`.execute(kdb)).rows[0]!.port
    const dPort = (await ddb.execute<{ port: number }>(dsql`SELECT inet_server_port() AS port`)).rows[0]!.port
    const xPort = (await xdb.raw<{ rows: { port: number }[] }>('SELECT inet_server_port() AS port')).rows[0]!.port
    expect([kPort, dPort, xPort]).toEqual([n1.port, n1.port, n1.port])

    // No replica is left: the reader instances fall back to the new primary.
    const kr = (await ksql<{ port: number }>`SELECT inet_server_port() AS port`.execute(kReader)).rows[0]!.port
    const dr = (await dReader.execute<{ port: number }>(dsql`SELECT inet_server_port() AS port`)).rows[0]!.port
    const xr = (await xReader.raw<{ rows: { port: number }[] }>('SELECT inet_server_port() AS port')).rows[0]!.port
    expect([kr, dr, xr]).toEqual([n1.port, n1.port, n1.port])
  })

  it('the transactions open in the ORMs when the primary died failed without an uncaught error (no process crash)', () => {
    process.off('uncaughtException', onUncaught)
    // The server ends the idle-in-transaction sessions (57P01, then the socket closes) while the
    // ORM holds the client between statements. pg.Client emits that as 'error'; pg-pool listens on
    // idle clients only, and none of these ORMs listens on the clients it checks out, so unless the
    // pool keeps a listener on checked-out clients the 'error' is unhandled and a real process
    // without an 'uncaughtException' handler exits: each held client had at least that listener.
    expect({ uncaught: uncaught.map((e) => (e instanceof Error ? e.message : String(e))), heldClientsListened: heldClientErrorListeners.map((n) => n >= 1) }).toEqual({
      uncaught: [],
      heldClientsListened: [true, true, true],
    })
  })

  it('after the failover, a transaction through each ORM commits on the new primary', async () => {
    await kdb.transaction().execute(async (trx) => {
      await trx.insertInto('k_orders').values({ item: 'tx1' }).execute()
      await trx.insertInto('k_orders').values({ item: 'tx2' }).execute()
    })
    await ddb.transaction(async (trx) => {
      await trx.insert(dItems).values({ name: 'tx1' })
      await trx.insert(dItems).values({ name: 'tx2' })
    })
    await xdb.transaction(async (trx) => {
      await trx('x_events').insert({ kind: 'tx1' })
      await trx('x_events').insert({ kind: 'tx2' })
    })
    const k = await cluster.sql(n1, "SELECT item AS v, port FROM k_orders WHERE item IN ('after', 'tx1', 'tx2') ORDER BY id")
    const d = await cluster.sql(n1, "SELECT name AS v, port FROM d_items WHERE name IN ('after', 'tx1', 'tx2') ORDER BY id")
    const x = await cluster.sql(n1, "SELECT kind AS v, port FROM x_events WHERE kind IN ('after', 'tx1', 'tx2') ORDER BY id")
    const expected = ['after', 'tx1', 'tx2'].map((v) => ({ v, port: n1.port }))
    expect({ k, d, x }).toEqual({ k: expected, d: expected, x: expected })
    // Everything written before the failover survived on the new primary too (replicated).
    expect(await cluster.sql(n1, "SELECT count(*)::int AS n FROM k_orders WHERE item IN ('a', 'b', 'c')")).toEqual([{ n: 3 }])
  })

  it("shutting down the reader ORMs and knex leaves the pool open; Kysely's destroy() on the pool ends it", async () => {
    await kReader.destroy()
    await xReader.destroy()
    await xdb.destroy()
    expect(pool.ending).toBe(false)
    const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port')
    expect(rows[0]!.port).toBe(n1.port)
    // Drizzle never closes its client; Kysely's destroy() calls pool.end(), as it does on a pg.Pool.
    await kdb.destroy()
    expect(pool.ended).toBe(true)
    await expect(pool.query('SELECT 1')).rejects.toThrow(/after calling end/)
  })
})
