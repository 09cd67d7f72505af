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
    // Cascade first: n2 streams through n1, so it can never replay past n1's fork point (n0 stays up
    // and keeps writing WAL of its own, e.g. running-transactions records).
    await cluster.repoint(n2, n1)
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

  it('Redis loses the record (FLUSHALL) between two failovers: the second is recorded, both pools follow it, a fresh pool starts from it', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const redis = res.track(await startRedis())
    const admin = redisClient(redis.url)
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const make = (options: Partial<FailoverPoolOptions>): FailoverPool =>
      res.pool(cluster, { max: 2, stateStore: new RedisStateStore({ client: redisClient(redis.url), pollIntervalMs: 200 }), ...options })
    const stored = async (): Promise<{ primary: string; epoch: number; version: number } | null> => JSON.parse((await admin.get('pg-failover-pool:state')) ?? 'null')
    const a = make({ healthCheckIntervalMs: 100 })
    // b only learns of a failover from the store (no promotion watch, health checks a minute apart).
    const b = make({ healthCheckIntervalMs: 60_000, promotionWatch: false })
    await a.query('SELECT 1')
    await b.query('SELECT 1')

    const first = nextEvent(a, 'failover')
    await cluster.repoint(n2, n1) // cascade first (see above)
    await cluster.promote(n1) // n0 stays up and writable: only the store tells b
    await cluster.repoint(n2, n1)
    expect(await first).toMatchObject({ from: n0.name, to: n1.name, epoch: 2 })
    await expect.poll(() => b.status().primary, { timeout: 5_000, interval: 10 }).toBe(n1.name)
    await expect.poll(stored, { timeout: 5_000 }).toMatchObject({ primary: n1.name, epoch: 2 })

    await admin.flushall()
    expect(await stored()).toBeNull()
    const second = nextEvent(a, 'failover')
    await cluster.promote(n2) // n1 stays up and writable too, on the older timeline
    expect(await second).toMatchObject({ from: n1.name, to: n2.name, epoch: 3 })
    // Written again from nothing (version 1), and still news to b's watch: the epoch orders records.
    await expect.poll(stored, { timeout: 5_000 }).toMatchObject({ primary: n2.name, epoch: 3, version: 1 })
    await expect.poll(() => a.status().stateStore, { timeout: 5_000 }).toMatchObject({ ok: true, degraded: false, failure: null })
    await expect.poll(() => b.status().primary, { timeout: 5_000, interval: 10 }).toBe(n2.name)
    expect(b.status().epoch).toBe(3)
    expect(b.status().stateStore).toMatchObject({ ok: true, degraded: false })
    expect((await b.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n2.port)

    // A third instance started now begins on the recorded node, at the recorded epoch.
    const c = make({})
    expect((await c.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n2.port)
    expect(c.status()).toMatchObject({ primary: n2.name, epoch: 3, failovers: 0 })
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
