/**
 * knex on a FailoverPool, through knex's `connectionPool` option (knex >= 3.3), which takes a
 * native pg.Pool instead of knex building its own pool of raw connections.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/knex.ts
 *
 * Creates the table `pgfp_example_events` if it does not exist.
 *
 * Older knex (< 3.3) cannot take a pool instance at all: it opens its own pg.Client connections
 * (through its tarn pool) from `connection` settings, and those would stay on whatever node they
 * first reached. There, pass the primary's settings and restart on failover, or upgrade knex.
 */
import knex from 'knex'
import { FailoverPool } from '../src/index.js' // in your code: from 'pg-failover-pool'

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

const pool = new FailoverPool({ endpoints, max: 10, connectionTimeoutMillis: 3_000 })
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason})`))

// knex checks out a client (pool.connect()) per query and per transaction and hands it back
// after, so after a failover its next checkout lands on the new primary. No `connection` option:
// knex and the pool would otherwise disagree about where the database is. (knex's `searchPath`
// is not applied to pool connections: set `options: '-c search_path=...'` on the pool instead.)
const db = knex({ client: 'pg', connectionPool: pool })
const replicaDb = knex({ client: 'pg', connectionPool: pool.reader })

try {
  if (!(await db.schema.hasTable('pgfp_example_events'))) {
    await db.schema.createTable('pgfp_example_events', (t) => {
      t.increments('id')
      t.text('kind').notNullable()
      t.timestamp('at', { useTz: true }).notNullable().defaultTo(db.fn.now())
    })
  }

  const ids = await db.transaction(async (trx) => {
    const rows = await trx('pgfp_example_events').insert([{ kind: 'signup' }, { kind: 'login' }]).returning('id')
    return rows.map((r: { id: number }) => r.id)
  })
  console.log(`inserted events ${ids.join(', ')} in one transaction`)

  const where = await replicaDb.raw<{ rows: { port: number; replica: boolean }[] }>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica')
  const [count] = await replicaDb('pgfp_example_events').count<{ n: string }[]>({ n: '*' })
  console.log(`reader: ${where.rows[0]!.replica ? 'a replica' : 'the primary'} (port ${where.rows[0]!.port}) counts ${count!.n} events`)
} finally {
  // knex does not own a pool it was given: destroy() only drops its reference, pool.end() closes.
  await replicaDb.destroy()
  await db.destroy()
  await pool.end()
}
