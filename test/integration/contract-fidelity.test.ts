/**
 * pg.Pool fidelity beyond the basic contract (contract.test.ts): the same assertions against
 * node-postgres's pg.Pool and against a FailoverPool — end() after un-awaited queries, the Client
 * option, framework-shaped options, counts, and fail-fast mode (failoverTimeoutMs: 0), which is
 * pg.Pool's failure semantics — then what only the FailoverPool adds: errors on checked-out clients
 * recognisable as outcome-unknown, and reads that survive a failover.
 */
import { EventEmitter } from 'node:events'
import net from 'node:net'
import pg from 'pg'
import { beforeAll, describe, expect, it } from 'vitest'
import { classifyError } from '../../src/advanced.js'
import { FailoverPool, FailoverPoolError, isOutcomeUnknownError, isSafeToRetryError } from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { endpointsOf, useResources } from '../support/pools.js'
import { sleep, waitUntil } from '../support/wait.js'
import { heldStatements, holdTable } from '../support/writes-in-flight.js'

type Options = Omit<pg.PoolConfig, 'host' | 'port' | 'connectionString' | 'user' | 'password' | 'database'> & Record<string, unknown>

/** How each subject is made on the shared cluster, on an arbitrary address, and with pg.Pool-shaped options. */
interface Subject {
  readonly name: string
  onCluster(cluster: Cluster, options?: Options): pg.Pool
  onAddress(host: string, port: number, options?: Options): pg.Pool
  /** Options as a framework builds them for pg.Pool: its own address keys, some unset. */
  frameworkShaped(cluster: Cluster, options: Options): pg.Pool
}

const primaryOf = (c: Cluster): ClusterNode => c.nodes[0]!

const subjects: Subject[] = [
  {
    name: 'pg.Pool',
    onCluster: (c, o = {}) => new pg.Pool({ connectionString: primaryOf(c).url, ...o }),
    onAddress: (host, port, o = {}) => new pg.Pool({ host, port, user: 'postgres', password: 'x', database: 'postgres', ...o }),
    frameworkShaped: (c, o) => new pg.Pool({ connectionString: primaryOf(c).url, host: undefined, port: undefined, ...o }),
  },
  {
    name: 'FailoverPool',
    // A standby first: nothing may work only because the first endpoint is the primary.
    onCluster: (c, o = {}) => new FailoverPool({ endpoints: endpointsOf([c.nodes[1]!, c.nodes[0]!, c.nodes[2]!]), ...o }),
    // Fail-fast mode: pg.Pool's semantics on a broken address.
    onAddress: (host, port, o = {}) => new FailoverPool({ endpoints: [{ host, port, user: 'postgres', password: 'x', database: 'postgres' }], failoverTimeoutMs: 0, ...o }),
    // A libpq multi-host connectionString (standby first) and unset address keys, as TypeORM passes them.
    frameworkShaped: (c, o) => {
      const [p, s1, s2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode]
      const hosts = [s1, p, s2].map((n) => `127.0.0.1:${n.port}`).join(',')
      return new FailoverPool({ connectionString: `postgres://postgres:${encodeURIComponent(c.password)}@${hosts}/postgres?target_session_attrs=read-write`, host: undefined, port: undefined, ...o })
    },
  },
]

const res = useResources()
const shared = useResources('all')
let cluster: Cluster

beforeAll(async () => {
  cluster = await shared.cluster({ standbys: 2 })
}, 120_000)

/** A port on which nothing listens. */
async function refusedPort(): Promise<number> {
  const server = net.createServer()
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  const port = (server.address() as net.AddressInfo).port
  await new Promise<void>((resolve) => server.close(() => resolve()))
  return port
}

/** A server that accepts TCP connections and never answers (a frozen host behind a live kernel). */
async function silentServer(): Promise<number> {
  const sockets: net.Socket[] = []
  const server = net.createServer((socket) => void sockets.push(socket))
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  res.defer(() => {
    for (const s of sockets) s.destroy()
    return new Promise<void>((resolve) => server.close(() => resolve()))
  })
  return (server.address() as net.AddressInfo).port
}

async function outcome<T>(p: Promise<T>): Promise<{ value?: T; error?: Error; ms: number }> {
  const started = performance.now()
  try {
    return { value: await p, ms: performance.now() - started }
  } catch (error) {
    return { error: error as Error, ms: performance.now() - started }
  }
}

describe.each(subjects.map((s) => [s.name, s] as const))('pg.Pool fidelity: %s', (_name, subject) => {
  it('end(): queries issued without awaiting, right after the pool was made, all complete; then the pool ends', async () => {
    const pool = subject.onCluster(cluster)
    pool.on('error', () => undefined)
    const queries = Array.from({ length: 10 }, (_, i) => pool.query<{ n: number }>('SELECT $1::int AS n', [i]))
    await pool.end()
    expect((await Promise.all(queries)).map((r) => r.rows[0]!.n)).toEqual([0, 1, 2, 3, 4, 5, 6, 7, 8, 9])
    expect(pool.ended).toBe(true)
    await expect(pool.query('SELECT 1')).rejects.toThrow('Cannot use a pool after calling end on the pool')
  })

  it('Client: the class given makes every client the pool hands out, and is pool.Client', async () => {
    const made: pg.Client[] = []
    class Counting extends pg.Client {
      constructor(config?: pg.ClientConfig) {
        super(config)
        made.push(this)
      }
    }
    const pool = res.track(subject.onCluster(cluster, { Client: Counting as never }))
    const client = await pool.connect()
    expect(client).toBeInstanceOf(Counting)
    client.release()
    await pool.query('SELECT 1')
    expect((pool as pg.Pool & { Client: unknown }).Client).toBe(Counting)
    expect(made.length).toBeGreaterThan(0)
  })

  it('framework-shaped options (a connectionString, address keys left undefined) reach the primary', async () => {
    const pool = res.track(subject.frameworkShaped(cluster, { max: 2 }))
    const { rows } = await pool.query<{ port: number }>('SELECT inet_server_port() AS port')
    expect(rows[0]!.port).toBe(primaryOf(cluster).port)
  })

  it('counts: right after query() the connections being opened already count, as pg.Pool counts them', async () => {
    const pool = res.track(subject.onCluster(cluster, { max: 4 }))
    // "Where a primary is known": the FailoverPool has verified it (its probes use their own
    // session, so no client of the pool is open yet); a fresh pg.Pool has nothing to wait for.
    if (pool instanceof FailoverPool) await waitUntil(() => pool.status().primary !== null, { what: 'a verified primary' })
    expect([pool.totalCount, pool.idleCount, pool.waitingCount]).toEqual([0, 0, 0])
    const running = [pool.query('SELECT pg_sleep(0.05)'), pool.query('SELECT pg_sleep(0.05)')]
    expect([pool.totalCount, pool.idleCount, pool.waitingCount]).toEqual([2, 0, 0])
    await Promise.all(running)
    expect([pool.totalCount, pool.idleCount, pool.waitingCount]).toEqual([2, 2, 0])
    // With idle clients, pg-pool queues every new request and hands clients out on the next tick.
    const again = [pool.query('SELECT 1'), pool.query('SELECT 1'), pool.query('SELECT 1')]
    expect([pool.totalCount, pool.idleCount, pool.waitingCount]).toEqual([2, 2, 3])
    await Promise.all(again)
  })

  it('a refused port: query() and connect() fail at once with the ECONNREFUSED error itself', async () => {
    const port = await refusedPort()
    const pool = res.track(subject.onAddress('127.0.0.1', port, { connectionTimeoutMillis: 2_000 }))
    const q = await outcome(pool.query('SELECT 1'))
    expect((q.error as { code?: string } | undefined)?.code).toBe('ECONNREFUSED')
    expect(q.ms).toBeLessThan(1_000)
    const c = await outcome(pool.connect())
    expect((c.error as { code?: string } | undefined)?.code).toBe('ECONNREFUSED')
    expect(c.ms).toBeLessThan(1_000)
  })

  it('a Client whose connect() takes only a callback (pg-pool\'s contract; pg-native\'s client): every connection works through it', async () => {
    let promiseForm = 0
    class CallbackOnly extends pg.Client {
      // @ts-expect-error narrowing pg's overloads to the callback form, as pg-native's client has it
      override connect(callback?: (err: Error) => void): void {
        if (typeof callback !== 'function') {
          promiseForm++
          throw new TypeError('this client connects with a callback only')
        }
        super.connect(callback)
      }
    }
    const pool = res.track(subject.onCluster(cluster, { Client: CallbackOnly as never }))
    const client = await pool.connect()
    client.release()
    expect((await pool.query<{ n: number }>('SELECT 1 AS n')).rows[0]!.n).toBe(1)
    expect(promiseForm).toBe(0)
  })

  it('a Client whose connect fails with an error of its own (no code): the caller gets that error, and no \'connect\' is emitted', async () => {
    class Refusing extends EventEmitter {
      connect(callback: (err: Error) => void): void {
        process.nextTick(() => callback(new Error('bad news')))
      }
    }
    const pool = res.track(subject.onAddress('127.0.0.1', primaryOf(cluster).port, { Client: Refusing as never }))
    let connects = 0
    pool.on('connect', () => connects++)
    const c = await outcome(pool.connect())
    expect(c.error?.message).toBe('bad news')
    expect(connects).toBe(0)
  })

  it('connect(callback) that fails passes no client and a release function, as pg-pool does', async () => {
    const pool = res.track(subject.onAddress('127.0.0.1', await refusedPort()))
    const [err, client, release] = await new Promise<unknown[]>((resolve) => pool.connect((...args: unknown[]) => resolve(args)))
    expect(err).toBeInstanceOf(Error)
    expect(client).toBeUndefined()
    expect(typeof release).toBe('function')
  })

  it('after a connect that failed, the next request connects afresh (no stale error)', async () => {
    let failNext = true
    class FailsOnce extends pg.Client {
      // @ts-expect-error the callback form, which both pools use
      override connect(callback: (err?: Error) => void): void {
        if (failNext) {
          failNext = false
          setTimeout(() => callback(new Error('Temporary connection failure')), 50)
          return
        }
        super.connect(callback)
      }
    }
    const node = primaryOf(cluster)
    // One address, as pg.Pool has it: the FailoverPool in fail-fast mode with that one endpoint.
    const options = { Client: FailsOnce as never, connectionTimeoutMillis: 2_000 }
    const pool = res.track(subject.name === 'pg.Pool' ? new pg.Pool({ connectionString: node.url, ...options }) : new FailoverPool({ endpoints: [node.url], failoverTimeoutMs: 0, ...options }))
    const first = await outcome(pool.query('SELECT 1'))
    expect(first.error?.message).toBe('Temporary connection failure')
    const second = await outcome(pool.query<{ n: number }>('SELECT 2 AS n'))
    expect(second.error).toBeUndefined()
    expect(second.value!.rows[0]!.n).toBe(2)
  })

  it('the first checkout\'s connect fails while the next connect is slow: that checkout gets the failure at once, not a timeout', async () => {
    // pg-pool's own suite (connection-timeout.js): the first connect fails after 300 ms, the second
    // takes longer than connectionTimeoutMillis. A FailoverPool's request must not wait for a
    // verification that the slow connect holds up: its own connect failed, so it fails with that.
    let calls = 0
    class FailsThenSlow extends pg.Client {
      // @ts-expect-error the callback form, which both pools use
      override connect(callback: (err?: Error) => void): void {
        const call = calls++
        if (call === 0) return void setTimeout(() => callback(new Error('Temporary connection failure')), 300)
        if (call === 1) return void setTimeout(() => super.connect(callback), 1_500)
        super.connect(callback)
      }
    }
    const node = primaryOf(cluster)
    const options = { Client: FailsThenSlow as never, connectionTimeoutMillis: 1_000, max: 1 }
    const pool = res.track(subject.name === 'pg.Pool' ? new pg.Pool({ connectionString: node.url, ...options }) : new FailoverPool({ endpoints: [node.url], failoverTimeoutMs: 0, ...options }))
    const started = performance.now()
    const first = await outcome(pool.connect())
    expect(first.error?.message).toBe('Temporary connection failure')
    expect(performance.now() - started).toBeLessThan(900)
    // Once the slow connect is through, the pool works.
    await sleep(1_600 - (performance.now() - started))
    const later = await outcome(pool.query<{ n: number }>('SELECT 3 AS n'))
    expect(later.error?.message).toBeUndefined()
    expect(later.value?.rows[0]!.n).toBe(3)
  })

  it('counts: a new pool\'s very first query counts the connection it opens at once, and it alone serves the query', async () => {
    // One address, as pg.Pool has it; pg.Pool connects at once, a FailoverPool while verifying the node.
    const node = primaryOf(cluster)
    const pool = res.track(subject.name === 'pg.Pool' ? new pg.Pool({ connectionString: node.url, idleTimeoutMillis: 1 }) : new FailoverPool({ endpoints: [node.url], idleTimeoutMillis: 1 }))
    let connects = 0
    pool.on('connect', () => connects++)
    const first = pool.query('SELECT 1')
    expect([pool.totalCount, pool.idleCount]).toEqual([1, 0])
    await first
    expect(connects).toBe(1)
    await waitUntil(() => pool.totalCount === 0, { what: 'the idle timeout to close it' })
  })

  it('pool._clients (pg-pool\'s private list, which tools read): the open clients; ending one fails its running query', async () => {
    const pool = res.track(subject.onCluster(cluster, { max: 1 }))
    pool.on('error', () => undefined)
    // Not certainly read-only (a FailoverPool re-runs such a read elsewhere): it must fail here.
    const running = outcome(pool.query('DO $$ BEGIN PERFORM pg_sleep(5); END $$'))
    const clients = (): pg.Client[] => (pool as unknown as { _clients: pg.Client[] })._clients
    await waitUntil(() => clients().length === 1 && pool.idleCount === 0, { what: 'the query\'s client in _clients' })
    // Running on the server, not still connecting (a connect cut before anything was sent is retried).
    const observer = new pg.Client(primaryOf(cluster).url)
    await observer.connect()
    try {
      await waitUntil(async () => (await observer.query("SELECT 1 FROM pg_stat_activity WHERE state = 'active' AND query LIKE 'DO $$ BEGIN PERFORM pg_sleep(5)%'")).rowCount === 1, { what: 'the statement running on the primary' })
    } finally {
      await observer.end()
    }
    void clients()[0]!.end()
    const result = await running
    expect(result.error).toBeInstanceOf(Error)
    expect(result.ms).toBeLessThan(4_000)
  })

  it('a server that accepts TCP and never answers: query() fails after connectionTimeoutMillis with pg-pool\'s message', async () => {
    const port = await silentServer()
    const pool = res.track(subject.onAddress('127.0.0.1', port, { connectionTimeoutMillis: 300 }))
    const q = await outcome(pool.query('SELECT 1'))
    expect(q.error?.message).toBe('Connection terminated due to connection timeout')
    expect(q.ms).toBeGreaterThanOrEqual(250)
    expect(q.ms).toBeLessThan(2_000)
  })
})

describe('fail-fast mode (failoverTimeoutMs: 0) on a real cluster', () => {
  it('with the primary gone, a query fails at once with the node\'s own connection error instead of waiting for a failover', async () => {
    const own = await res.cluster({ standbys: 1 })
    const [n0] = own.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(own, { failoverTimeoutMs: 0 })
    await pool.query('SELECT 1')
    await own.stop(n0, 'fast')
    await waitUntil(() => pool.status().primary === null, { what: 'the pool noticing' })
    const q = await outcome(pool.query('SELECT 1'))
    expect(q.ms).toBeLessThan(500)
    expect(q.error).toBeInstanceOf(Error)
    // The node's own connection error, as pg.Pool reports it in the same moment — ECONNREFUSED, the
    // shutdown's 57P01, or pg's "Connection terminated unexpectedly", depending on what the pool saw
    // last from it — and never one of the pool's own errors.
    expect(q.error instanceof FailoverPoolError).toBe(false)
    expect(classifyError(q.error), String(q.error)).toBe('connection')
  })
})

describe('FailoverPool: what a failover does to statements in flight', () => {
  it('an error on a checked-out client whose statement was sent is recognisable as outcome-unknown, also through ORM wrappers; class, code and message unchanged', async () => {
    const own = await res.cluster({ standbys: 1 })
    const [n0] = own.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(own)
    await pool.query('CREATE TABLE t (id int)')
    const client = await pool.connect()
    client.on('error', () => undefined)
    const lost = client.query('INSERT INTO t SELECT 1 FROM pg_sleep(5)').then(() => null, (e: Error) => e)
    await waitUntil(async () => (await own.sql<{ n: number }>(n0, "SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t%' AND state = 'active'"))[0]!.n === 1, { what: 'the insert running' })
    await own.terminateBackends(n0)
    const err = (await lost)!
    expect(err).toBeInstanceOf(Error)
    expect(err.constructor.name).toBe('DatabaseError') // pg's own class, not ours
    expect((err as { code?: string }).code).toBe('57P01')
    expect(isOutcomeUnknownError(err)).toBe(true)
    // As the ORMs hand it on: TypeORM's QueryFailedError.driverError, Sequelize's parent/original,
    // Drizzle's cause, MikroORM's copy of every own property.
    expect(isOutcomeUnknownError(Object.assign(new Error('QueryFailedError'), { driverError: err }))).toBe(true)
    expect(isOutcomeUnknownError(Object.assign(new Error('SequelizeDatabaseError'), { parent: err, original: err }))).toBe(true)
    expect(isOutcomeUnknownError(new Error('Failed query', { cause: err }))).toBe(true)
    const copied = new Error(err.message)
    for (const key of Object.getOwnPropertyNames(err)) (copied as unknown as Record<string, unknown>)[key] = (err as unknown as Record<string, unknown>)[key]
    expect(isOutcomeUnknownError(copied)).toBe(true)
    // The marker is invisible to logs and JSON.
    expect(JSON.stringify(err)).not.toContain('pgFailoverPool')
    // What provably ran nothing is never marked: the dead client refusing the next write, a SQL error.
    const refused = await client.query('INSERT INTO t VALUES (2)').then(() => null, (e: Error) => e)
    expect(refused?.message).toMatch(/not queryable/)
    expect(isOutcomeUnknownError(refused)).toBe(false)
    // A read on it is refused too, never re-run on another session (its settings, search_path and
    // temp tables cannot move there); the caller learns it ran nothing and may retry it.
    const read = await client.query('SELECT 1 AS one').then(() => null, (e: Error) => e)
    expect(read?.message).toMatch(/not queryable/)
    expect(isOutcomeUnknownError(read)).toBe(false)
    expect(isSafeToRetryError(read)).toBe(true)
    client.release(true)
    const syntax = await pool.query('SELEC 1').then(() => null, (e: Error) => e)
    expect(isOutcomeUnknownError(syntax)).toBe(false)
  })

  it('a certainly read-only statement lost mid-flight on pool.query is re-run on the new primary (routeReads off): the read succeeds', async () => {
    const own = await res.cluster({ standbys: 1 })
    const [n0, n1] = own.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(own)
    // The read waits for a one-row table the test holds on n0: certainly still running when n0
    // stops, however slow the machine (a server-side sleep could end first, and answer from n0).
    await pool.query('CREATE TABLE gate AS SELECT 1 AS one')
    await own.waitForReplication(n0)
    await holdTable(res, n0, 'gate')
    const read = pool.query<{ port: number }>('SELECT inet_server_port() AS port FROM gate')
    await heldStatements(own, n0, "query LIKE 'SELECT inet_server_port()%'", 1)
    await own.stop(n0, 'immediate')
    await sleep(50)
    await own.promote(n1)
    const { rows } = await read
    expect(rows[0]!.port).toBe(n1.port)
  })
})
