/**
 * Drizzle (drizzle-orm/node-postgres) on a FailoverPool, with Drizzle's own `withReplicas` sending
 * selects to `pool.reader` and everything else to the primary.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/drizzle.ts
 *
 * Creates the table `pgfp_example_items` if it does not exist (use drizzle-kit for real schemas).
 */
import { eq, sql } from 'drizzle-orm'
import { type NodePgDatabase, drizzle } from 'drizzle-orm/node-postgres'
import { integer, pgTable, serial, text, withReplicas } from 'drizzle-orm/pg-core'
import { FailoverPool } from '../src/index.js' // in your code: from 'pg-failover-pool'

const items = pgTable('pgfp_example_items', {
  id: serial('id').primaryKey(),
  name: text('name').notNull(),
  stock: integer('stock').notNull(),
})

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

const pool = new FailoverPool({ endpoints, max: 10, connectionTimeoutMillis: 3_000 })
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason})`))

// Drizzle's driver treats its client as a pool (pool.query per statement, pool.connect() per
// transaction) only when it is a pg.Pool; FailoverPool and pool.reader are, so transactions get
// one connection of their own instead of statements scattered over several.
// Both typed as plain NodePgDatabase: withReplicas wants one type for the primary and the replicas.
const primaryDb: NodePgDatabase = drizzle({ client: pool })
const replicaDb: NodePgDatabase = drizzle({ client: pool.reader })
// withReplicas: select() goes to a replica db, insert/update/delete/transaction and `$primary` to
// the primary db. One object to pass around, and the routing is Drizzle's, not ours.
const db = withReplicas(primaryDb, [replicaDb])

try {
  await db.execute(sql`CREATE TABLE IF NOT EXISTS pgfp_example_items (id serial PRIMARY KEY, name text NOT NULL, stock integer NOT NULL)`)

  const [widget] = await db.insert(items).values({ name: 'widget', stock: 10 }).returning()
  console.log(`inserted item ${widget!.id}`)

  // Both statements share one connection on the primary, committed together or not at all.
  await db.transaction(async (tx) => {
    await tx.update(items).set({ stock: sql`${items.stock} - 1` }).where(eq(items.id, widget!.id))
    await tx.insert(items).values({ name: 'gadget', stock: 5 })
  })

  // Just written: read it from the primary, not from a replica that may not have replayed it yet.
  const [fresh] = await db.$primary.select().from(items).where(eq(items.id, widget!.id))
  console.log(`primary: ${fresh!.name} has ${fresh!.stock} left`)

  const all = await db.select({ n: sql<number>`count(*)::int` }).from(items)
  const [where] = await replicaDb.execute<{ port: number; replica: boolean }>(sql`SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica`).then((r) => r.rows)
  console.log(`reader: ${where!.replica ? 'a replica' : 'the primary'} (port ${where!.port}) counts ${all[0]!.n} items`)
} finally {
  // Drizzle never closes the client it was given.
  await pool.end()
}
