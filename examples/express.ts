/**
 * An Express app: writes on the pool (the primary), reads on `pool.reader` (replicas), a readiness
 * route, and read-your-writes across requests with a consistency token in a header.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     PORT=3000 npx tsx examples/express.ts
 *
 *   curl -si -X POST localhost:3000/notes -H 'content-type: application/json' -d '{"body":"hi"}'
 *     -> 201, {"id":1}, and an `x-consistency-token: pgfp1:0/3000148` header
 *   curl -s localhost:3000/notes/1 -H 'x-consistency-token: pgfp1:0/3000148'
 *     -> served by a replica that has replayed that write, or by the primary
 *   curl -s localhost:3000/ready    -> 200 with the pool's status, 503 while no primary is known
 *
 * Creates the table `pgfp_example_notes` if it does not exist.
 */
import express, { type ErrorRequestHandler } from 'express'
import { FailoverPool, healthHandler, ConfigError, NoPrimaryError, isOutcomeUnknownError } from '../src/index.js' // in your code: from 'pg-failover-pool'

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

// A request should not hang for the default 30 s: past 10 s without a primary, answer 503.
const pool = new FailoverPool({ endpoints, max: 20, connectionTimeoutMillis: 3_000, failoverTimeoutMs: 10_000 })
pool.on('error', (err) => console.warn(`idle connection lost: ${err.message}`))
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason}) in ${e.durationMs} ms`))

await pool.query('CREATE TABLE IF NOT EXISTS pgfp_example_notes (id serial PRIMARY KEY, body text NOT NULL, written_at timestamptz NOT NULL DEFAULT now())')

const TOKEN = 'x-consistency-token'
const app = express()
app.use(express.json())

// Load balancers and orchestrators ask this before sending traffic: 503 while no primary is
// verified (during a failover), so they hold traffic instead of collecting errors.
app.get('/ready', healthHandler(pool))

// Every request runs in a read-your-writes context seeded from the token of the client's last
// write: a client that just wrote never reads an older state from a lagging replica, while
// everyone else's reads stay on the replicas. The token is client input: a malformed one is a 400.
app.use((req, res, next) => {
  try {
    pool.withReadYourWrites(next, req.get(TOKEN) ?? null)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    res.status(400).json({ error: `bad ${TOKEN} header` })
  }
})

app.post('/notes', async (req, res) => {
  const body = typeof req.body?.body === 'string' ? req.body.body : null
  if (body === null) return void res.status(400).json({ error: 'expected {"body": "..."}' })
  const { rows } = await pool.query<{ id: number }>('INSERT INTO pgfp_example_notes (body) VALUES ($1) RETURNING id', [body])
  // The write's WAL position: hand it to the client so its next request can ask for it.
  const token = pool.consistencyToken()
  if (token !== null) res.set(TOKEN, token)
  res.status(201).json({ id: rows[0]!.id })
})

app.get('/notes/:id', async (req, res) => {
  const { rows } = await pool.reader.query<{ id: number; body: string; replica: boolean }>(
    'SELECT id, body, pg_is_in_recovery() AS replica FROM pgfp_example_notes WHERE id = $1',
    [Number(req.params.id)],
  )
  if (rows.length === 0) return void res.status(404).json({ error: 'not found' })
  res.json({ ...rows[0], servedBy: rows[0]!.replica ? 'replica' : 'primary' })
})

// Express 5 passes rejected promises here. The pool's errors tell the client different things.
const onError: ErrorRequestHandler = (err, _req, res, _next) => {
  if ((err instanceof NoPrimaryError)) {
    // Nothing ran: safe for the client to try again shortly.
    res.set('retry-after', '2').status(503).json({ error: 'database failover in progress' })
  } else if (isOutcomeUnknownError(err)) {
    // The connection broke after the INSERT was sent: it may have committed. Say so rather than
    // inviting a blind retry that could write it twice.
    res.status(500).json({ error: 'outcome unknown: check before retrying' })
  } else {
    console.error(err)
    res.status(500).json({ error: 'internal error' })
  }
}
app.use(onError)

const server = app.listen(Number(process.env.PORT ?? 3000), () => console.log(`listening on :${process.env.PORT ?? 3000}`))

for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    // Stop taking requests, let the ones in flight finish, then close the connections.
    server.close(() => void pool.end().then(() => process.exit(0)))
  })
}
