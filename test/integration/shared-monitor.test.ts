import { describe, expect, it } from 'vitest'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { FleetInstance, type InstanceEvent } from '../support/fleet.js'
import { POOL_DEFAULTS, TEST_APPLICATION_NAME, endpointsOf, useResources } from '../support/pools.js'
import { type RedisServer, startRedis } from '../support/redis.js'
import { freePort } from '../support/ports.js'
import { sleep, waitUntil } from '../support/wait.js'

const res = useResources()
const MONITOR = `${TEST_APPLICATION_NAME} monitor`

/** Monitoring sessions the whole fleet holds on `node`. */
async function monitorSessions(cluster: Cluster, node: ClusterNode): Promise<number> {
  return (await cluster.sql<{ n: number }>(node, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name = '${MONITOR}'`))[0]!.n
}

/** `count` instances, each a process of its own, sharing monitoring over `redis`; ready once each has run a query. */
async function fleet(cluster: Cluster, redis: RedisServer, count: number, options: Record<string, unknown> = {}): Promise<FleetInstance[]> {
  const defaults = { ...POOL_DEFAULTS, healthCheckIntervalMs: 500 }
  const instances = Array.from({ length: count }, (_, i) => new FleetInstance(`i${i}`, endpointsOf(cluster.nodes), redis.url, { ...defaults, ...options }))
  res.defer(async () => {
    for (const i of instances) i.signal('SIGCONT')
    await Promise.all(instances.map((i) => i.end()))
  })
  await Promise.all(instances.map((i) => i.next((e) => e.kind === 'ready', 30_000)))
  return instances
}

/** Waits until exactly one of `instances` leads and every other follows; returns the leader. */
async function settledFleet(instances: readonly FleetInstance[], timeout = 10_000): Promise<FleetInstance> {
  await waitUntil(() => instances.filter((i) => i.role === 'leader').length === 1 && instances.filter((i) => i.role === 'follower').length === instances.length - 1, {
    what: 'one leader, the others following',
    timeout,
  })
  return instances.find((i) => i.role === 'leader')!
}

async function createLedger(cluster: Cluster, primary: ClusterNode): Promise<void> {
  await cluster.sql(primary, 'CREATE TABLE fleet_ledger (instance text NOT NULL, id int NOT NULL, PRIMARY KEY (instance, id))')
  await cluster.waitForReplication(primary)
}

const acks = (i: FleetInstance): InstanceEvent[] => i.events.filter((e) => e.kind === 'ack')

describe("shared monitoring (monitor: 'shared' over Redis): one instance monitors for the fleet", () => {
  it('the followers hold no monitoring connection; a promotion is followed by every instance, and no acknowledged write is lost', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const redis = res.track(await startRedis())
    await createLedger(cluster, n0)
    const instances = await fleet(cluster, redis, 3)
    await settledFleet(instances)
    // Each follower probed on its own at startup; it gave its sessions up on becoming a follower.
    for (const node of [n0, n1]) await waitUntil(async () => (await monitorSessions(cluster, node)) === 1, { what: `one monitor session on ${node.name}`, timeout: 5_000 })
    // And opens none while all is well: its health checks take the leader's published probes.
    for (let sample = 0; sample < 10; sample++) {
      for (const node of [n0, n1]) expect(await monitorSessions(cluster, node)).toBe(1)
      await sleep(100)
    }
    for (const i of instances) expect((await i.status()).primary).toBe(n0.name)

    instances.forEach((i, k) => i.send({ cmd: 'writes', every: 5, from: 1 + k * 0 }))
    await Promise.all(instances.map((i) => i.next((e) => e.kind === 'ack', 5_000)))
    await cluster.stop(n0, 'fast') // a fast shutdown sends every committed WAL record to the standby
    await cluster.promote(n1)
    const writableAt = Date.now()
    const firsts = await Promise.all(instances.map((i) => i.next((e) => e.kind === 'ack' && e.port === n1.port, 15_000)))
    for (const i of instances) i.send({ cmd: 'stop-writes' })
    // Answered once each instance's last write has settled: every ack is in before the ledger is read.
    await Promise.all(instances.map((i) => i.next((e) => e.kind === 'stopped-writes', 20_000)))

    const resumedMs = firsts.map((e) => (e.at as number) - writableAt)
    for (const i of instances) expect((await i.status()).primary, `resumed after ${resumedMs.join(', ')} ms`).toBe(n1.name)
    // Every acknowledged write is on the new primary.
    const rows = await cluster.sql<{ instance: string; id: number }>(n1, 'SELECT instance, id FROM fleet_ledger')
    const stored = new Set(rows.map((r) => `${r.instance}/${r.id}`))
    const acked = instances.flatMap((i) => acks(i).map((e) => `${i.name}/${e.id as number}`))
    expect(acked.length).toBeGreaterThan(instances.length * 2)
    expect(acked.filter((key) => !stored.has(key))).toEqual([])
    // Still one monitoring connection on the node that is left, the new leader's or the old one's.
    await waitUntil(async () => (await monitorSessions(cluster, n1)) === 1, { what: `one monitor session on ${n1.name} after the failover`, timeout: 5_000 })
  })

  it('a crashed leader is replaced within about the lease TTL; with the store gone every instance monitors alone, and shares again once it is back', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const redis = res.track(await startRedis())
    const instances = await fleet(cluster, redis, 3, { monitorLeaseTtlMs: 1_000 })
    const leader = await settledFleet(instances)
    const rest = instances.filter((i) => i !== leader)
    const marks = rest.map((i) => i.events.length)
    const killedAt = Date.now()
    leader.signal('SIGKILL')
    const next = await Promise.any(rest.map((i, k) => i.next((e) => e.kind === 'role' && e.role === 'leader', 10_000, marks[k])))
    const handoverMs = (next.at as number) - killedAt
    // TTL 1000 ms, tried every ~250 ms: a little over a second, with room for a loaded machine.
    expect(handoverMs).toBeLessThan(2_000)
    await settledFleet(rest)

    const stoppedAt = Date.now()
    await redis.stop('kill')
    const alone = await Promise.all(rest.map((i) => i.next((e) => e.kind === 'role' && e.role === 'alone' && (e.at as number) >= stoppedAt, 10_000)))
    for (const e of alone) expect((e.at as number) - stoppedAt).toBeLessThan(2_000)
    // Alone, each monitors on its own and keeps serving.
    for (const i of rest) expect((await i.status()).primary).toBe(cluster.nodes[0]!.name)
    await redis.start()
    await settledFleet(rest)
  })

  it('a leader cut off from the primary does not take the followers off it: its failure is only a doubt, which their own probes settle', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0] = cluster.nodes as [ClusterNode, ClusterNode]
    const redis = res.track(await startRedis())
    await createLedger(cluster, n0)
    const defaults = { ...POOL_DEFAULTS, healthCheckIntervalMs: 200 }
    // The leader reaches node0 at a closed port (as a partition would leave it), the followers at the real one.
    const closedPort = await freePort()
    const cutOff = endpointsOf(cluster.nodes).map((e) => (e.name === n0.name ? { ...e, port: closedPort } : e))
    const leader = new FleetInstance('leader', cutOff, redis.url, { ...defaults, failoverTimeoutMs: 2_000 })
    res.defer(() => leader.end())
    await leader.next((e) => e.kind === 'role' && e.role === 'leader', 15_000)
    const followers = [new FleetInstance('f0', endpointsOf(cluster.nodes), redis.url, defaults), new FleetInstance('f1', endpointsOf(cluster.nodes), redis.url, defaults)]
    res.defer(() => Promise.all(followers.map((f) => f.end())))
    await Promise.all(followers.map((f) => f.next((e) => e.kind === 'ready', 30_000)))
    await waitUntil(() => followers.every((f) => f.role === 'follower'), { what: 'two followers', timeout: 10_000 })
    for (const f of followers) f.send({ cmd: 'writes', every: 20, from: 1 })
    // Many of the leader's health checks, each publishing node0 unreachable.
    await sleep(3_000)
    for (const f of followers) f.send({ cmd: 'stop-writes' })
    await Promise.all(followers.map((f) => f.next((e) => e.kind === 'stopped-writes', 5_000)))
    for (const f of followers) {
      expect((await f.status()).primary).toBe(n0.name)
      expect(f.events.filter((e) => e.kind === 'failover')).toEqual([])
      expect(f.events.filter((e) => e.kind === 'error').map((e) => e.message)).toEqual([])
      expect(acks(f).length).toBeGreaterThan(20)
    }
  })

  it('a follower that sees a failure first finds the new primary on its own, without waiting for a frozen leader', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const redis = res.track(await startRedis())
    await createLedger(cluster, n0)
    // A long lease: nobody takes the frozen leader's place before the followers are done. Slow
    // discovery rounds: a follower that waited for the leader's probes would wait 4 s and more.
    const instances = await fleet(cluster, redis, 3, { monitorLeaseTtlMs: 8_000, discoveryIntervalMs: 2_000 })
    const leader = await settledFleet(instances)
    const followers = instances.filter((i) => i !== leader)
    for (const i of followers) i.send({ cmd: 'writes', every: 5, from: 1 })
    await Promise.all(followers.map((i) => i.next((e) => e.kind === 'ack', 5_000)))
    leader.signal('SIGSTOP')
    await cluster.stop(n0, 'fast')
    await cluster.promote(n1)
    const writableAt = Date.now()
    const firsts = await Promise.all(followers.map((i) => i.next((e) => e.kind === 'ack' && e.port === n1.port, 15_000)))
    const resumedMs = firsts.map((e) => (e.at as number) - writableAt)
    // Their doubts went unanswered for a fifth of the lease (1.6 s, from before the promotion): they
    // probed on their own and found n1, long before the lease could change hands (8 s) and before
    // a leader's rounds would have been waited out (a watch window and two discovery rounds, > 4 s).
    for (const ms of resumedMs) expect(ms, `resumed after ${resumedMs.join(', ')} ms`).toBeLessThan(3_000)
    for (const i of followers) expect(i.role).toBe('follower')
    for (const i of followers) i.send({ cmd: 'stop-writes' })
    leader.signal('SIGCONT')
  })
})
