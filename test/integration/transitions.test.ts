import { spawn } from 'node:child_process'
import { createInterface } from 'node:readline'
import pg from 'pg'
import { describe, expect, it } from 'vitest'
import { type FailoverPool, NoPrimaryError, isOutcomeUnknownError } from '../../src/index.js'
import type { ClusterNode } from '../support/cluster.js'
import { endpointsOf, replicasKnown, sessionPids, useResources } from '../support/pools.js'
import { nextEvent, waitUntil } from '../support/wait.js'

const res = useResources()

describe('transitions: what a topology change may never do', () => {
  it('40 callers queued on 2 connections: after the failover event, not one write is acknowledged by the old primary (left up and writable)', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 2, connectionTimeoutMillis: 0 })
    await pool.query('CREATE TABLE w (id int PRIMARY KEY, port int)')
    await cluster.waitForReplication(n0)
    let failoverAt = Number.POSITIVE_INFINITY
    pool.on('failover', () => (failoverAt = performance.now()))
    const acks: Array<{ at: number; port: number }> = []
    const unexpected: unknown[] = []
    let next = 0
    let stop = false
    const caller = async (): Promise<void> => {
      while (!stop) {
        const id = ++next
        try {
          const { rows } = await pool.query<{ port: number }>('INSERT INTO w VALUES ($1, inet_server_port()) RETURNING port', [id])
          acks.push({ at: performance.now(), port: rows[0]!.port })
        } catch (err) {
          if (!isOutcomeUnknownError(err) && !(err instanceof NoPrimaryError)) unexpected.push(err)
          // An error that comes at once must not turn this loop into a busy one that starves the event loop.
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
      }
    }
    const callers = Array.from({ length: 40 }, caller)
    await waitUntil(() => acks.length > 200, { what: 'writes flowing', timeout: 10_000 })
    // A standby is promoted while the old primary stays up and writable (a partition, a mistaken promote).
    const failover = nextEvent(pool, 'failover')
    await cluster.promote(n1)
    await failover
    await waitUntil(() => acks.some((a) => a.at > failoverAt && a.port === n1.port), { what: 'writes on the new primary', timeout: 10_000 })
    stop = true
    await Promise.all(callers)
    const fromOldAfterFailover = acks.filter((a) => a.at > failoverAt && a.port === n0.port)
    expect(fromOldAfterFailover).toEqual([])
    expect(unexpected).toEqual([])
    expect(acks.filter((a) => a.port === n1.port).length).toBeGreaterThan(0)
  })

  it('listeners that throw on every topology event change nothing: the first write after a promotion is as fast, every request settles in time, end() returns promptly', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const failoverTimeoutMs = 15_000
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/throwing-listeners.ts'], {
      env: { ...process.env, TL_ENDPOINTS: JSON.stringify(endpointsOf(cluster.nodes)), TL_NEW_PORT: String(n1.port), TL_FAILOVER_TIMEOUT_MS: String(failoverTimeoutMs) },
      stdio: ['pipe', 'pipe', 'inherit'],
    })
    res.defer(() => child.kill())
    const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]()
    expect((await lines.next()).value).toBe('ready')
    await cluster.stop(n0)
    await cluster.promote(n1)
    child.stdin!.write('go\n')
    const report = JSON.parse((await lines.next()).value as string)
    const { stats, endMs, listenerErrors, otherErrors } = report
    expect(otherErrors).toEqual([])
    // The listeners did throw (failover, endpointDown, roleChange, breakerStateChange at least).
    expect(listenerErrors).toBeGreaterThan(0)
    expect(stats.throwing.firstOnNew).not.toBeNull()
    expect(stats.quiet.firstOnNew).not.toBeNull()
    expect(Math.abs(stats.throwing.firstOnNew - stats.quiet.firstOnNew), JSON.stringify(stats)).toBeLessThan(500)
    expect(stats.throwing.maxRequestMs).toBeLessThanOrEqual(failoverTimeoutMs + 1_000)
    expect(endMs).toBeLessThan(1_000)
  })

  it('a promotion hook that never finishes: writes resume after onPromoteTimeoutMs, and end() returns promptly while another one hangs', async () => {
    const cluster = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = cluster.nodes as [ClusterNode, ClusterNode, ClusterNode]
    let hooks = 0
    const pool = res.pool(cluster, {
      onPromote: () => {
        hooks++
        return new Promise<void>(() => undefined)
      },
      onPromoteTimeoutMs: 1_500,
      onPromoteFailure: 'proceed',
    })
    await pool.query('CREATE TABLE h (id int)')
    await cluster.waitForReplication(n0)
    await cluster.stop(n0)
    await cluster.promote(n1)
    const started = performance.now()
    const { rows } = await pool.query<{ port: number }>('INSERT INTO h VALUES (1) RETURNING inet_server_port() AS port')
    expect(rows[0]!.port).toBe(n1.port)
    expect(performance.now() - started).toBeGreaterThanOrEqual(1_000)
    expect(hooks).toBe(1)
    // Another promotion: its hook hangs too, and end() is called meanwhile.
    await cluster.repoint(n2, n1)
    await cluster.waitForReplication(n1)
    await cluster.stop(n1)
    await cluster.promote(n2)
    await waitUntil(() => hooks === 2, { what: 'the second hook running', timeout: 10_000 })
    const ending = performance.now()
    await pool.end()
    expect(performance.now() - ending).toBeLessThan(1_000)
  })

  it('a replica whose half-open trial was refused (53300, too many connections after a restart) serves reads again within one health interval of recovering', async () => {
    const cluster = await res.cluster({ standbys: 1, settings: { max_connections: 20 } })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    // The pool logs in as a plain role: only superusers may use the reserved connection slots.
    await cluster.sql(n0, "CREATE ROLE app LOGIN PASSWORD 'app-secret'")
    await cluster.waitForReplication(n0)
    const endpoints = cluster.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, user: 'app', password: 'app-secret', database: 'postgres' }))
    // The breaker opens on the first failure and waits ~3 s for its trial: time to restart n1 and fill it first.
    const pool = res.pool(cluster, { endpoints, failureThreshold: 1, halfOpenAfterMs: 3_000, maxHalfOpenAfterMs: 3_000, healthCheckIntervalMs: 100 })
    await replicasKnown(pool, 1)
    await cluster.stop(n1)
    await waitUntil(() => pool.status().endpoints.find((e) => e.name === n1.name)!.breaker === 'open', { what: 'n1 breaker open', timeout: 10_000 })
    // n1 restarts and every slot a plain role may use is taken at once, before the pool's trial comes.
    await cluster.start(n1)
    const fillers: pg.Client[] = []
    for (let i = 0; i < 17; i++) {
      const client = new pg.Client({ ...n1.config })
      client.on('error', () => undefined)
      await client.connect()
      fillers.push(client)
    }
    await waitUntil(() => /too many|reserved for/.test(pool.status().endpoints.find((e) => e.name === n1.name)!.lastError ?? ''), {
      what: 'a probe refused with 53300',
      timeout: 10_000,
      diagnostics: () => JSON.stringify(pool.status().endpoints.find((e) => e.name === n1.name)),
    })
    await new Promise((resolve) => setTimeout(resolve, 1_000)) // several health rounds while refused
    await Promise.all(fillers.map((c) => c.end()))
    const recovered = performance.now()
    await waitUntil(() => pool.status().endpoints.find((e) => e.name === n1.name)!.servesReads, { what: 'n1 serving reads again', timeout: 5_000, diagnostics: () => JSON.stringify(pool.status().endpoints) })
    // One health interval (100 ms, jittered) plus a probe, with room for a loaded machine.
    expect(performance.now() - recovered).toBeLessThan(1_000)
  })

  it('one terminated backend under load costs that session only: no write stalls, no other session is recycled, the primary is never suspected', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 4 })
    await pool.query('CREATE TABLE l (id serial, at timestamptz DEFAULT now())')
    const downs: unknown[] = []
    pool.on('endpointDown', (e) => downs.push(e))
    const latencies: number[] = []
    let stop = false
    const loop = async (): Promise<void> => {
      while (!stop) {
        const started = performance.now()
        try {
          await pool.query('INSERT INTO l DEFAULT VALUES')
        } catch {
          // a write on the terminated session itself may fail (outcome unknown): that session only
          await new Promise((resolve) => setTimeout(resolve, 5))
        }
        latencies.push(performance.now() - started)
      }
    }
    const loops = Array.from({ length: 4 }, loop)
    await waitUntil(async () => (await sessionPids(cluster, n0)).length === 4, { what: 'four sessions in use', timeout: 10_000 })
    const epoch = pool.status().epoch
    for (let round = 0; round < 3; round++) {
      const before = await sessionPids(cluster, n0)
      const victim = before[round % before.length]!
      const mark = latencies.length
      await cluster.sql(n0, `SELECT pg_terminate_backend(${victim})`)
      await new Promise((resolve) => setTimeout(resolve, 500))
      const survivors = await sessionPids(cluster, n0)
      // Every other session is still the same backend.
      expect(before.filter((pid) => pid !== victim).every((pid) => survivors.includes(pid))).toBe(true)
      expect(Math.max(...latencies.slice(mark))).toBeLessThan(300)
    }
    stop = true
    await Promise.all(loops)
    expect(downs).toEqual([])
    expect(pool.status().epoch).toBe(epoch)
  })

  it("a 25006 from the caller's own read-only transaction is the caller's error: the primary stays, no session is recycled", async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 4 })
    await pool.query('CREATE TABLE r (id int)')
    await Promise.all([1, 2, 3].map((i) => pool.query('INSERT INTO r VALUES ($1)', [i])))
    const downs: unknown[] = []
    pool.on('endpointDown', (e) => downs.push(e))
    const before = await sessionPids(cluster, n0)
    const client = await pool.connect()
    await client.query('BEGIN READ ONLY')
    const err = await client.query('INSERT INTO r VALUES (4)').catch((e: unknown) => e)
    expect((err as { code?: string }).code).toBe('25006')
    await client.query('ROLLBACK')
    // As ORMs do: the error goes back with the client (which pg-pool then closes).
    client.release(err as Error)
    // A pool.query in a read-only transaction of its own: the caller's 25006, not retried elsewhere.
    const viaQuery = await pool.query('BEGIN READ ONLY; INSERT INTO r VALUES (5)').catch((e: unknown) => e)
    expect((viaQuery as { code?: string }).code).toBe('25006')
    const { rows } = await pool.query<{ port: number }>('INSERT INTO r VALUES (6) RETURNING inet_server_port() AS port')
    expect(rows[0]!.port).toBe(n0.port)
    expect(pool.status().primary).toBe(n0.name)
    expect(downs).toEqual([])
    const after = await sessionPids(cluster, n0)
    expect(before.filter((pid) => after.includes(pid)).length).toBeGreaterThanOrEqual(before.length - 2)
  })

  it('end() with a read still connecting to a frozen replica returns once the pool cuts it, not after a TCP timeout', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool: FailoverPool = res.pool(cluster, { connectionTimeoutMillis: 0, probeTimeoutMs: 1_000, healthCheckIntervalMs: 200 })
    await replicasKnown(pool, 1)
    await cluster.freeze(n1)
    res.defer(() => cluster.thaw(n1))
    // A read routed to the frozen replica: its connect hangs (no client-side timeout).
    const read = pool.reader.query('SELECT 1 AS one').then(
      () => 'answered',
      () => 'failed',
    )
    await new Promise((resolve) => setTimeout(resolve, 100))
    const ending = performance.now()
    await pool.end()
    // The health probe times out (probeTimeoutMs), the pool cuts what hangs there, the read settles, end() completes.
    expect(performance.now() - ending).toBeLessThan(1_000 + 200 * 1.2 + 1_000)
    expect(['answered', 'failed']).toContain(await read)
  })
})
