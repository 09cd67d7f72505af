import pg from 'pg'
import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent, waitUntil } from '../support/wait.js'

const res = useResources()

describe('connectClient: a client made by a library that pools by itself', () => {
  it('connects to the verified primary (or a replica), whatever address it was made with, and is cut when the pool leaves that node', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { healthCheckIntervalMs: 2_000 })
    await pool.query('CREATE TABLE t (id int)')
    await cluster.waitForReplication(n0)

    // The library's own address is a placeholder: the pool decides where the client goes.
    const writer = new pg.Client({ host: 'placeholder.invalid', port: 1 })
    writer.on('error', () => undefined)
    await pool.connectClient(writer)
    expect((await writer.query('SELECT inet_server_port() AS p')).rows[0].p).toBe(n0.port)
    const reader = new pg.Client({ host: 'placeholder.invalid', port: 1 })
    res.defer(() => reader.end().catch(() => undefined))
    await pool.connectClient(reader, 'read')
    expect((await reader.query('SELECT inet_server_port() AS p')).rows[0].p).toBe(n1.port)

    // A write running on the old primary when the cluster moves on (the old primary stays up and
    // writable): the pool leaves it and cuts the client, so the write is never acknowledged.
    const running = writer.query('INSERT INTO t SELECT 1 FROM pg_sleep(3)').then(() => 'acknowledged', (e: Error) => e)
    await waitUntil(async () => (await cluster.sql<{ n: number }>(n0, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t%' AND state = 'active'"))[0]!.n === 1, { what: 'the insert running' })
    const failover = nextEvent(pool, 'failover')
    await cluster.promote(n1)
    await failover
    expect(await running).toBeInstanceOf(Error)

    // A new client goes to the new primary.
    const again = new pg.Client({ host: 'placeholder.invalid', port: 1 })
    res.defer(() => again.end().catch(() => undefined))
    await pool.connectClient(again)
    expect((await again.query('SELECT inet_server_port() AS p')).rows[0].p).toBe(n1.port)
  })
})
