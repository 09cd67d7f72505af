import { Redis } from 'ioredis'
import { afterEach, describe, expect, it } from 'vitest'
import { type FailoverEvent, FailoverPool, RedisStateStore } from '../../src/index.js'
import { type Cluster, type ClusterNode, startCluster } from '../support/cluster.js'
import { type RedisServer, startRedis } from '../support/redis.js'

let cluster: Cluster | undefined
let redis: RedisServer | undefined
const closers: Array<() => Promise<unknown>> = []

afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close().catch(() => undefined)
  await cluster?.destroy()
  await redis?.destroy()
  cluster = undefined
  redis = undefined
})

function redisClient(url: string): Redis {
  const client = new Redis(url, { lazyConnect: false, enableOfflineQueue: false, maxRetriesPerRequest: 0 })
  client.on('error', () => undefined)
  closers.push(async () => client.disconnect())
  return client
}

describe('a fleet sharing the Redis state store', () => {
  it('two pools converge on the same primary after a failover seen by only one of them', async () => {
    cluster = await startCluster({ standbys: 2 })
    redis = await startRedis()
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const endpoints = cluster.nodes.map((n) => ({ ...n.config, name: n.name }))
    const make = (options: object): FailoverPool => {
      const store = new RedisStateStore({ client: redisClient(redis!.url), pollIntervalMs: 200 })
      const pool = new FailoverPool({ endpoints, max: 2, stateStore: store, ...options })
      pool.on('error', () => undefined)
      closers.push(() => pool.end())
      return pool
    }
    const a = make({ healthCheckIntervalMs: 100 })
    // b has no way of its own to notice: no promotion watch, health checks a minute apart, and its
    // old primary stays up and writable (the split-brain case).
    const b = make({ healthCheckIntervalMs: 60_000, promotionWatch: false })
    await a.query('CREATE TABLE t (id int, port int)')
    await b.query('SELECT 1')
    expect(b.status().primary).toBe(n0.name)

    const failover = new Promise<FailoverEvent>((resolve) => a.once('failover', resolve))
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
    cluster = await startCluster({ standbys: 1 })
    redis = await startRedis()
    const client = redisClient(redis.url)
    const pool = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), stateStore: new RedisStateStore({ client, commandTimeoutMs: 200 }), stateStoreTimeoutMs: 300 })
    closers.push(() => pool.end())
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
