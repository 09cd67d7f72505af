/**
 * Proves the HA tool harnesses of test/support/ha/ against the real tools, with plain `pg`
 * clients (not the FailoverPool): Patroni on etcd, repmgr with repmgrd and a witness, PgBouncer,
 * HAProxy. Every test starts its own setup and tears it down in afterEach, then checks that no
 * process and no temp directory of it is left.
 *
 * Measured timings are printed (console.log) so that later failover tests can size their budgets.
 */
import { existsSync, readFileSync } from 'node:fs'
import { afterEach, beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import { startCluster } from '../support/cluster.js'
import { startHAProxyForPatroni } from '../support/ha/haproxy.js'
import { ensureDebianPackages, HA_PACKAGES } from '../support/ha/packages.js'
import { startPatroni, type PatroniCluster } from '../support/ha/patroni.js'
import { startPgBouncer } from '../support/ha/pgbouncer.js'
import { startRepmgr } from '../support/ha/repmgr.js'
import { pgQuery, type PgConfig, waitFor } from '../support/ha/util.js'
import { processesMentioning } from '../support/pg-binaries.js'

const TEST_TIMEOUT = 150_000

// ------------------------------------------------------------------------------------------------
// Teardown bookkeeping: each test registers what it started; afterEach destroys it (newest first)
// and then checks that nothing mentioning its directories still runs and the directories are gone.

const teardowns: Array<{ destroy: () => Promise<void>; dirs: string[] }> = []

function track<T extends { destroy: () => Promise<void> }>(thing: T, ...dirs: string[]): T {
  teardowns.push({ destroy: () => thing.destroy(), dirs })
  return thing
}

afterEach(async () => {
  const items = teardowns.splice(0).reverse()
  const errors: unknown[] = []
  for (const t of items) {
    try {
      await t.destroy()
    } catch (err) {
      errors.push(err)
    }
  }
  if (errors.length > 0) throw errors[0]
  for (const t of items) {
    for (const dir of t.dirs) {
      expect(processesMentioning(dir).map((p) => `${p.pid}: ${p.cmd}`), `processes left for ${dir}`).toEqual([])
      expect(existsSync(dir), `${dir} removed`).toBe(false)
    }
  }
}, TEST_TIMEOUT)

// ------------------------------------------------------------------------------------------------
// Client helpers

async function withClient<T>(config: PgConfig, fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ ...config, connectionTimeoutMillis: 3000 })
  c.on('error', () => undefined)
  await c.connect()
  try {
    return await fn(c)
  } finally {
    await Promise.race([c.end().catch(() => undefined), new Promise((r) => setTimeout(r, 1000))])
  }
}

/**
 * Waits until each of `standbys` has replayed the creation of `table`: replication is
 * asynchronous, and a node killed right after a CREATE TABLE may not have sent it yet. The bound
 * is for a loaded 2-core machine (it fails a test only when replication is really stuck).
 */
async function tableReplicated<N>(c: { sql<T>(node: N, text: string): Promise<T[]> }, standbys: readonly N[], table: string): Promise<void> {
  for (const n of standbys) {
    await expect
      .poll(async () => (await c.sql<{ t: string | null }>(n, `SELECT to_regclass('${table}')::text AS t`))[0]?.t, {
        timeout: 30_000,
        interval: 50,
        message: `${(n as { name?: string }).name ?? String(n)} to replay CREATE TABLE ${table}`,
      })
      .toBe(table)
  }
}

/** What a fresh client sees when it tries to write: 'writable', or the error code/message. */
async function writeOutcome(config: PgConfig, table: string): Promise<string> {
  try {
    return await withClient(config, async (c) => {
      await c.query(`INSERT INTO ${table} VALUES (now())`)
      return 'writable'
    })
  } catch (err) {
    const e = err as { code?: string; message?: string }
    return e.code ?? e.message ?? String(err)
  }
}

/**
 * Poll `config` with fresh clients every 50 ms until a write succeeds; returns the distinct
 * phases seen (e.g. ECONNREFUSED → 57P03 → 25006 → writable) with their start times.
 */
async function phasesUntilWritable(config: PgConfig, table: string, since: number, timeoutMs: number): Promise<string[]> {
  const phases: string[] = []
  let last = ''
  await waitFor(`${config.host}:${config.port} to take writes`, timeoutMs, 50, async () => {
    const o = await writeOutcome(config, table)
    if (o !== last) {
      phases.push(`${Date.now() - since} ms: ${o}`)
      last = o
    }
    return o === 'writable'
  })
  return phases
}

function log(...args: unknown[]): void {
  console.log('[ha-harness]', ...args)
}

// ------------------------------------------------------------------------------------------------

beforeAll(async () => {
  await ensureDebianPackages(HA_PACKAGES) // installs on a fresh machine; instant otherwise
}, 900_000)

describe('packages', () => {
  it('ensureDebianPackages installs nothing once everything is installed', async () => {
    // The suite's setup installed them (or found them): a second call only asks dpkg-query.
    expect(await ensureDebianPackages(HA_PACKAGES)).toEqual([])
    expect(await ensureDebianPackages(['haproxy'])).toEqual([])
  })
})

describe('Patroni harness', () => {
  function memberState(c: PatroniCluster, state: Awaited<ReturnType<PatroniCluster['cluster']>>): string {
    return state.members.map((m) => `${m.name}:${m.role}/${m.state}/tl${String(m.timeline)}`).join(' ') + ` (${c.scope})`
  }

  it(
    'starts a 3-member cluster whose leader takes writes; after killPostmaster the same member is writable again',
    async () => {
      const t0 = Date.now()
      const c = await startPatroni()
      track(c, c.baseDir, c.etcd.dir)
      log(`Patroni start (etcd + 3 members streaming): ${Date.now() - t0} ms`)

      const leader = await c.leader()
      expect(leader?.name).toBe('pg0')
      const state = await c.cluster()
      expect(state.members.map((m) => m.name).sort()).toEqual(['pg0', 'pg1', 'pg2'])
      expect(state.members.filter((m) => m.role === 'leader')).toHaveLength(1)
      expect(leader!.config).toEqual({ name: 'pg0', host: '127.0.0.1', port: leader!.port, user: 'postgres', password: c.password, database: 'postgres' })
      await c.sql(leader!, 'CREATE TABLE beats (at timestamptz)')
      expect(await writeOutcome(leader!.config, 'beats')).toBe('writable')
      await tableReplicated(c, c.members.filter((x) => x !== leader), 'beats')
      for (const m of c.members.filter((x) => x !== leader)) {
        expect(await c.isWritable(m)).toBe(false)
        expect(await writeOutcome(m.config, 'beats')).toBe('25006')
      }
      // Superuser and replication user both need their passwords over TCP.
      await expect(pgQuery({ ...leader!.config, password: 'wrong' }, 'SELECT 1')).rejects.toThrow(/password authentication failed/)
      const [repl] = await c.sql<{ n: number }>(leader!, `SELECT count(*)::int AS n FROM pg_stat_replication WHERE usename = 'replicator'`)
      expect(repl?.n).toBe(2)

      // Crash the postmaster only: Patroni keeps the leader key and brings the node back itself.
      const tlBefore = await c.timeline(leader!)
      const k = Date.now()
      const oldPid = await c.killPostmaster(leader!)
      const phases = await phasesUntilWritable(leader!.config, 'beats', k, 60_000)
      const writableMs = Date.now() - k
      const tlAfter = await c.timeline(leader!)
      log(`Patroni killPostmaster(${leader!.name}) -> writable again after ${writableMs} ms; timeline ${tlBefore} -> ${tlAfter}`)
      log(`  phases seen by fresh clients: ${phases.join(' | ')}`)
      expect((await c.leader())?.name).toBe(leader!.name)
      expect(c.postmasterPid(leader!)).not.toBe(oldPid)
      // Patroni restarts a crashed leader read-only and then promotes it: a new timeline.
      expect(tlAfter).toBe(tlBefore + 1)
      // Patroni logs from a background thread, and logs "promoted self" when the cycle that started
      // the (asynchronous) promotion ends: the server can take writes before the line is in the file.
      await waitFor(
        `${leader!.name}'s Patroni to log its read-only restart and its promotion`,
        30_000,
        100,
        async () => {
          const logText = readFileSync(leader!.logFile, 'utf8')
          return /starting as readonly because i had the session lock/.test(logText) && /promoted self to leader because I had the session lock/.test(logText)
        },
        () => c.logTail(leader!, 30),
      )
      await c.waitForStreaming()
      log(`  all members streaming again after ${Date.now() - k} ms: ${memberState(c, await c.cluster())}`)
    },
    TEST_TIMEOUT,
  )

  it(
    'switchover (synchronous_mode) makes the sync standby the writable leader',
    async () => {
      const c = await startPatroni({ members: 3, synchronousMode: true })
      track(c, c.baseDir, c.etcd.dir)
      const sync = await waitFor('a sync_standby in /cluster', 30_000, 100, async () =>
        (await c.cluster()).members.find((m) => m.role === 'sync_standby'),
      )
      const [ssn] = await c.sql<{ s: string }>('pg0', `SELECT current_setting('synchronous_standby_names') AS s`)
      expect(ssn?.s).toContain(sync.name)
      await c.sql('pg0', 'CREATE TABLE beats (at timestamptz)')
      expect(await writeOutcome(c.member('pg0').config, 'beats')).toBe('writable')

      const t = Date.now()
      const { output } = await c.switchover(sync.name)
      const switchMs = Date.now() - t
      expect(output).toMatch(/Successfully switched over to "?pg[12]"?/)
      expect((await c.leader())?.name).toBe(sync.name)
      expect(await writeOutcome(c.member(sync.name).config, 'beats')).toBe('writable')
      await c.waitForStreaming()
      log(`Patroni switchover pg0 -> ${sync.name}: new leader writable after ${switchMs} ms, old leader streaming after ${Date.now() - t} ms`)
      expect(await c.isWritable('pg0')).toBe(false)
    },
    TEST_TIMEOUT,
  )

  it(
    'killMember: another member takes over after the ttl; restartMember rejoins it as a replica',
    async () => {
      const c = await startPatroni()
      track(c, c.baseDir, c.etcd.dir)
      const old = (await c.leader())!
      await c.sql(old, 'CREATE TABLE beats (at timestamptz)')
      await tableReplicated(c, c.members.filter((x) => x !== old), 'beats')
      const tlBefore = await c.timeline(old)

      const t = Date.now()
      await c.killMember(old)
      expect(c.isPatroniRunning(old)).toBe(false)
      expect(c.postmasterPid(old)).toBeNull()
      const next = await c.waitForLeader(old, 60_000)
      const takeoverMs = Date.now() - t
      expect(next.name).not.toBe(old.name)
      expect(await writeOutcome(next.config, 'beats')).toBe('writable')
      const tlNext = await c.timeline(next)
      expect(tlNext).toBeGreaterThan(tlBefore)
      log(`Patroni killMember(${old.name}) -> ${next.name} writable leader after ${takeoverMs} ms (ttl 10 s); timeline ${tlBefore} -> ${tlNext}`)

      const r = Date.now()
      await c.restartMember(old)
      log(`Patroni restartMember(${old.name}) -> streaming from ${next.name} after ${Date.now() - r} ms`)
      expect((await c.leader())?.name).toBe(next.name)
      expect(await c.isWritable(old)).toBe(false)
      expect(await c.timeline(old)).toBe(tlNext)
      const text = readFileSync(old.logFile, 'utf8')
      log(`  pg_rewind used on rejoin: ${/running pg_rewind from/.test(text)}`)
    },
    TEST_TIMEOUT,
  )
})

describe('repmgr harness', () => {
  it(
    'registers a primary, two standbys and a witness that is not a data node',
    async () => {
      const t0 = Date.now()
      const c = await startRepmgr()
      track(c, c.baseDir)
      log(`repmgr start (primary + 2 standbys + witness, repmgrd everywhere): ${Date.now() - t0} ms`)

      expect(c.dataNodes.map((n) => n.name)).toEqual(['node1', 'node2', 'node3'])
      expect(c.witness.name).toBe('witness')
      expect((await c.primary())?.name).toBe('node1')
      await c.waitForStreaming('node1')
      const nodes = await pgQuery<{ node_name: string; type: string; active: boolean }>(
        { ...c.node('node1').config, database: 'repmgr' },
        'SELECT node_name, type, active FROM repmgr.nodes ORDER BY node_id',
      )
      expect(nodes).toEqual([
        { node_name: 'node1', type: 'primary', active: true },
        { node_name: 'node2', type: 'standby', active: true },
        { node_name: 'node3', type: 'standby', active: true },
        { node_name: 'witness', type: 'witness', active: true },
      ])
      for (const n of c.nodes) expect(c.isRepmgrdRunning(n)).toBe(true)

      // The witness is its own PostgreSQL instance (another system identifier), holding only
      // repmgr's metadata: application data never reaches it and primary() never names it.
      await c.sql('node1', 'CREATE TABLE app_data (id int)')
      await c.sql('node1', 'INSERT INTO app_data VALUES (1)')
      const sysid = async (n: string): Promise<string> =>
        (await c.sql<{ id: string }>(n, 'SELECT system_identifier::text AS id FROM pg_control_system()'))[0]!.id
      expect(await sysid('witness')).not.toBe(await sysid('node1'))
      expect(await sysid('node2')).toBe(await sysid('node1'))
      expect(await c.sql('witness', `SELECT to_regclass('public.app_data') AS t`)).toEqual([{ t: null }])
      expect(c.dataNodes).not.toContain(c.witness)
      expect((await c.writableNodes()).map((n) => n.name)).toEqual(['node1'])
      expect(await c.clusterShow()).toMatch(/witness\s*\|\s*witness\s*\|\s*\* running/)
    },
    TEST_TIMEOUT,
  )

  it(
    'killPrimary: repmgrd promotes a standby, the other follows; the old primary started as is comes up writable on its old timeline',
    async () => {
      const c = await startRepmgr()
      track(c, c.baseDir)
      await c.sql('node1', 'CREATE TABLE beats (at timestamptz)')
      await tableReplicated(c, c.dataNodes.filter((n) => n.name !== 'node1'), 'beats')
      const tlBefore = await c.timeline('node1')

      const t = Date.now()
      const killed = await c.killPrimary()
      expect(killed.name).toBe('node1')
      const next = await c.waitForPrimary(killed, 60_000)
      const failoverMs = Date.now() - t
      expect(['node2', 'node3']).toContain(next.name)
      expect(await writeOutcome(next.config, 'beats')).toBe('writable')
      const tlNext = await c.timeline(next)
      expect(tlNext).toBe(tlBefore + 1)
      const other = c.dataNodes.find((n) => n !== killed && n !== next)!
      await c.waitForStreaming(next, [other])
      log(`repmgr killPrimary(node1) -> ${next.name} writable after ${failoverMs} ms (timeline ${tlBefore} -> ${tlNext}); ${other.name} follows after ${Date.now() - t} ms`)
      // repmgr writes its verdict after its own promote_check loop sees the promotion, which can be
      // a second after the node already takes writes: wait for the line rather than read once.
      await waitFor('repmgr to log STANDBY PROMOTE successful', 30_000, 100, async () =>
        /STANDBY PROMOTE successful/.test(readFileSync(next.repmgrLogFile, 'utf8')),
        () => readFileSync(next.repmgrLogFile, 'utf8'),
      )

      // A reboot of the old primary under repmgr: nobody fences it.
      await c.stopNode(killed) // its repmgrd too (the postmaster is already dead)
      await c.startAsIs(killed)
      expect(await c.isWritable(killed)).toBe(true)
      expect(await c.timeline(killed)).toBe(tlBefore)
      expect((await c.writableNodes()).map((n) => n.name).sort()).toEqual(['node1', next.name].sort())
      expect((await c.primary())?.name).toBe(next.name) // the higher timeline
    },
    TEST_TIMEOUT,
  )
})

describe('PgBouncer harness', () => {
  it(
    'session mode: each client keeps its own server session; retarget moves new sessions to another server',
    async () => {
      const cluster = await startCluster({ standbys: 1 })
      track(cluster, cluster.baseDir)
      const [primary, standby] = cluster.nodes
      const b = await startPgBouncer({ target: primary!, user: 'postgres', password: cluster.password, poolMode: 'session' })
      track(b, b.dir)

      await withClient(b.config(), async (a) => {
        await withClient(b.config(), async (c2) => {
          await a.query(`SET application_name = 'client-a'`)
          const pidA = (await a.query('SELECT pg_backend_pid() AS p')).rows[0].p
          const pidB = (await c2.query('SELECT pg_backend_pid() AS p')).rows[0].p
          expect(pidA).not.toBe(pidB)
          expect((await a.query('SELECT pg_backend_pid() AS p, current_setting($1) AS app', ['application_name'])).rows[0]).toEqual({
            p: pidA,
            app: 'client-a',
          })
          expect((await a.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(primary!.port)
        })
      })

      await b.retarget(standby!.host, standby!.port)
      const [row] = await pgQuery<{ port: number; ro: boolean }>(b.config(), 'SELECT inet_server_port() AS port, pg_is_in_recovery() AS ro')
      expect(row).toEqual({ port: standby!.port, ro: true })
    },
    TEST_TIMEOUT,
  )

  it(
    'transaction mode: clients share one server connection between transactions',
    async () => {
      const cluster = await startCluster({ standbys: 0 })
      track(cluster, cluster.baseDir)
      const b = await startPgBouncer({
        target: cluster.nodes[0]!,
        user: 'postgres',
        password: cluster.password,
        poolMode: 'transaction',
        defaultPoolSize: 1,
        queryWaitTimeout: 5,
        serverLoginRetry: 1,
        serverConnectTimeout: 2,
      })
      track(b, b.dir)
      await withClient(b.config(), async (a) => {
        await withClient(b.config(), async (c2) => {
          const [ra, rb] = await Promise.all([
            a.query('SELECT pg_backend_pid() AS p, 1 AS who'),
            c2.query('SELECT pg_backend_pid() AS p, 2 AS who'),
          ])
          expect(ra.rows[0].who).toBe(1)
          expect(rb.rows[0].who).toBe(2)
          expect(ra.rows[0].p).toBe(rb.rows[0].p) // pool size 1: the same server backend
          await a.query('BEGIN')
          await a.query('CREATE TEMP TABLE IF NOT EXISTS x (i int) ON COMMIT DROP')
          await a.query('COMMIT')
          const pools = await b.admin<{ database: string; pool_mode: string; sv_idle: string | number }>('SHOW POOLS')
          expect(pools.find((p) => p.database === 'postgres')?.pool_mode).toBe('transaction')
        })
      })
    },
    TEST_TIMEOUT,
  )
})

describe('HAProxy harness', () => {
  it(
    'routes to the Patroni leader and follows a switchover',
    async () => {
      const c = await startPatroni({ members: 2 })
      track(c, c.baseDir, c.etcd.dir)
      const h = await startHAProxyForPatroni(c, { interMs: 300, fall: 2, rise: 1 })
      track(h, h.dir)
      await h.waitForActive('pg0')
      const q = (): Promise<Array<{ port: number; ro: boolean }>> =>
        pgQuery(h.config(), 'SELECT inet_server_port() AS port, pg_is_in_recovery() AS ro')
      expect(await q()).toEqual([{ port: c.member('pg0').port, ro: false }])

      // A session held through HAProxy is cut when its server is marked down.
      const held = new pg.Client({ ...h.config(), connectionTimeoutMillis: 3000 })
      const heldError = new Promise<Error>((resolve) => held.on('error', resolve))
      await held.connect()

      const t = Date.now()
      await c.switchover('pg1')
      await h.waitForActive('pg1')
      log(`HAProxy follows Patroni switchover pg0 -> pg1 after ${Date.now() - t} ms`)
      expect(await q()).toEqual([{ port: c.member('pg1').port, ro: false }])
      const err = await Promise.race([heldError, new Promise<null>((r) => setTimeout(() => r(null), 10_000))])
      expect(err).not.toBeNull()
      await held.end().catch(() => undefined)
    },
    TEST_TIMEOUT,
  )
})
