/**
 * TypeORM through `pg-failover-pool/typeorm`: the same DataSource and Repository keep working
 * through a failover, with a multi-host url and with `replication` (reads on replicas).
 */
import type pg from 'pg'
import { DataSource, EntitySchema } from 'typeorm'
import { describe, expect, it } from 'vitest'
import { type FailoverPool, isOutcomeUnknownError } from '../../src/index.js'
import { withFailover } from '../../src/integrations/typeorm.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { replicasKnown, useResources } from '../support/pools.js'
import { promoteMostAdvanced } from '../support/standbys.js'
import { nextEvent, waitUntil } from '../support/wait.js'
import { writeLoop } from '../support/writes-in-flight.js'

const res = useResources()

interface Order {
  id: number
  note: string
}
const OrderSchema = new EntitySchema<Order>({ name: 'Order', tableName: 'orders', columns: { id: { type: Number, primary: true }, note: { type: String } } })

const urlOf = (c: Cluster, nodes: readonly ClusterNode[]): string => `postgres://postgres:${encodeURIComponent(c.password)}@${nodes.map((n) => `127.0.0.1:${n.port}`).join(',')}/postgres`

/** The FailoverPool TypeORM made (its master pool). */
const poolOf = (ds: DataSource): FailoverPool => (ds.driver as unknown as { master: FailoverPool }).master

/** The pools TypeORM made for `replication.slaves` (reader views of the master pool). */
const slavesOf = (ds: DataSource): readonly pg.Pool[] => (ds.driver as unknown as { slaves: pg.Pool[] }).slaves

describe('TypeORM with pg-failover-pool/typeorm', () => {
  it('a multi-host url: the same DataSource and Repository carry on through a failover; no acknowledged write lost; lost writes are outcome-unknown', async () => {
    // Synchronous replication and the most advanced standby promoted, as an HA manager does: only
    // then can a database promise that an acknowledged write survives losing its primary.
    const cluster = await res.cluster({ standbys: 2, synchronous: true })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const ds = new DataSource(withFailover({ type: 'postgres', url: urlOf(cluster, cluster.nodes), entities: [OrderSchema], poolSize: 4 }, { failoverTimeoutMs: 30_000 }))
    await ds.initialize()
    res.defer(() => (ds.isInitialized ? ds.destroy() : undefined))
    await ds.query('CREATE TABLE orders (id int PRIMARY KEY, note text)')
    const repo = ds.getRepository(OrderSchema)
    // One insert at a time through the same Repository throughout, each row keyed by its write's number.
    const loop = writeLoop(async (note, id) => {
      await repo.insert({ id, note })
      return id
    })
    const acked = loop.acknowledged
    await waitUntil(() => acked.length > 20, { what: 'writes before the fault' })
    const failover = nextEvent(poolOf(ds), 'failover')
    await cluster.stop(n0, 'immediate')
    const { primary: promoted } = await promoteMostAdvanced(cluster, [n1, n2])
    await failover
    const atFailover = acked.length
    await waitUntil(() => acked.length >= atFailover + 20, { what: 'writes acknowledged after the failover', timeout: 20_000 })
    await loop.stop()
    // Errors were only writes lost mid-flight, recognisable through TypeORM's QueryFailedError.
    for (const { note, error } of loop.failed) expect(isOutcomeUnknownError(error), `${note}: ${String(error)}`).toBe(true)
    const onNew = new Set((await cluster.sql<{ id: number }>(promoted, 'SELECT id FROM orders')).map((r) => r.id))
    expect(acked.filter((id) => !onNew.has(id))).toEqual([])
    expect(await repo.count()).toBe(onNew.size)
  })

  it('replication: writes on the primary, reads on the replicas; destroy() ends the master pool and every slave view', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const server = (n: ClusterNode) => ({ host: '127.0.0.1', port: n.port, username: 'postgres', password: cluster.password, database: 'postgres' })
    const ds = new DataSource(withFailover({ type: 'postgres', replication: { master: server(n0), slaves: [server(n1), server(n2)] }, entities: [OrderSchema] }))
    await ds.initialize()
    res.defer(() => (ds.isInitialized ? ds.destroy() : undefined))
    await ds.query('CREATE TABLE orders (id int PRIMARY KEY, note text)')
    await ds.getRepository(OrderSchema).insert({ id: 1, note: 'x' })
    const master = poolOf(ds)
    // Until the pool has verified both standbys a read falls back to the primary (readFallback).
    await replicasKnown(master, 2, 20_000)
    const ports = new Set<number>()
    for (let i = 0; i < 10; i++) {
      const runner = ds.createQueryRunner('slave')
      try {
        ports.add((await runner.query('SELECT inet_server_port() AS port'))[0].port)
      } finally {
        await runner.release()
      }
    }
    expect([...ports].sort()).toEqual([n1.port, n2.port].sort())
    expect((await master.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n0.port)
    // TypeORM's PostgresDriver keeps the slaves' pools in `slaves` (and empties it on destroy()).
    const slaves = [...slavesOf(ds)]
    expect(slaves).toHaveLength(2)
    expect(slaves.every((s) => s !== master)).toBe(true)
    await ds.destroy()
    expect(master.ended).toBe(true)
    expect(slaves.map((s) => s.ended)).toEqual([true, true])
  })
})
