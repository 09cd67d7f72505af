/**
 * Kysely on a FailoverPool: one Kysely for writes (and reads that must be fresh), one on
 * `pool.reader` for reads that may go to a replica.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/kysely.ts
 *
 * Creates the table `pgfp_example_orders` if it does not exist.
 */
import { type Generated, Kysely, PostgresDialect, sql } from 'kysely'
import { FailoverPool } from '../src/index.js' // in your code: from 'pg-failover-pool'

interface Database {
  pgfp_example_orders: { id: Generated<number>; item: string; quantity: number }
}

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

const pool = new FailoverPool({ endpoints, max: 10, connectionTimeoutMillis: 3_000 })
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason})`))

// PostgresDialect takes anything with pg.Pool's connect()/end(). Kysely checks out a client per
// query (and one per transaction), so after a failover its next checkout lands on the new primary:
// the same `db` keeps working, nothing to rebuild.
const db = new Kysely<Database>({ dialect: new PostgresDialect({ pool }) })
// A second Kysely on the reader view: the type system cannot tell a read from a write, so the
// choice of instance is how you say "this query may be a little stale".
const replicaDb = new Kysely<Database>({ dialect: new PostgresDialect({ pool: pool.reader }) })

try {
  await db.schema
    .createTable('pgfp_example_orders')
    .ifNotExists()
    .addColumn('id', 'serial', (c) => c.primaryKey())
    .addColumn('item', 'text', (c) => c.notNull())
    .addColumn('quantity', 'integer', (c) => c.notNull())
    .execute()

  // A transaction holds one connection on the primary from BEGIN to COMMIT; a checked-out
  // connection never switches nodes, so a failover in the middle fails the transaction (retry it
  // in your code) instead of half-applying it on two nodes.
  const ids = await db.transaction().execute(async (trx) => {
    const a = await trx.insertInto('pgfp_example_orders').values({ item: 'apples', quantity: 3 }).returning('id').executeTakeFirstOrThrow()
    const b = await trx.insertInto('pgfp_example_orders').values({ item: 'pears', quantity: 2 }).returning('id').executeTakeFirstOrThrow()
    return [a.id, b.id]
  })
  console.log(`inserted orders ${ids.join(', ')} in one transaction`)

  // Right after a write, read from the primary (or use pool.withReadYourWrites around both).
  const fresh = await db.selectFrom('pgfp_example_orders').select(['id', 'item']).where('id', 'in', ids).execute()
  console.log(`primary sees ${fresh.length} of them`)

  const { rows } = await sql<{ port: number; replica: boolean }>`SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica`.execute(replicaDb)
  const total = await replicaDb.selectFrom('pgfp_example_orders').select((eb) => eb.fn.countAll<string>().as('n')).executeTakeFirstOrThrow()
  console.log(`reader: ${rows[0]!.replica ? 'a replica' : 'the primary'} (port ${rows[0]!.port}) counts ${total.n} orders`)
} finally {
  // Destroying the reader's Kysely only closes the view; destroying `db` calls pool.end(), which
  // closes every connection. So the reader goes first.
  await replicaDb.destroy()
  await db.destroy()
}
