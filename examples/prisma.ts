/**
 * Prisma 7 on a FailoverPool, through Prisma's pg driver adapter (`@prisma/adapter-pg`): one
 * PrismaClient on the pool for writes and transactions, a second on `pool.reader` for reads from
 * replicas. The same PrismaClient follows a failover: the adapter asks the pool for a connection
 * per statement and per transaction, and the pool hands out the current primary's.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/prisma.ts
 *
 * It first generates the client from examples/prisma/schema.prisma into examples/prisma/generated/
 * (not committed), offline: Prisma 7 runs queries without any engine binary, and `prisma generate`
 * needs none either once PRISMA_SCHEMA_ENGINE_BINARY names an existing file (it is not run). It
 * creates the table `pgfp_example_orders` if it does not exist (use Prisma Migrate for real
 * schemas) and adds a few rows per run.
 *
 * Keep a single copy of `pg` in the app (e.g. an npm override `"pg": "$pg"`): the adapter takes a
 * pool only when it is `instanceof` its own `pg.Pool`, and otherwise silently treats the object as
 * connection settings and builds a plain pg.Pool from them, which would not follow a failover.
 */
import { spawnSync } from 'node:child_process'
import { existsSync } from 'node:fs'
import { createRequire } from 'node:module'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { PrismaPg } from '@prisma/adapter-pg'
import { FailoverPool, NoPrimaryError, isOutcomeUnknownError } from '../src/index.js' // in your code: from 'pg-failover-pool'

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

// ---- the generated client ------------------------------------------------------------------
// In an app this is `npx prisma generate` at build time and a typed static import:
//   import { PrismaClient } from './generated/prisma/client.js'
// Here it is generated on every run, so the import happens at run time and the few methods used
// are typed by hand below.
const schema = fileURLToPath(new URL('prisma/schema.prisma', import.meta.url))
const generated = spawnSync(process.execPath, [createRequire(import.meta.url).resolve('prisma/build/index.js'), 'generate', '--schema', schema], {
  env: {
    ...process.env,
    // Must exist; `generate` does not run it. Without it Prisma downloads a schema engine.
    PRISMA_SCHEMA_ENGINE_BINARY: process.env.PRISMA_SCHEMA_ENGINE_BINARY ?? (existsSync('/bin/true') ? '/bin/true' : '/usr/bin/true'),
    CHECKPOINT_DISABLE: '1', // no version check over the network
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
  },
  encoding: 'utf8',
})
if (generated.status !== 0) {
  console.error(`prisma generate failed:\n${generated.stdout}${generated.stderr}`)
  process.exit(1)
}

interface Order {
  id: number
  item: string
  port: number
  placedAt: Date
}
interface OrderDb {
  order: {
    create(args: { data: { item: string } }): Promise<Order>
    count(): Promise<number>
  }
}
interface PrismaClientLike extends OrderDb {
  $transaction<T>(fn: (tx: OrderDb) => Promise<T>): Promise<T>
  $queryRaw<T>(query: TemplateStringsArray, ...values: unknown[]): Promise<T>
  $executeRawUnsafe(sql: string): Promise<number>
  $disconnect(): Promise<void>
}
const clientModule = pathToFileURL(fileURLToPath(new URL('prisma/generated/client.ts', import.meta.url))).href
const { PrismaClient } = (await import(clientModule)) as { PrismaClient: new (options: { adapter: PrismaPg }) => PrismaClientLike }

// ---- the pool and the two clients ----------------------------------------------------------
const pool = new FailoverPool({ endpoints, max: 10, connectionTimeoutMillis: 3_000 })
pool.on('failover', (e) => console.log(`failover: ${e.from} -> ${e.to} (${e.reason})`))

// `disposeExternalPool` stays false (the default): $disconnect() leaves the pool to pool.end().
const prisma = new PrismaClient({ adapter: new PrismaPg(pool) })
const replica = new PrismaClient({ adapter: new PrismaPg(pool.reader) })

try {
  await prisma.$executeRawUnsafe(
    `CREATE TABLE IF NOT EXISTS pgfp_example_orders (
       id serial PRIMARY KEY, item text NOT NULL, port int NOT NULL DEFAULT inet_server_port(), placed_at timestamptz NOT NULL DEFAULT now())`,
  )

  // An interactive transaction: Prisma checks out one connection (pool.connect()) for BEGIN ... COMMIT.
  const placed = await prisma.$transaction(async (tx) => [await tx.order.create({ data: { item: 'book' } }), await tx.order.create({ data: { item: 'lamp' } })])
  console.log(`placed orders ${placed.map((o) => o.id).join(', ')} in one transaction on the primary (server port ${placed[0]!.port})`)

  // Inside withReadYourWrites a read through pool.reader goes to a replica only once it has
  // replayed this caller's writes (or else to the primary), so the order just written is there.
  await pool.withReadYourWrites(async () => {
    const order = await prisma.order.create({ data: { item: 'pen' } })
    console.log(`placed order ${order.id} (server port ${order.port})`)
    const [row] = await replica.$queryRaw<{ item: string; port: number; replica: boolean }[]>`
      SELECT item, inet_server_port() AS port, pg_is_in_recovery() AS replica FROM pgfp_example_orders WHERE id = ${order.id}`
    if (!row) throw new Error(`order ${order.id} was not found by the read`)
    console.log(`read order ${order.id} from ${row.replica ? 'a replica' : 'the primary'} (server port ${row.port}): ${row.item}`)
  })

  console.log(`orders so far: ${await replica.order.count()}`)
  const status = pool.status()
  console.log(`status: primary ${status.primary}, mode ${status.mode}, failovers ${status.failovers}`)
} catch (err) {
  // A write cut mid-flight by a failover. Outside an interactive transaction Prisma throws a
  // PrismaClientKnownRequestError whose `code` is the pool's 'PGFP_OUTCOME_UNKNOWN'; at the COMMIT
  // of an interactive transaction whose connection closed, pg's own (marked) error.
  if (isOutcomeUnknownError(err)) console.error('a write was cut mid-flight: it may or may not have committed; check before retrying')
  else if ((err instanceof NoPrimaryError)) console.error(`no primary within failoverTimeoutMs: ${err.message}`)
  else console.error(err instanceof Error ? `${err.name}: ${err.message}` : err)
  process.exitCode = 1
} finally {
  await replica.$disconnect()
  await prisma.$disconnect()
  await pool.end()
}
