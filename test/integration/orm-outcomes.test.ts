/**
 * What an application using an ORM sees when the primary dies under it: knex (on the pool itself)
 * and TypeORM (which builds its own FailoverPool through its `driver` option, from its own options
 * and a libpq multi-host url). ORMs run everything on checked-out clients, so every error of a write
 * in flight must be recognisable as outcome-unknown through the ORM's own error, and every read in
 * flight must still get its answer.
 */
import knexFactory from 'knex'
import pg from 'pg'
import { DataSource, EntitySchema } from 'typeorm'
import { describe, expect, it } from 'vitest'
import { FailoverPool, isOutcomeUnknownError, isSafeToRetryError } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { heldStatements, holdTable, type Settled, settle } from '../support/writes-in-flight.js'

const res = useResources()

interface Item {
  id: number
  note: string
}
const ItemSchema = new EntitySchema<Item>({ name: 'Item', tableName: 'items', columns: { id: { type: Number, primary: true }, note: { type: String } } })

interface Op {
  readonly kind: 'write' | 'read'
  readonly orm: 'knex' | 'typeorm'
  readonly done: Promise<Settled<unknown>>
}

describe('the primary dies under knex and TypeORM', () => {
  it('every error an in-flight write gives the application is recognisable as outcome-unknown, every error of an in-flight read as safe to retry', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 8, failoverTimeoutMs: 30_000 })
    const knex = knexFactory({ client: 'pg', connectionPool: pool })
    res.defer(() => knex.destroy())
    const hosts = cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(',')
    const ds = new DataSource({
      type: 'postgres',
      url: `postgres://postgres:${encodeURIComponent(cluster.password)}@${hosts}/postgres`,
      // TypeORM builds its pool with `new driver.Pool(options)`: a FailoverPool from TypeORM's own options.
      driver: { Pool: FailoverPool, defaults: pg.defaults },
      poolSize: 8,
      entities: [ItemSchema],
    })
    await ds.initialize()
    res.defer(() => ds.destroy())
    await pool.query('CREATE TABLE items (id int PRIMARY KEY, note text)')
    await cluster.waitForReplication(n0)
    const repo = ds.getRepository(ItemSchema)
    let id = 0

    // Work in flight when the primary dies: writes and reads through each ORM's own API, each
    // waiting for the table, which a session of the test holds on the primary: certainly running
    // when the primary dies, however slow the machine (a server-side sleep could end first).
    await holdTable(res, n0, 'items')
    const ops: Op[] = []
    for (let i = 0; i < 4; i++) {
      ops.push({ kind: 'write', orm: 'knex', done: settle(knex.raw('INSERT INTO items VALUES (?, ?)', [++id, 'knex'])) })
      ops.push({ kind: 'write', orm: 'typeorm', done: settle(ds.transaction(async (m) => m.query('INSERT INTO items VALUES ($1, $2)', [++id, 'typeorm']))) })
      ops.push({ kind: 'read', orm: 'knex', done: settle(knex.raw('SELECT count(*) AS n FROM items')) })
      ops.push({ kind: 'read', orm: 'typeorm', done: settle(ds.query('SELECT count(*) AS n FROM items')) })
    }
    await heldStatements(cluster, n0, "query LIKE 'INSERT INTO items%' OR query LIKE 'SELECT count(*) AS n FROM items%'", ops.length)

    await cluster.stop(n0, 'immediate')
    await cluster.promote(n1)
    const results = await Promise.all(ops.map(async (op) => ({ op, result: await op.done })))

    const failedReads = results.filter((r) => r.op.kind === 'read' && !r.result.ok).map((r) => ({ orm: r.op.orm, error: (r.result as { error: Error }).error }))
    for (const { orm, error } of failedReads) {
      expect(isSafeToRetryError(error), `${orm}: ${error?.constructor?.name}: ${error?.message}`).toBe(true)
      expect(isOutcomeUnknownError(error)).toBe(false)
    }
    // Retried by the application, as the error invites, each read gets its answer.
    expect(Number((await knex.raw('SELECT count(*) AS n FROM items')).rows[0].n)).toBeGreaterThanOrEqual(0)
    expect(Number((await ds.query('SELECT count(*) AS n FROM items'))[0].n)).toBeGreaterThanOrEqual(0)
    const writeErrors = results.filter((r) => r.op.kind === 'write' && !r.result.ok).map((r) => ({ orm: r.op.orm, error: (r.result as { error: Error }).error }))
    // The writes were cut mid-flight: they failed (none can have been acknowledged by a dead node) ...
    expect(writeErrors.length).toBe(8)
    // ... and every error, as each ORM throws it (knex: pg's own error; TypeORM: QueryFailedError
    // with the driver error inside), says the outcome is unknown.
    for (const { orm, error } of writeErrors) expect(isOutcomeUnknownError(error), `${orm}: ${error?.constructor?.name}: ${error?.message}`).toBe(true)
    expect(writeErrors.some(({ error }) => error?.constructor?.name === 'QueryFailedError')).toBe(true)

    // The same ORM instances carry on against the new primary.
    await knex('items').insert({ id: ++id, note: 'knex after' })
    await repo.insert({ id: ++id, note: 'typeorm after' })
    expect(await repo.count()).toBeGreaterThanOrEqual(2)
    expect(pool.status().primary).toBe(n1.name)
  })
})
