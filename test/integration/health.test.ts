import http from 'node:http'
import type { AddressInfo } from 'node:net'
import createDebug from 'debug'
import * as promClient from 'prom-client'
import { describe, expect, it } from 'vitest'
import type { BreakerStateChangeEvent } from '../../src/advanced.js'
import { healthHandler, AllEndpointsDownError, isOutcomeUnknownError, registerMetrics } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent } from '../support/wait.js'

const res = useResources()

async function get(url: string): Promise<{ status: number; body: any }> {
  const res = await fetch(url)
  return { status: res.status, body: await res.json() }
}

describe('circuit breakers on real nodes', () => {
  it('opens after three refused connections and closes once the node is back', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [, n1] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c, { healthCheckIntervalMs: 30, halfOpenAfterMs: 300, maxHalfOpenAfterMs: 300 })
    await pool.query('SELECT 1')
    const breakerEvents: BreakerStateChangeEvent[] = []
    const reachability: string[] = []
    pool.on('breakerStateChange', (e) => breakerEvents.push(e))
    pool.on('endpointDown', (e) => reachability.push(`${e.endpoint} down`))
    pool.on('endpointUp', (e) => reachability.push(`${e.endpoint} up`))

    const opened = nextEvent(pool, 'breakerStateChange', { match: (e) => e.endpoint === n1.name && e.to === 'open' })
    await c.stop(n1, 'immediate')
    const event = await opened
    expect(event).toMatchObject({ endpoint: n1.name, from: 'closed', to: 'open' })
    expect(event.reason).toMatch(/ECONNREFUSED|terminat|connect/i)
    expect(pool.status().endpoints[1]!.breaker).toBe('open')
    expect(reachability).toEqual([`${n1.name} down`])

    const closed = nextEvent(pool, 'breakerStateChange', { match: (e) => e.endpoint === n1.name && e.to === 'closed' })
    await c.start(n1)
    await closed
    // open -> half-open (the one trial probe) -> closed
    expect(breakerEvents.filter((e) => e.endpoint === n1.name).map((e) => e.to)).toEqual(expect.arrayContaining(['open', 'half-open', 'closed']))
    expect(reachability).toEqual([`${n1.name} down`, `${n1.name} up`])
    expect(pool.status().endpoints[1]).toMatchObject({ breaker: 'closed', role: 'standby', lastError: null })
  })

  it('with every breaker open a request fails at once, listing each endpoint', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c, { discoveryIntervalMs: 20, healthCheckIntervalMs: 20, halfOpenAfterMs: 60_000, failoverTimeoutMs: 30_000 })
    await pool.query('SELECT 1')
    await c.stop(n1, 'immediate')
    await c.stop(n0, 'immediate')
    await expect.poll(() => pool.status().endpoints.map((e) => e.breaker), { timeout: 5_000 }).toEqual(['open', 'open'])
    const started = performance.now()
    const err = await pool.query('SELECT 1').then(() => null, (e: unknown) => e)
    expect(performance.now() - started).toBeLessThan(100)
    expect((err instanceof AllEndpointsDownError)).toBe(true)
    expect((err as { endpoints: Array<{ endpoint: string; breaker: string }> }).endpoints.map((e) => [e.endpoint, e.breaker])).toEqual([
      [n0.name, 'open'],
      [n1.name, 'open'],
    ])
    expect((err as Error).message).not.toContain(c.password)
  })
})

describe('health monitor', () => {
  it('detects a frozen primary (SIGSTOP) within probeTimeoutMs plus one interval, and fails over', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    const probeTimeoutMs = 500
    const healthCheckIntervalMs = 200
    const pool = res.pool(c, { probeTimeoutMs, healthCheckIntervalMs, query_timeout: undefined })
    await pool.query('CREATE TABLE t (id int)')
    // n1 is promoted below: it must have the table before n0 stops sending it anything.
    await c.waitForReplication(n0)
    const down = nextEvent(pool, 'endpointDown', { match: (e) => e.endpoint === n0.name })
    const frozenAt = performance.now()
    await c.freeze(n0)
    // A write sent to the frozen node: it must not hang forever, and must not claim a clean failure.
    const stuck = pool.query('INSERT INTO t VALUES (1)').then(() => null, (e: unknown) => e)
    await down
    const detectedMs = performance.now() - frozenAt
    // The documented bound, plus slack for timers that fire late on a loaded 2-core machine.
    expect(detectedMs).toBeLessThan(probeTimeoutMs + healthCheckIntervalMs * 1.2 + 400)
    expect(pool.status().primary).toBeNull()
    expect(isOutcomeUnknownError(await stuck)).toBe(true)

    const failover = nextEvent(pool, 'failover')
    await c.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })
    const { rows } = await pool.query('INSERT INTO t VALUES (2) RETURNING inet_server_port() AS port')
    expect(rows[0].port).toBe(n1.port)
    await c.thaw(n0)
  })

  it('healthHandler answers 200 with the status when a primary is verified, 503 when not', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c, { healthCheckIntervalMs: 50, failoverTimeoutMs: 500 })
    await pool.query('SELECT 1')
    const strict = http.createServer(healthHandler(pool)).listen(0, '127.0.0.1')
    const lenient = http.createServer(healthHandler(pool, { allowReadOnly: true })).listen(0, '127.0.0.1')
    try {
      await Promise.all([nextEvent(strict, 'listening'), nextEvent(lenient, 'listening')])
      const strictUrl = `http://127.0.0.1:${(strict.address() as AddressInfo).port}/ready`
      const lenientUrl = `http://127.0.0.1:${(lenient.address() as AddressInfo).port}/ready`
      const ok = await get(strictUrl)
      expect(ok.status).toBe(200)
      expect(ok.body).toMatchObject({ ready: true, primary: n0.name, mode: 'read-write' })
      expect(JSON.stringify(ok.body)).not.toContain(c.password)

      await c.stop(n0, 'immediate')
      await expect.poll(async () => (await get(strictUrl)).status, { timeout: 5_000 }).toBe(503)
      const down = await get(strictUrl)
      expect(down.body).toMatchObject({ ready: false, primary: null, mode: 'read-only' })
      expect((await get(lenientUrl)).status).toBe(200)
    } finally {
      strict.close()
      lenient.close()
    }
  })

  it('metrics for prom-client and debug logs carry state, never a password', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [, n1] = c.nodes as [ClusterNode, ClusterNode]
    const lines: string[] = []
    const originalLog = createDebug.log
    createDebug.log = (...args: unknown[]) => void lines.push(args.map(String).join(' '))
    createDebug.enable('pg-failover-pool:*')
    try {
      const pool = res.pool(c, { healthCheckIntervalMs: 50 })
      const registry = new promClient.Registry()
      registerMetrics(pool, { client: promClient, registry, pool: 'test' })
      await pool.query('SELECT 1')
      await pool.reader.query('SELECT 1').catch(() => undefined)
      await c.stop(n1, 'immediate')
      await expect.poll(() => pool.status().endpoints[1]!.role, { timeout: 5_000 }).toBe('unreachable')
      const text = await registry.metrics()
      expect(text).toContain(`pg_failover_pool_ready{pool="test"} 1`)
      expect(text).toContain(`pg_failover_pool_endpoint_role{pool="test",endpoint="${c.nodes[0]!.name}",role="primary"} 1`)
      expect(text).toContain(`pg_failover_pool_endpoint_role{pool="test",endpoint="${n1.name}",role="unreachable"} 1`)
      expect(text).toMatch(/pg_failover_pool_endpoint_probe_latency_seconds\{pool="test",endpoint="node0"\} [0-9.e-]+/)
      expect(text).toMatch(/pg_failover_pool_endpoint_queries_total\{pool="test",endpoint="node0",kind="write"\} [1-9]/)
      expect(text).not.toContain(c.password)
    } finally {
      createDebug.disable()
      createDebug.log = originalLog
    }
    expect(lines.some((l) => l.includes('pg-failover-pool:topology'))).toBe(true)
    expect(lines.some((l) => l.includes(n1.name))).toBe(true)
    expect(lines.join('\n')).not.toContain(c.password)
  })
})
