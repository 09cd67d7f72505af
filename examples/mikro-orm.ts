/**
 * MikroORM 6 on a FailoverPool. MikroORM 6 runs its SQL through knex and has no option of its own
 * for a pool instance, but it takes a ready knex instance as `driverOptions`: build one on the pool
 * with knex's `connectionPool` (knex >= 3.3) and MikroORM uses it instead of building its own
 * knex. A second MikroORM on `pool.reader` serves reads from replicas.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/mikro-orm.ts
 *
 * Creates the table `pgfp_example_tasks` if it does not exist and adds a few rows per run.
 *
 * Needs ONE copy of knex >= 3.3 in the app: @mikro-orm/knex 6.6 pins knex 3.2.10 and recognises a
 * knex instance with `instanceof` against its own copy, so add the npm override
 * `"overrides": { "knex": "$knex" }` next to a direct dependency `"knex": "^3.3.0"`. Without it
 * MikroORM silently builds its own knex from `dbName`/`host` (127.0.0.1:5432 by default), which
 * never follows a failover.
 */
import { EntitySchema, MikroORM } from '@mikro-orm/postgresql'
import knex from 'knex'
import { FailoverPool, NoPrimaryError, isOutcomeUnknownError } from '../src/index.js' // in your code: from 'pg-failover-pool'

interface Task {
  id: number
  title: string
  done: boolean
  /** Filled by the server: the port of the node that wrote the row. */
  port?: number
}

// EntitySchema: no decorators, no reflect-metadata.
const TaskSchema = new EntitySchema<Task>({
  name: 'Task',
  tableName: 'pgfp_example_tasks',
  properties: {
    id: { type: 'number', primary: true, autoincrement: true },
    title: { type: 'string' },
    done: { type: 'boolean', default: false },
    port: { type: 'number', nullable: true, persist: false },
  },
})

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

const pool = new FailoverPool({ endpoints, max: 10, connectionTimeoutMillis: 3_000 })
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason})`))

// knex checks out a client (pool.connect()) per query and per transaction: after a failover the
// next checkout is on the new primary, so the same MikroORM instance carries on. `dbName` is only
// there because MikroORM's config requires one; connections come from the pool. (MikroORM's own
// `pool`, `host`, `searchPath` and type overrides do not apply to a knex it was given: set
// `options: '-c search_path=...'` on the FailoverPool if you need one.)
const orm = await MikroORM.init({ entities: [TaskSchema], dbName: 'postgres', driverOptions: knex({ client: 'pg', connectionPool: pool }) })
const replicaOrm = await MikroORM.init({ entities: [TaskSchema], dbName: 'postgres', driverOptions: knex({ client: 'pg', connectionPool: pool.reader }) })

try {
  await orm.em.getConnection().execute(
    'CREATE TABLE IF NOT EXISTS pgfp_example_tasks (id serial PRIMARY KEY, title text NOT NULL, done boolean NOT NULL DEFAULT false, port int DEFAULT inet_server_port())',
  )

  // One EntityManager per unit of work (a request, a job): em.fork().
  const em = orm.em.fork()
  const task = em.create(TaskSchema, { title: 'water the plants', done: false })
  await em.persist(task).flush() // flush = BEGIN; INSERT ... RETURNING; COMMIT on one checked-out client
  console.log(`created task ${task.id} on the primary`)

  await orm.em.fork().transactional(async (tx) => {
    const t = await tx.findOneOrFail(TaskSchema, task.id)
    t.done = true
    tx.persist(tx.create(TaskSchema, { title: 'buy seeds', done: false }))
  })
  const mine = await orm.em.fork().find(TaskSchema, { id: { $gte: task.id } }, { orderBy: { id: 'asc' } })
  console.log(`tasks written: ${mine.map((t) => `${t.id} "${t.title}"${t.done ? ' (done)' : ''} on port ${t.port}`).join(', ')}`)

  const [where] = await replicaOrm.em.getConnection().execute<{ port: number; replica: boolean }[]>('SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica')
  const count = await replicaOrm.em.fork().count(TaskSchema)
  console.log(`reader: ${where!.replica ? 'a replica' : 'the primary'} (server port ${where!.port}) counts ${count} tasks`)
} catch (err) {
  // MikroORM wraps the driver error in a DriverException that copies its properties, so the pool's
  // outcome-unknown mark is there for isOutcomeUnknownError to find.
  if (isOutcomeUnknownError(err)) console.error('a write was cut mid-flight: it may or may not have committed; check before retrying')
  else if ((err instanceof NoPrimaryError)) console.error(`no primary within failoverTimeoutMs: ${err.message}`)
  else console.error(err instanceof Error ? `${err.name}: ${err.message}` : err)
  process.exitCode = 1
} finally {
  // close() destroys the knex instances, which leave a pool they were given open: pool.end() closes it.
  await replicaOrm.close()
  await orm.close()
  await pool.end()
}
