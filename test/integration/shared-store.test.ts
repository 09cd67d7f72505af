import { Redis } from 'ioredis'
import { describe, expect, it } from 'vitest'
import { type FailoverPool, type FailoverPoolOptions, RedisStateStore } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { startRedis } from '../support/redis.js'
import { nextEvent } from '../support/wait.js'

const res = useResources()

function redisClient(url: string): Redis {
  const client = new Redis(url, { lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  client.on('error', () => undefined)
  res.defer(() => client.disconnect())
  return client
}

describe('a fleet sharing the Redis state store', () => {
  it('two pools converge on the same primary after a failover seen by only one of them', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const redis = res.track(await startRedis())
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const make = (options: Partial<FailoverPoolOptions>): FailoverPool =>
      res.pool(cluster, { max: 2, stateStore: new RedisStateStore({ client: redisClient(redis.url), pollIntervalMs: 200 }), ...options })
    const a = make({ healthCheckIntervalMs: 100 })
    // b has no way of its own to notice: no promotion watch, health checks a minute apart, and its
    // old primary stays up and writable (the split-brain case).
    const b = make({ healthCheckIntervalMs: 60_000, promotionWatch: false })
    await a.query('CREATE TABLE t (id int, port int)')
    // Written to on n1 once it is promoted (replication is asynchronous).
    await cluster.waitForReplication(n0)
    await b.query('SELECT 1')
    expect(b.status().primary).toBe(n0.name)

    const failover = nextEvent(a, 'failover')
    await cluster.promote(n1)
    await cluster.repoint(n2, n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name, epoch: 2 })

    const started = performance.now()
    await expect.poll(() => b.status().primary, { timeout: 3_000, interval: 10 }).toBe(n1.name)
    const convergedMs = performance.now() - started
    expect(convergedMs).toBeLessThan(2_000)
    expect(b.status().epoch).toBe(2)
    const { rows } = await b.query('INSERT INTO t VALUES (1, inet_server_port()) RETURNING port')
    expect(rows[0].port).toBe(n1.port)
    // n0 is still writable, and fenced by both.
    expect(b.status().endpoints.find((e) => e.name === n0.name)!.role).toBe('fenced')
    expect((await cluster.sql<{ n: number }>(n0, 'SELECT count(*)::int AS n FROM t'))[0]!.n).toBe(0)

    // A third instance started now begins on the recorded node.
    const c = make({})
    expect((await c.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n1.port)
    expect(c.status().epoch).toBe(2)
  })

  it('with Redis down the pools keep serving from their own probes and report the store', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const redis = res.track(await startRedis())
    const client = redisClient(redis.url)
    const pool = res.pool(cluster, { stateStore: new RedisStateStore({ client, commandTimeoutMs: 200 }), stateStoreTimeoutMs: 300 })
    await pool.query('SELECT 1')
    await redis.stop('kill')
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    await cluster.stop(n0, 'fast')
    await cluster.promote(n1)
    // The failover is decided and written while the store is down: queries do not wait for it.
    const { rows } = await pool.query('SELECT inet_server_port() AS port')
    expect(rows[0].port).toBe(n1.port)
    await expect.poll(() => pool.status().stateStore.ok, { timeout: 3_000 }).toBe(false)
  })
})
