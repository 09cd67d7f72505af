import { describe, expect, it } from 'vitest'
import { FailoverPool } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { endpointsOf, POOL_DEFAULTS, useResources } from '../support/pools.js'
import { nextEvent } from '../support/wait.js'

const res = useResources()

describe('reader views', () => {
  it("an idle read connection's error reaches the pool's own 'error' listener when no reader view listens", async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    // Not res.pool(): it gives pool.reader a listener of its own, and here nobody listens there.
    const pool = res.track(new FailoverPool({ endpoints: endpointsOf(cluster.nodes), ...POOL_DEFAULTS }))
    const errors: Error[] = []
    pool.on('error', (err) => errors.push(err))
    // Reads go to the replica once the pool has verified it.
    await expect.poll(() => pool.status().endpoints.find((e) => e.name === n1.name)?.role, { timeout: 10_000 }).toBe('standby')

    const client = await pool.reader.connect()
    const { rows } = await client.query<{ pid: number; port: number }>('SELECT pg_backend_pid() AS pid, inet_server_port() AS port')
    client.release()
    expect(rows[0]!.port).toBe(n1.port)
    expect(pool.reader.listenerCount('error')).toBe(1) // only the pool's own

    const errored = nextEvent(pool, 'error', { timeout: 5_000 })
    await cluster.sql(n1, 'SELECT pg_terminate_backend($1, 5000)', [rows[0]!.pid])
    await errored
    expect(errors).toHaveLength(1)
    expect(errors[0]!.message).toMatch(/terminat/i)
  })

  it('an ended reader view gets no more events of the read connections; the other views still do', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster)
    await expect.poll(() => pool.status().endpoints.find((e) => e.name === n1.name)?.role, { timeout: 10_000 }).toBe('standby')
    const ended = pool.readerView()
    const open = pool.readerView()
    const acquired = { ended: 0, open: 0 }
    ended.on('acquire', () => acquired.ended++)
    open.on('acquire', () => acquired.open++)
    await open.query('SELECT 1')
    expect(acquired).toEqual({ ended: 1, open: 1 })

    await ended.end()
    await open.query('SELECT 1')
    expect(acquired).toEqual({ ended: 1, open: 2 })
  })
})
