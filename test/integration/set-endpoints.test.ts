import { describe, expect, it } from 'vitest'
import { type EndpointConfig, EndpointSourceError, SwitchoverRefusedError, dnsSrv, endpointsFrom } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { DnsServer } from '../support/dnsmasq.js'
import { LedgerWriter } from '../support/ledger-writer.js'
import { endpointsOf, replicasKnown, useResources } from '../support/pools.js'
import { sleep, waitUntil } from '../support/wait.js'

const res = useResources()

/** Reads in a loop through the pool's reader, each recording when it started and which node answered. */
function readLoop(pool: { reader: { query<T>(text: string): Promise<{ rows: T[] }> } }) {
  const reads: Array<{ startedAt: number; port: number | null; error: string | null }> = []
  let stopped = false
  const loop = (async () => {
    while (!stopped) {
      const startedAt = Date.now()
      try {
        const { rows } = await pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')
        reads.push({ startedAt, port: rows[0]!.port, error: null })
      } catch (err) {
        reads.push({ startedAt, port: null, error: (err as Error).message })
      }
      await sleep(2)
    }
  })()
  return {
    reads,
    stop: async () => {
      stopped = true
      await loop
    },
  }
}

describe('pool.setEndpoints(): nodes join and leave while the pool runs', () => {
  it('under load: an added standby takes reads within 5 s, a removed one gets no read that starts after the call and is closed; no write fails or is lost', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool([n0, n1], { routeReads: 'auto', max: 4 })
    await LedgerWriter.create(pool)
    await replicasKnown(pool, 1)
    const writer = new LedgerWriter(pool, { concurrency: 2, intervalMs: 2 }).start()
    const readers = readLoop(pool)

    const addedAt = Date.now()
    await pool.setEndpoints(endpointsOf([n0, n1, n2]))
    await waitUntil(() => readers.reads.some((r) => r.port === n2.port), { what: 'a read answered by node2', timeout: 5_000 })
    const firstOnN2 = readers.reads.find((r) => r.port === n2.port)!
    expect(firstOnN2.startedAt - addedAt).toBeLessThan(5_000)
    expect(pool.status().endpoints.map((e) => e.name)).toEqual(['node0', 'node1', 'node2'])

    await pool.setEndpoints(endpointsOf([n0, n2]))
    const removedAt = Date.now()
    await sleep(1_000)
    expect(readers.reads.filter((r) => r.startedAt >= removedAt && r.port === n1.port)).toEqual([])
    expect(readers.reads.filter((r) => r.startedAt >= removedAt && r.port === n2.port).length).toBeGreaterThan(0)
    expect(pool.status().endpoints.map((e) => e.name)).toEqual(['node0', 'node2'])
    // Its connections (pool sessions and the monitor session) are closed well within the drain timeout.
    await waitUntil(async () => (await cluster.sql<{ n: number }>(n1, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE application_name LIKE 'pgfp-test%'"))[0]!.n === 0, {
      what: 'node1 has no session of the pool',
      timeout: 30_000,
    })

    await readers.stop()
    await writer.stop()
    expect(readers.reads.filter((r) => r.error !== null)).toEqual([])
    expect(writer.counts()).toMatchObject({ failed: 0, unknown: 0 })
    expect(writer.counts().acked).toBeGreaterThan(50)
    const check = await writer.check(n0.config)
    expect(check.lost).toEqual([])
  })

  it('removing the primary is refused while no endpoint of the new list is a verified primary, and nothing changes', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool([n0, n1])
    await pool.query('SELECT 1')
    const refusal = await pool.setEndpoints(endpointsOf([n1])).catch((err: unknown) => err)
    expect(refusal).toBeInstanceOf(SwitchoverRefusedError)
    expect((refusal as Error).message).toBe('Cannot remove node0, the primary: no endpoint of the new list is a verified primary (node1: standby)')
    expect(pool.status().endpoints.map((e) => e.name)).toEqual(['node0', 'node1'])
    const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port')
    expect(rows[0]!.port).toBe(n0.port)
  })

  it('removing the primary switches writes over to the verified primary of the new list first', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    // No watch and a slow health check: the pool would otherwise follow n1's promotion on its own.
    const pool = res.pool([n0, n1], { promotionWatch: false, healthCheckIntervalMs: 60_000 })
    await pool.query('SELECT 1')
    await cluster.promote(n1)
    await pool.setEndpoints(endpointsOf([n1]))
    expect(pool.status().primary).toBe('node1')
    expect(pool.status().endpoints.map((e) => e.name)).toEqual(['node1'])
    const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port')
    expect(rows[0]!.port).toBe(n1.port)
  })

  it('endpoints from a provider: the pool starts on its first answer, follows its changes, and keeps the last good list on a bad one', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    let answer: EndpointConfig[] = endpointsOf([n0, n1])
    const pool = res.pool([n0], { endpoints: endpointsFrom(() => answer, { refreshMs: 200, description: 'the test list' }), routeReads: 'auto' })
    const changes: string[][] = []
    const rejected: EndpointSourceError[] = []
    pool.on('endpointsChanged', (e) => changes.push([...e.endpoints]))
    pool.on('endpointsRejected', (err) => rejected.push(err))
    const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port')
    expect(rows[0]!.port).toBe(n0.port)
    expect(pool.status().endpoints.map((e) => e.name)).toEqual(['node0', 'node1'])

    answer = endpointsOf([n0, n1, n2])
    await waitUntil(async () => (await pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port === n2.port, { what: 'a read on node2', timeout: 5_000 })
    expect(changes).toEqual([['node0', 'node1'], ['node0', 'node1', 'node2']])

    answer = [...endpointsOf([n0, n1]), { ...n1.config, name: 'node1-again' }]
    await waitUntil(() => rejected.length > 0, { what: 'the bad answer reported', timeout: 5_000 })
    expect(rejected[0]).toBeInstanceOf(EndpointSourceError)
    expect(rejected[0]!.message).toMatch(/Endpoint list from the test list not applied: .*duplicate endpoint/)
    expect(rejected[0]!.message).not.toContain(cluster.password)
    expect(pool.status().endpointSource).toMatchObject({ description: 'the test list', lastError: expect.stringMatching(/duplicate endpoint/) })
    expect(pool.status().endpoints.map((e) => e.name)).toEqual(['node0', 'node1', 'node2'])
  })

  it('endpoints from DNS SRV: a record added on a real DNS server brings its node into the pool without a restart', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const name = '_postgresql._tcp.cluster.pgfp.test'
    const record = (n: ClusterNode) => ({ name, target: '127.0.0.1', port: n.port })
    const dns = await DnsServer.start([record(n0), record(n1)])
    res.defer(() => dns.stop())
    const { user, password, database } = n0.config
    const pool = res.pool([n0], { endpoints: dnsSrv(name, { servers: [dns.address], refreshMs: 300, user, password, database }), routeReads: 'auto' })
    await pool.query('SELECT 1')
    expect(pool.status().endpoints.map((e) => e.name)).toEqual([`127.0.0.1:${n0.port}`, `127.0.0.1:${n1.port}`])
    await dns.setRecords([record(n0), record(n1), record(n2)])
    await waitUntil(async () => (await pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port === n2.port, { what: 'a read on node2', timeout: 5_000 })
    await dns.setRecords([record(n0), record(n2)])
    await waitUntil(() => !pool.status().endpoints.some((e) => e.name === `127.0.0.1:${n1.port}`), { what: 'node1 gone from the pool', timeout: 5_000 })
    expect(pool.status().primary).toBe(`127.0.0.1:${n0.port}`)
  })

  it('a provider is asked again right after a failover, not only every refreshMs', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    let asked = 0
    const pool = res.pool([n0], {
      endpoints: endpointsFrom(
        () => {
          asked++
          return endpointsOf([n0, n1])
        },
        { refreshMs: 60_000 },
      ),
    })
    await pool.query('SELECT 1')
    expect(asked).toBe(1)
    await cluster.stop(n0, 'fast')
    await cluster.promote(n1)
    await waitUntil(() => pool.status().primary === 'node1', { what: 'the failover to node1', timeout: 15_000 })
    await waitUntil(() => asked === 2, { what: 'the provider asked again', timeout: 1_000 })
  })
})
