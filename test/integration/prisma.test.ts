/**
 * Prisma 7 on a FailoverPool, through `@prisma/adapter-pg`: `new PrismaClient({ adapter: new
 * PrismaPg(pool) })` for writes and a second client on `new PrismaPg(pool.reader)` for reads. The
 * primary is killed (SIGKILL) under a write loop and the most advanced standby promoted: the SAME
 * PrismaClient carries on, no acknowledged write is lost, and the writes in flight fail with errors
 * that say so. Also runs examples/prisma.ts against the cluster.
 *
 * The client is generated at test time, offline, into a temporary directory (nothing generated is
 * committed): Prisma 7 has no query engine (a WASM query compiler ships in @prisma/client), and
 * `prisma generate` only looks for a schema engine, which it does not run, at
 * PRISMA_SCHEMA_ENGINE_BINARY; without that variable it would try to download one.
 *
 * What Prisma keeps of an error of a write in flight (how isOutcomeUnknownError can see it):
 * - outside an interactive transaction the adapter runs the statement through `pool.query`, which
 *   fails with OutcomeUnknownError; the adapter does not recognise it as a database error and
 *   rethrows it, and Prisma turns it into a PrismaClientKnownRequestError carrying its `code`
 *   ('PGFP_OUTCOME_UNKNOWN') and message, not the error itself: recognised by that code;
 * - inside an interactive transaction (a checked-out client), a connection that just closes gives
 *   pg's own "Connection terminated unexpectedly", which the adapter rethrows as it is: the pool's
 *   mark is on it, recognised;
 * - a FATAL the server sent first (57P01 on pg_terminate_backend or a fast shutdown) is rebuilt
 *   by the adapter into a plain object ({ kind: 'postgres', code, severity, message,
 *   originalCode, originalMessage }) inside a DriverAdapterError (thrown as is at COMMIT, or in
 *   `meta.driverAdapterError` of a P2039 PrismaClientKnownRequestError for a statement): the
 *   marked driver error is dropped, but isOutcomeUnknownError reads the rebuilt object (a FATAL
 *   connection code on a statement that was sent) and answers true. The third test shows this,
 *   for a statement and for COMMIT, against a real server.
 * - a reset (ECONNRESET) is rebuilt the same way, as { kind: 'ConnectionClosed' } (P1017 / P2010
 *   "Server has closed the connection."), which isOutcomeUnknownError also recognises; that case
 *   is covered only by a unit test on the rebuilt shape (test/unit/error-policy.test.ts), not here.
 */
import { existsSync, symlinkSync, writeFileSync } from 'node:fs'
import { createRequire } from 'node:module'
import path from 'node:path'
import { pathToFileURL } from 'node:url'
import { PrismaPg } from '@prisma/adapter-pg'
import pg from 'pg'
import { beforeAll, describe, expect, it, vi } from 'vitest'
import { type FailoverPool, isOutcomeUnknownError } from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { ROOT, runExample, runProcess } from '../support/process.js'
import { promoteMostAdvanced } from '../support/standbys.js'
import { nextEvent } from '../support/wait.js'
import { carriesMark, createHoldTriggers, errorOf, heldStatements, HOLD_LOCK, holdLock, settle, terminateHeld, writeLoop } from '../support/writes-in-flight.js'

const SCHEMA = `
generator client {
  provider = "prisma-client"
  output   = "client"
}

datasource db {
  provider = "postgresql"
}

model Order {
  id   Int    @id @default(autoincrement())
  note String
  port Int    @default(dbgenerated("inet_server_port()"))

  @@map("prisma_orders")
}
`

/** The part of the generated client's API the tests use (it is generated at run time, so typed here). */
interface Order {
  id: number
  note: string
  port: number
}
interface OrderDb {
  order: {
    create(args: { data: { note: string } }): Promise<Order>
    findMany(args: { where: { note: { startsWith: string } } }): Promise<Order[]>
    count(args?: { where: { note: { startsWith: string } } }): Promise<number>
  }
  $queryRaw<T>(query: TemplateStringsArray, ...values: unknown[]): Promise<T>
}
interface PrismaClientLike extends OrderDb {
  $transaction<T>(fn: (tx: OrderDb) => Promise<T>, options?: { timeout?: number; maxWait?: number }): Promise<T>
  $disconnect(): Promise<void>
}
type PrismaClientClass = new (options: { adapter: PrismaPg }) => PrismaClientLike

/**
 * Generates the client for {@link SCHEMA} into `dir`, offline, and returns its PrismaClient class.
 * `dir` gets a `node_modules` link to the repository's, so the generated code finds
 * @prisma/client from a temporary directory.
 */
async function generateClient(dir: string): Promise<PrismaClientClass> {
  symlinkSync(path.join(ROOT, 'node_modules'), path.join(dir, 'node_modules'), 'dir')
  writeFileSync(path.join(dir, 'schema.prisma'), SCHEMA)
  const cli = createRequire(import.meta.url).resolve('prisma/build/index.js')
  const env = {
    ...process.env,
    // Must name an existing file; `generate` never runs it.
    PRISMA_SCHEMA_ENGINE_BINARY: existsSync('/bin/true') ? '/bin/true' : '/usr/bin/true',
    CHECKPOINT_DISABLE: '1', // no version check over the network
    PRISMA_HIDE_UPDATE_MESSAGE: '1',
  }
  // cwd = dir: no prisma.config.ts of anyone else's is picked up.
  const { code, stdout, stderr } = await runProcess(process.execPath, [cli, 'generate', '--schema', 'schema.prisma'], { cwd: dir, env, timeoutMs: 60_000 })
  if (code !== 0) throw new Error(`prisma generate exited with ${code}:\n${stdout}\n${stderr}`)
  const module = (await import(pathToFileURL(path.join(dir, 'client', 'client.ts')).href)) as { PrismaClient: PrismaClientClass }
  return module.PrismaClient
}

/** The held writes' statements as pg_stat_activity shows them: the adapter's INSERT, and COMMIT. */
const HELD = "query LIKE 'INSERT INTO%prisma_orders%' OR query = 'COMMIT'"

let cluster: Cluster
let n0: ClusterNode
let n1: ClusterNode
let n2: ClusterNode
let pool: FailoverPool
let prisma: PrismaClientLike
let reader: PrismaClientLike

const shared = useResources('all')

beforeAll(async () => {
  // Generation (a child process) and the cluster's start overlap.
  const [PrismaClient] = await Promise.all([
    generateClient(shared.tempDir('pgfp-prisma-')),
    shared.cluster({ standbys: 2, synchronous: true }).then((c) => (cluster = c)),
  ])
  ;[n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
  // Room for two writes held in flight, the write loop and the reads next to them.
  pool = shared.pool(cluster, { max: 6 })
  prisma = new PrismaClient({ adapter: new PrismaPg(pool) })
  reader = new PrismaClient({ adapter: new PrismaPg(pool.reader) })
  // Runs before the pool and the cluster are torn down (newest first).
  shared.defer(async () => {
    await reader.$disconnect().catch(() => undefined)
    await prisma.$disconnect().catch(() => undefined)
  })
  await pool.query('CREATE TABLE prisma_orders (id serial PRIMARY KEY, note text NOT NULL, port int NOT NULL DEFAULT inet_server_port())')
  // Writes a test holds in flight (test/support/writes-in-flight.ts): one waits in its INSERT, one at COMMIT.
  await createHoldTriggers(pool, 'prisma_orders')
})

/** Interactive transactions that wait on the lock must not time out meanwhile (Prisma's default is 5 s). */
const LONG_TRANSACTION = { timeout: 60_000, maxWait: 20_000 }

describe('Prisma 7 (@prisma/adapter-pg) on a FailoverPool (primary + 2 synchronous standbys)', () => {
  it('examples/prisma.ts generates its client offline, runs against the cluster and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('prisma.ts', cluster.nodes.map((n) => n.url), 50_000)
    expect({ code, stderr: code === 0 ? '' : stderr }).toEqual({ code: 0, stderr: '' })
    expect(stdout).toContain(`placed orders 1, 2 in one transaction on the primary (server port ${n0.port})`)
    expect(stdout).toContain(`placed order 3 (server port ${n0.port})`)
    expect(stdout).toMatch(new RegExp(`read order 3 from (a replica \\(server port (${n1.port}|${n2.port})\\)|the primary \\(server port ${n0.port}\\)): pen`))
    expect(stdout).toContain(`status: primary 127.0.0.1:${n0.port}, mode read-write, failovers 0`)
    expect(stdout).not.toContain(cluster.password)
  })

  it('the adapter takes the pool and pool.reader as pg.Pools: statements through pool.query, a transaction on one pool.connect(), reads on the standbys', async () => {
    // The adapter's own test: anything that is not `instanceof` its pg.Pool is taken as settings.
    expect(pool).toBeInstanceOf(pg.Pool)
    expect(pool.reader).toBeInstanceOf(pg.Pool)

    const query = vi.spyOn(pool, 'query')
    const connect = vi.spyOn(pool, 'connect')
    try {
      const order = await prisma.order.create({ data: { note: 'first' } })
      expect(order).toEqual({ id: expect.any(Number), note: 'first', port: n0.port })
      expect({ queries: query.mock.calls.length > 0, connects: connect.mock.calls.length }).toEqual({ queries: true, connects: 0 })

      const pids = await prisma.$transaction(async (tx) => {
        await tx.order.create({ data: { note: 'tx a' } })
        const [a] = await tx.$queryRaw<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`
        await tx.order.create({ data: { note: 'tx b' } })
        const [b] = await tx.$queryRaw<{ pid: number }[]>`SELECT pg_backend_pid() AS pid`
        return [a!.pid, b!.pid]
      })
      expect(connect).toHaveBeenCalledTimes(1)
      expect(pids[0]).toBe(pids[1])
    } finally {
      query.mockRestore()
      connect.mockRestore()
    }
    expect(await cluster.sql(n0, "SELECT note, port FROM prisma_orders WHERE note IN ('first', 'tx a', 'tx b') ORDER BY id")).toEqual(
      ['first', 'tx a', 'tx b'].map((note) => ({ note, port: n0.port })),
    )

    for (let i = 0; i < 4; i++) {
      const [where] = await reader.$queryRaw<{ port: number; replica: boolean }[]>`SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica`
      expect(where?.replica).toBe(true)
      expect([n1.port, n2.port]).toContain(where?.port)
    }
    await cluster.waitForReplication(n0)
    expect(await reader.order.count({ where: { note: { startsWith: 'tx ' } } })).toBe(2)
  })

  it('a statement cut by a FATAL 57P01 (its backend terminated) is recognised as outcome-unknown, outside a transaction and inside one (from the copy Prisma keeps)', async () => {
    const holder = await holdLock(shared, n0)
    const create = settle(prisma.order.create({ data: { note: 'held in insert (terminated)' } }))
    const inTx = settle(prisma.$transaction((tx) => tx.order.create({ data: { note: 'held in insert (terminated, in a transaction)' } }), LONG_TRANSACTION))
    const atCommit = settle(prisma.$transaction((tx) => tx.order.create({ data: { note: 'held at commit (terminated)' } }), LONG_TRANSACTION))
    await heldStatements(cluster, n0, HELD, 3)
    await terminateHeld(cluster, n0, HELD)

    // Through pool.query: the pool's OutcomeUnknownError, whose code Prisma copies onto its own error.
    const e1 = errorOf(await create) as Error & { code?: string; meta?: unknown }
    expect({ name: e1.constructor.name, code: e1.code, message: e1.message }).toEqual({
      name: 'PrismaClientKnownRequestError',
      code: 'PGFP_OUTCOME_UNKNOWN',
      message: expect.stringContaining('may or may not have been applied (terminating connection due to administrator command)'),
    })
    expect(isOutcomeUnknownError(e1)).toBe(true)

    // A statement of an interactive transaction: P2039 with the adapter's rebuilt error in meta.
    const e2 = errorOf(await inTx) as Error & { code?: string; meta?: { driverAdapterError?: Error & { cause?: unknown } } }
    expect({ name: e2.constructor.name, code: e2.code }).toEqual({ name: 'PrismaClientKnownRequestError', code: 'P2039' })
    const adapterError = e2.meta?.driverAdapterError
    expect(adapterError?.name).toBe('DriverAdapterError')
    expect(adapterError?.cause).toMatchObject({ kind: 'postgres', code: '57P01', severity: 'FATAL', originalCode: '57P01' })
    // The marked pg error is gone, but the rebuilt one still says a FATAL 57P01 answered a sent statement.
    expect(isOutcomeUnknownError(e2)).toBe(true)

    // COMMIT of an interactive transaction: the adapter's DriverAdapterError itself, same plain cause.
    const e3 = errorOf(await atCommit) as Error & { cause?: unknown }
    expect({ name: e3.name, cause: e3.cause }).toMatchObject({ name: 'DriverAdapterError', cause: { kind: 'postgres', originalCode: '57P01', severity: 'FATAL' } })
    expect(isOutcomeUnknownError(e3)).toBe(true)

    // None of them committed, and none was replayed (a replay would commit once the lock is free).
    await holder.query(`SELECT pg_advisory_unlock(${HOLD_LOCK})`)
    expect(await prisma.order.count({ where: { note: { startsWith: 'held' } } })).toBe(0)
    expect(pool.status()).toMatchObject({ primary: n0.name, failovers: 0 })
  })

  it('kill -9 the primary under a write loop, promote the most advanced standby: the same PrismaClient carries on, no acknowledged write lost, writes in flight outcome-unknown', async () => {
    await holdLock(shared, n0)
    const heldCreate = settle(prisma.order.create({ data: { note: 'held in insert' } }))
    const heldCommit = settle(prisma.$transaction((tx) => tx.order.create({ data: { note: 'held at commit' } }), LONG_TRANSACTION))
    await heldStatements(cluster, n0, HELD, 2)

    // One write at a time, as fast as they are acknowledged, through the same PrismaClient throughout.
    const loop = writeLoop((note) => prisma.order.create({ data: { note } }))
    const { acknowledged, failed } = loop
    await expect.poll(() => acknowledged.length, { timeout: 10_000 }).toBeGreaterThanOrEqual(3)

    const failover = nextEvent(pool, 'failover')
    await cluster.kill(n0)
    const { primary: next, standbys: [other] } = await promoteMostAdvanced(cluster, [n1, n2])
    expect(await failover).toMatchObject({ from: n0.name, to: next.name })
    await expect.poll(() => acknowledged.filter((o) => o.port === next.port).length, { timeout: 20_000 }).toBeGreaterThanOrEqual(5)
    await loop.stop()

    // The writes in flight when the node died failed, each recognisably outcome-unknown.
    const e1 = errorOf(await heldCreate) as Error & { code?: string }
    expect({ name: e1.constructor.name, code: e1.code }).toEqual({ name: 'PrismaClientKnownRequestError', code: 'PGFP_OUTCOME_UNKNOWN' })
    expect(isOutcomeUnknownError(e1)).toBe(true)
    // The closed connection at COMMIT: pg's own error, which the adapter rethrows as it is (marked).
    const e2 = errorOf(await heldCommit) as Error
    expect(e2.message).toMatch(/Connection terminated/)
    expect(carriesMark(e2)).toBe(true)
    expect(isOutcomeUnknownError(e2)).toBe(true)

    // Every acknowledged write is on the new primary; the held ones are not (never replayed).
    const rows = await cluster.sql<{ note: string }>(next, "SELECT note FROM prisma_orders WHERE note LIKE 'loop %' OR note LIKE 'held%'")
    const onNext = new Set(rows.map((r) => r.note))
    expect(acknowledged.map((o) => o.note).filter((note) => !onNext.has(note))).toEqual([])
    expect([...onNext].filter((note) => note.startsWith('held'))).toEqual([])
    // A loop write caught by the kill is outcome-unknown, or else it provably did not run, and then
    // it is not there.
    expect(failed.filter((f) => !isOutcomeUnknownError(f.error) && onNext.has(f.note)).map((f) => `${f.note}: ${String(f.error)}`)).toEqual([])
    // Writes acknowledged after the kill came from the new primary only.
    const firstOnNext = acknowledged.findIndex((o) => o.port === next.port)
    expect(acknowledged.slice(firstOnNext).every((o) => o.port === next.port)).toBe(true)
    expect(pool.status()).toMatchObject({ primary: next.name, failovers: 1 })

    // The same client still runs interactive transactions, now on the new primary.
    const [a, b] = await prisma.$transaction(async (tx) => [await tx.order.create({ data: { note: 'after a' } }), await tx.order.create({ data: { note: 'after b' } })])
    expect([a!.port, b!.port]).toEqual([next.port, next.port])

    // The reader client reaches the standby left, once it streams from the new primary.
    await expect
      .poll(async () => (await reader.$queryRaw<{ port: number; replica: boolean }[]>`SELECT inet_server_port() AS port, pg_is_in_recovery() AS replica`)[0], { timeout: 10_000 })
      .toEqual({ port: other!.port, replica: true })
  })

  it('$disconnect() leaves the pool open (the adapter does not own a pool it was given)', async () => {
    await reader.$disconnect()
    await prisma.$disconnect()
    expect(pool.ending).toBe(false)
    const { rows } = await pool.query<{ n: number }>("SELECT count(*)::int AS n FROM prisma_orders WHERE note LIKE 'after %'")
    expect(rows[0]!.n).toBe(2)
  })
})
