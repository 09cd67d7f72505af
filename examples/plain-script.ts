/**
 * A plain script: one write, one read through a replica, the pool's status, a clean exit.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/plain-script.ts
 *
 * (`npx tsx examples/local-cluster.ts` starts a local primary + standby and prints PGFP_ENDPOINTS.)
 * It creates the table `pgfp_example_notes` if it does not exist and adds one row per run.
 */
import { FailoverPool } from '../src/index.js' // in your code: from 'pg-failover-pool'

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas, in any order).')
  process.exit(2)
}

const pool = new FailoverPool({
  endpoints,
  max: 5,
  connectionTimeoutMillis: 3_000,
  // A script would rather fail than wait the default 30 s for a primary that may never come.
  failoverTimeoutMs: 10_000,
})

// Idle connections that break are counted by the pool (never an unhandled 'error' crash); logging
// them still tells you that a node went away.
pool.on('error', (err) => console.warn(`idle connection lost: ${err.message}`))
// Only fires if the primary changes while the script runs; in a long-lived process this is the
// line you want in your logs.
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason}) in ${e.durationMs} ms`))

try {
  await pool.query(
    'CREATE TABLE IF NOT EXISTS pgfp_example_notes (id serial PRIMARY KEY, body text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())',
  )

  // Replicas replay the primary's WAL a little later. Inside withReadYourWrites a read through
  // pool.reader goes to a replica only once it has replayed this caller's writes (or to the
  // primary), so the row we just wrote is there to read.
  await pool.withReadYourWrites(async () => {
    const written = await pool.query<{ id: number; port: number }>(
      'INSERT INTO pgfp_example_notes (body) VALUES ($1) RETURNING id, inet_server_port() AS port',
      [`hello from pid ${process.pid}`],
    )
    const { id, port } = written.rows[0]!
    console.log(`wrote note ${id} on the primary (server port ${port})`)

    const read = await pool.reader.query<{ body: string; port: number; replica: boolean }>(
      'SELECT body, inet_server_port() AS port, pg_is_in_recovery() AS replica FROM pgfp_example_notes WHERE id = $1',
      [id],
    )
    const row = read.rows[0]
    if (!row) throw new Error(`note ${id} was not found by the read`)
    console.log(`read note ${id} from ${row.replica ? 'a replica' : 'the primary'} (server port ${row.port}): ${row.body}`)
  })

  const status = pool.status()
  console.log(`status: primary ${status.primary}, mode ${status.mode}, failovers ${status.failovers}`)
  for (const e of status.endpoints) console.log(`  ${e.name}: ${e.role}`)
} catch (err) {
  console.error(err instanceof Error ? `${err.name}: ${err.message}` : err)
  process.exitCode = 1
} finally {
  // Closes every connection and timer: the process exits by itself afterwards.
  await pool.end()
}
