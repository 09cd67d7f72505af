import { spawn } from 'node:child_process'
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, utimesSync, writeFileSync } from 'node:fs'
import path from 'node:path'
import { describe, expect, it } from 'vitest'
import {
  FileStateStore,
  NoPrimaryError,
  isOutcomeUnknownError,
  SwitchoverRefusedError,
  logicalMirrorHook,
  MemoryStateStore,
  type StateStore,
} from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { replicasKnown, useResources } from '../support/pools.js'
import { ROOT } from '../support/process.js'
import { nextEvent, sleep, waitUntil } from '../support/wait.js'
import { writeLoop } from '../support/writes-in-flight.js'

const res = useResources()

function stateFile(): string {
  return path.join(res.tempDir('pgfp-state-'), 'state.json')
}

async function rowsOn(c: Cluster, node: ClusterNode, sql: string): Promise<number> {
  return (await c.sql<{ n: number }>(node, sql))[0]!.n
}

/** The record in a state file, or null while there is none (or it is being replaced). */
function recordIn(file: string): { primary: string; epoch: number; version: number } | null {
  try {
    return JSON.parse(readFileSync(file, 'utf8'))
  } catch {
    return null
  }
}

/** Waits until the state file names `primary` at `epoch` (the pool writes it after the transition). */
async function fileSays(file: string, primary: string, epoch: number): Promise<void> {
  await waitUntil(() => recordIn(file)?.primary === primary && recordIn(file)?.epoch === epoch, {
    what: `${file} to record ${primary} at epoch ${epoch}`,
    timeout: 10_000,
    diagnostics: () => `file holds: ${JSON.stringify(recordIn(file))}`,
  })
}

describe('state store and fencing on real clusters', () => {
  it('a restarted process starts on the recorded node at once, and never on the stale old primary', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    const file = stateFile()
    const first = res.pool(c, { stateStore: new FileStateStore(file) })
    await first.query('CREATE TABLE ledger (id int PRIMARY KEY, port int)')
    await first.query('INSERT INTO ledger VALUES (1, inet_server_port())')
    const failover = nextEvent(first, 'failover')
    await c.stop(n0, 'fast')
    await c.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name, epoch: 2 })
    await first.query('INSERT INTO ledger VALUES (2, inet_server_port())')
    await first.end()

    const stored = JSON.parse(readFileSync(file, 'utf8'))
    expect(stored).toMatchObject({ primary: n1.name, epoch: 2, timeline: 2, version: 2 })
    expect(statSync(file).mode & 0o777).toBe(0o600)

    // The failback data-loss case across a restart: the old primary is back and writable, and it is
    // the only writable node a new process can reach. Without the record it would take writes.
    await c.startAsWritable(n0)
    await c.stop(n1, 'fast')
    const restarted = res.pool(c, { stateStore: new FileStateStore(file), failoverTimeoutMs: 800 })
    const fenced = nextEvent(restarted, 'splitBrain')
    const refused = await restarted.query('INSERT INTO ledger VALUES (3, inet_server_port())').then(() => null, (e: unknown) => e)
    expect((refused instanceof NoPrimaryError)).toBe(true)
    expect((await fenced).fenced).toEqual([n0.name])
    expect(restarted.status().endpoints.find((e) => e.name === n0.name)!.role).toBe('fenced')
    expect(await rowsOn(c, n0, 'SELECT count(*)::int AS n FROM ledger WHERE id = 3')).toBe(0)

    // The recorded node comes back: the restarted process writes there without any restart dance.
    await c.start(n1)
    const started = performance.now()
    const third = res.pool(c, { stateStore: new FileStateStore(file) })
    const { rows } = await third.query('INSERT INTO ledger VALUES (4, inet_server_port()) RETURNING port')
    expect(rows[0].port).toBe(n1.port)
    expect(performance.now() - started).toBeLessThan(2_000)
    expect(third.status()).toMatchObject({ primary: n1.name, epoch: 2, failovers: 0 })

    // Control: a pool with no record does write to the stale node, which is what the store prevents.
    await c.stop(n1, 'fast')
    const naive = res.pool(c, { stateStore: new MemoryStateStore() })
    const landed = await naive.query('SELECT inet_server_port() AS port')
    expect(landed.rows[0].port).toBe(n0.port)
  })

  it('the old primary coming back writable after a failover gets zero writes, and splitBrain fires', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    // A short breaker wait so the returning node is probed again soon (it is never written to either way).
    const pool = res.pool(c, { halfOpenAfterMs: 200, maxHalfOpenAfterMs: 200 })
    await pool.query('CREATE TABLE ledger (id int PRIMARY KEY, port int)')
    // n1 is written to once promoted: it must have the table before n0 dies (replication is asynchronous).
    await c.waitForReplication(n0)
    await c.stop(n0, 'immediate')
    await c.promote(n1)
    await expect.poll(() => pool.status().primary, { timeout: 5_000 }).toBe(n1.name)

    const splitBrain = nextEvent(pool, 'splitBrain')
    const loop = writeLoop(async (_note, i) => (await pool.query<{ port: number }>('INSERT INTO ledger VALUES ($1, inet_server_port()) RETURNING port', [100 + i])).rows[0]!.port)
    const ports = loop.acknowledged
    await c.startAsWritable(n0)
    const event = await splitBrain
    expect(event).toMatchObject({ chosen: n1.name, fenced: [n0.name] })
    // Writes keep flowing once the old primary is back and fenced (stop waiting at a failed one: it is reported below).
    const atSplitBrain = ports.length
    await expect.poll(() => loop.failed.length > 0 || ports.length >= atSplitBrain + 10, { timeout: 5_000 }).toBe(true)
    await loop.stop()
    expect(loop.failed.map((f) => `${f.note}: ${String(f.error)}`)).toEqual([])
    expect(ports.length).toBeGreaterThan(10)
    expect(ports.every((p) => p === n1.port)).toBe(true)
    expect(await rowsOn(c, n0, 'SELECT count(*)::int AS n FROM ledger WHERE id >= 100')).toBe(0)
    expect(pool.status().endpoints.find((e) => e.name === n0.name)!.role).toBe('fenced')
  })

  it('a fenced old primary that is rewound and rejoined as a standby serves reads again', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c, { halfOpenAfterMs: 200, maxHalfOpenAfterMs: 200 })
    await pool.query('SELECT 1')
    await c.stop(n0, 'immediate')
    await c.promote(n1)
    const fenced = nextEvent(pool, 'splitBrain')
    await c.startAsWritable(n0)
    expect((await fenced).fenced).toEqual([n0.name])
    await c.rejoinAsStandby(n0, n1)
    await expect.poll(() => pool.status().endpoints.find((e) => e.name === n0.name)!.role, { timeout: 5_000 }).toBe('standby')
    for (let i = 0; i < 4; i++) expect((await pool.reader.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n0.port)
    expect(pool.status().primary).toBe(n1.name)
  })

  it('a corrupted state file is reported, set aside and replaced; the pool keeps serving', async () => {
    const c = await res.cluster({ standbys: 1 })
    const file = stateFile()
    writeFileSync(file, '{ this is not json', { mode: 0o600 })
    const pool = res.pool(c, { stateStore: new FileStateStore(file) })
    const reported = nextEvent(pool, 'stateStoreError')
    expect((await pool.query('SELECT 1 AS x')).rows[0].x).toBe(1)
    expect(await reported).toMatchObject({ operation: 'load', failure: 'corrupt' })
    await expect.poll(() => JSON.parse(readFileSync(file, 'utf8')).primary, { timeout: 5_000 }).toBe(c.nodes[0]!.name)
    const setAside = readdirSync(path.dirname(file)).filter((f) => f.includes('.corrupt-'))
    expect(setAside).toHaveLength(1)
    expect(readFileSync(path.join(path.dirname(file), setAside[0]!), 'utf8')).toBe('{ this is not json')
  })

  for (const loss of ['deleted', 'replaced by an older copy'] as const) {
    it(`a state file ${loss} between two failovers: the second failover is recorded, status is ok, a fresh pool starts from it`, async () => {
      const c = await res.cluster({ standbys: 2 })
      const [n0, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode]
      const file = stateFile()
      const pool = res.pool(c, { stateStore: new FileStateStore(file) })
      await pool.query('SELECT 1')
      await fileSays(file, n0.name, 1)
      const older = readFileSync(file)

      const first = nextEvent(pool, 'failover')
      await c.stop(n0, 'fast')
      await c.promote(n1)
      expect(await first).toMatchObject({ from: n0.name, to: n1.name, epoch: 2 })
      await c.repoint(n2, n1)
      await fileSays(file, n1.name, 2)

      if (loss === 'deleted') rmSync(file)
      else writeFileSync(file, older, { mode: 0o600 })
      const second = nextEvent(pool, 'failover')
      await c.stop(n1, 'fast')
      await c.promote(n2)
      expect(await second).toMatchObject({ from: n1.name, to: n2.name, epoch: 3 })
      await fileSays(file, n2.name, 3)
      expect(recordIn(file)).toMatchObject({ timeline: 3 })
      await expect.poll(() => pool.status().stateStore, { timeout: 5_000 }).toMatchObject({ ok: true, degraded: false, failure: null })
      await pool.end()

      // A process started now reads that record: the epoch goes on from 3, and the stale old
      // primary, back and writable on timeline 1, is fenced by the recorded timeline.
      await c.startAsWritable(n0)
      const fresh = res.pool(c, { stateStore: new FileStateStore(file) })
      expect((await fresh.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n2.port)
      expect(fresh.status()).toMatchObject({ primary: n2.name, epoch: 3, failovers: 0 })
      await expect.poll(() => fresh.status().endpoints.find((e) => e.name === n0.name)!.role, { timeout: 5_000 }).toBe('fenced')
    })
  }

  it('a store that hangs or fails never blocks queries; status says so', async () => {
    const c = await res.cluster({ standbys: 1 })
    const hanging: StateStore = { load: () => new Promise(() => undefined), compareAndSet: () => new Promise(() => undefined) }
    const pool = res.pool(c, { stateStore: hanging, stateStoreTimeoutMs: 200 })
    const started = performance.now()
    expect((await pool.query('SELECT 1 AS x')).rows[0].x).toBe(1)
    expect(performance.now() - started).toBeLessThan(1_500)
    await expect.poll(() => pool.status().stateStore, { timeout: 5_000 }).toMatchObject({ ok: false, failure: 'timeout' })
    for (let i = 0; i < 20; i++) await pool.query('SELECT 1')

    const failing: StateStore = { load: async () => Promise.reject(new Error('redis down')), compareAndSet: async () => Promise.reject(new Error('redis down')) }
    const other = res.pool(c, { stateStore: failing })
    expect((await other.query('SELECT 2 AS x')).rows[0].x).toBe(2)
    expect(other.status().stateStore).toMatchObject({ ok: false, failure: 'unavailable' })
  })

  it('two pools sharing a store converge on the primary one of them chose', async () => {
    const c = await res.cluster({ standbys: 2 })
    const [n0, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const store = new MemoryStateStore()
    // b only learns about the failover from the store: its own health checks are far apart and it has no promotion watch.
    const a = res.pool(c, { stateStore: store })
    const b = res.pool(c, { stateStore: store, healthCheckIntervalMs: 60_000, promotionWatch: false })
    await a.query('SELECT 1')
    await b.query('SELECT 1')
    // Cascade first: n2 streams through n1, so it cannot replay WAL n0 writes past n1's fork point.
    await c.repoint(n2, n1)
    await c.promote(n1) // n0 keeps running and writable: only the timeline tells them apart
    await c.repoint(n2, n1)
    await expect.poll(() => a.status().primary, { timeout: 5_000 }).toBe(n1.name)
    await expect.poll(() => b.status().primary, { timeout: 5_000 }).toBe(n1.name)
    expect(b.status().epoch).toBe(a.status().epoch)
    expect((await b.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n1.port)
    expect(n0.port).not.toBe(n1.port)
  })
})

describe('FileStateStore between processes', () => {
  /** A lock racer (test/fixtures/lock-racer.ts): one round per `go`, one JSON line per round. */
  interface Racer {
    /** Sends `go` and resolves with the round's line, or rejects after `timeoutMs`. */
    round(timeoutMs: number): Promise<{ overlap: boolean }>
    output(): string
  }

  async function racer(env: Record<string, string>): Promise<Racer> {
    const child = spawn(process.execPath, ['--import', 'tsx', 'test/fixtures/lock-racer.ts'], { cwd: ROOT, env: { ...process.env, ...env } })
    res.defer(() => child.kill('SIGKILL'))
    let stdout = ''
    let stderr = ''
    let waiter: (() => void) | null = null
    child.stdout.on('data', (d: Buffer) => {
      stdout += d.toString()
      waiter?.()
    })
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    child.on('exit', () => waiter?.())
    let lines = 0
    /** The next complete stdout line, waited for at most `timeoutMs`. */
    const nextLine = (timeoutMs: number): Promise<string> =>
      new Promise((resolve, reject) => {
        const check = (): void => {
          const all = stdout.split('\n')
          if (all.length - 1 > lines) {
            clearTimeout(timer)
            waiter = null
            resolve(all[lines++]!)
          } else if (child.exitCode !== null) {
            clearTimeout(timer)
            reject(new Error(`lock racer exited (${child.exitCode}): ${stdout}${stderr}`))
          }
        }
        const timer = setTimeout(() => reject(new Error(`lock racer silent for ${timeoutMs} ms: ${stdout}${stderr}`)), timeoutMs)
        waiter = check
        check()
      })
    expect(await nextLine(30_000)).toBe('ready')
    return {
      round(timeoutMs) {
        child.stdin.write('go\n')
        return nextLine(timeoutMs).then((line) => JSON.parse(line) as { overlap: boolean })
      },
      output: () => `${stdout}${stderr}`,
    }
  }

  it('two processes racing to break the same stale lock never both hold it (100 rounds)', async () => {
    const dir = res.tempDir('pgfp-lock-race-')
    const lockDir = path.join(dir, 'state.json.lockdir')
    const marker = path.join(dir, 'inside')
    const env = { LOCK_DIR: lockDir, MARKER: marker }
    const racers = await Promise.all([racer(env), racer(env)])
    const old = new Date(Date.now() - 60_000)
    let overlaps = 0
    for (let i = 0; i < 100; i++) {
      // A process died holding the lock long ago: its token is still there, old.
      mkdirSync(lockDir, { recursive: true })
      const token = path.join(lockDir, `token-${i}-dead`)
      writeFileSync(token, '{"pid":1}')
      utimesSync(token, old, old)
      // Both are told at once: both find the stale lock and break it together.
      const results = await Promise.all(racers.map((r) => r.round(30_000)))
      overlaps += results.filter((r) => r.overlap).length
      expect(existsSync(token), `round ${i}: the stale lock was broken`).toBe(false)
    }
    expect(overlaps, racers.map((r) => r.output()).join('\n')).toBe(0)
    expect(existsSync(marker)).toBe(false)
  })
})

describe('planned switchover', () => {
  it('pauseWrites queues writes while the roles switch; resumeWrites sends them to the new primary', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c)
    await pool.query('CREATE TABLE ledger (id int PRIMARY KEY, port int)')
    pool.pauseWrites()
    expect(pool.status().paused).toBe(true)
    const queued = Array.from({ length: 10 }, (_, i) => pool.query('INSERT INTO ledger VALUES ($1, inet_server_port()) RETURNING port', [i]))
    await expect.poll(() => pool.waitingCount, { timeout: 5_000 }).toBe(10)
    await c.stop(n0, 'fast')
    await c.promote(n1)
    pool.resumeWrites()
    const results = await Promise.all(queued)
    expect(results.every((r) => r.rows[0].port === n1.port)).toBe(true)
    expect(await rowsOn(c, n1, 'SELECT count(*)::int AS n FROM ledger')).toBe(10)
  })

  it('switchTo verifies the target: a standby is refused, the promoted node is taken at once', async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(c, { healthCheckIntervalMs: 60_000, promotionWatch: false })
    await pool.query('SELECT 1')
    const refused = await pool.switchTo(n1.name).then(() => null, (e: unknown) => e)
    expect((refused instanceof SwitchoverRefusedError)).toBe(true)
    expect((refused as Error).message).toMatch(/standby/)
    await expect(pool.switchTo('nope')).rejects.toMatchObject({ code: 'PGFP_CONFIG' })

    // The pool may notice the stop by itself (idle clients are told); switchTo then confirms at once.
    const failover = nextEvent(pool, 'failover')
    await c.stop(n0, 'fast')
    await c.promote(n1)
    await pool.switchTo(n1.name)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })
    expect((await pool.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n1.port)
  })

  it('drain takes a replica out of the read rotation and waits for its clients', async () => {
    const c = await res.cluster({ standbys: 2 })
    const [, n1, n2] = c.nodes as [ClusterNode, ClusterNode, ClusterNode]
    const pool = res.pool(c)
    await replicasKnown(pool, 2, 5_000)
    const held = await pool.reader.connect()
    const heldPort = (await held.query('SELECT inet_server_port() AS port')).rows[0].port
    const drainedNode = heldPort === n1.port ? n1 : n2
    let drained = false
    const draining = pool.drain(drainedNode.name).then(() => (drained = true))
    // A client is still checked out there: give drain() time to (wrongly) finish, then check it did not.
    await sleep(100)
    expect(drained).toBe(false)
    for (let i = 0; i < 6; i++) expect((await pool.reader.query('SELECT inet_server_port() AS port')).rows[0].port).not.toBe(drainedNode.port)
    held.release()
    await draining
    expect(drained).toBe(true)
    pool.undrain(drainedNode.name)
    const ports = new Set<number>()
    for (let i = 0; i < 6; i++) ports.add((await pool.reader.query('SELECT inet_server_port() AS port')).rows[0].port)
    expect(ports.has(drainedNode.port)).toBe(true)
  })
})

describe('promotion hook failures', () => {
  it("onPromoteFailure 'refuse' keeps writes off a node whose hook failed until switchTo; 'proceed' uses it", async () => {
    const c = await res.cluster({ standbys: 1 })
    const [n0, n1] = c.nodes as [ClusterNode, ClusterNode]
    let failHook = true
    const hooked: string[] = []
    const hook = async (client: import('pg').PoolClient, context: { to: string }): Promise<void> => {
      hooked.push(context.to)
      await client.query('SELECT 1')
      if (failHook) throw new Error('mirror not ready')
    }
    const refusing = res.pool(c, { onPromote: hook, failoverTimeoutMs: 1_500 })
    const proceeding = res.pool(c, { onPromote: hook, onPromoteFailure: 'proceed' })
    await refusing.query('CREATE TABLE t (id int)')
    await proceeding.query('SELECT 1')
    const reported = nextEvent(refusing, 'promoteHookError')
    await c.stop(n0, 'fast')
    await c.promote(n1)

    expect(await reported).toMatchObject({ endpoint: n1.name, decision: 'refuse' })
    const refused = await refusing.query('INSERT INTO t VALUES (1)').then(() => null, (e: unknown) => e)
    expect((refused instanceof NoPrimaryError)).toBe(true)
    expect(refusing.status().primary).toBeNull()
    expect((await c.sql<{ n: number }>(n1, 'SELECT count(*)::int AS n FROM t'))[0]!.n).toBe(0)
    // 'proceed' takes the node despite the same failure.
    expect((await proceeding.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(n1.port)

    // An operator fixes the cause and switches explicitly: the hook runs again, then writes flow.
    failHook = false
    await refusing.switchTo(n1.name)
    await refusing.query('INSERT INTO t VALUES (2)')
    expect((await c.sql<{ n: number }>(n1, 'SELECT count(*)::int AS n FROM t'))[0]!.n).toBe(1)
    expect(hooked.filter((name) => name === n1.name).length).toBeGreaterThanOrEqual(3)
  })
})

describe('logical-replication mirror', () => {
  it('failover runs the hook (subscription disabled, sequences moved) and writes continue without duplicate keys', async () => {
    const a = await res.cluster({ standbys: 0, namePrefix: 'pub' })
    const b = await res.cluster({ standbys: 0, namePrefix: 'sub' })
    const [primary] = a.nodes as [ClusterNode]
    const [mirror] = b.nodes as [ClusterNode]
    const ddl = 'CREATE TABLE "Order Items" (id bigserial PRIMARY KEY, note text NOT NULL)'
    await a.sql(primary, ddl)
    await b.sql(mirror, ddl)
    await a.sql(primary, 'CREATE PUBLICATION pgfp_pub FOR TABLE "Order Items"')
    await b.sql(mirror, `CREATE SUBSCRIPTION "pgfp sub" CONNECTION 'host=127.0.0.1 port=${primary.port} user=postgres password=${a.password} dbname=postgres' PUBLICATION pgfp_pub WITH (slot_name = 'pgfp_sub')`)

    const max = 4
    const pool = res.pool([primary, mirror], {
      topology: 'logical',
      onPromote: logicalMirrorHook({ sequenceMargin: 100 }),
      // At most this many statements can be in flight on the old primary's connections when it dies.
      max,
      // The returning old primary is probed again soon, so the end of the test sees the pool ignore it.
      halfOpenAfterMs: 200,
      maxHalfOpenAfterMs: 200,
    })
    for (let i = 0; i < 50; i++) await pool.query('INSERT INTO "Order Items" (note) VALUES ($1)', [`before ${i}`])
    await expect.poll(() => rowsOn(b, mirror, 'SELECT count(*)::int AS n FROM "Order Items"'), { timeout: 10_000 }).toBe(50)
    expect((await pool.query('SELECT inet_server_port() AS port')).rows[0].port).toBe(primary.port)

    const failover = nextEvent(pool, 'failover')
    await a.stop(primary, 'immediate')
    const notes = Array.from({ length: 20 }, (_, i) => `after ${i}`)
    const results = await Promise.allSettled(notes.map((note) => pool.query('INSERT INTO "Order Items" (note) VALUES ($1) RETURNING id, inet_server_port() AS port', [note])))
    // An immediate shutdown kills backends without a word: a write that went out on one of the old
    // primary's connections before the pool noticed may or may not have been applied, and
    // OutcomeUnknownError is the truthful answer for it. Any other rejection is a failure
    // (a duplicate key from a sequence the hook did not move, NoPrimaryError, ...).
    const acked = new Map<string, { id: string; port: number }>()
    const unknown: string[] = []
    const otherwise: string[] = []
    results.forEach((r, i) => {
      if (r.status === 'fulfilled') acked.set(notes[i]!, r.value.rows[0])
      else if (isOutcomeUnknownError(r.reason)) unknown.push(notes[i]!)
      else otherwise.push(`${notes[i]}: ${String(r.reason)}`)
    })
    expect(otherwise).toEqual([])
    expect(unknown.length, `outcome unknown: ${unknown.join(', ')}`).toBeLessThanOrEqual(max)
    expect(acked.size + unknown.length).toBe(notes.length)
    expect(await failover).toMatchObject({ from: primary.name, to: mirror.name })
    // Acknowledged by the mirror, with ids past everything the subscription copied (sequences moved).
    for (const [note, row] of acked) expect({ note, port: row.port, idAbove50: Number(row.id) > 50 }).toEqual({ note, port: mirror.port, idAbove50: true })
    expect(await rowsOn(b, mirror, 'SELECT count(*)::int AS n FROM pg_subscription WHERE subenabled')).toBe(0)

    // Every acknowledged write is on the mirror under the id it was acknowledged with, and no write
    // is there twice; an outcome-unknown one may be there (at most once) or not.
    const onMirror = await b.sql<{ id: string; note: string }>(mirror, `SELECT id, note FROM "Order Items" WHERE note LIKE 'after %' ORDER BY id`)
    const mirrorCounts = countBy(onMirror.map((r) => r.note))
    expect([...mirrorCounts].filter(([, n]) => n > 1)).toEqual([])
    for (const [note, row] of acked) expect(onMirror.find((r) => r.note === note)?.id).toBe(row.id)
    for (const r of onMirror) expect(acked.has(r.note) || unknown.includes(r.note)).toBe(true)

    // The old primary returns: the pool never moves back on its own, so it gets nothing, although the pool sees it up.
    const back = nextEvent(pool, 'endpointUp', { match: (e) => e.endpoint === primary.name })
    await a.start(primary)
    await back
    expect((await pool.query("INSERT INTO \"Order Items\" (note) VALUES ('after return') RETURNING inet_server_port() AS port")).rows[0].port).toBe(mirror.port)
    // Only a write whose outcome was unknown can have reached it, before it died, and then not the mirror too.
    const onOld = await a.sql<{ note: string }>(primary, `SELECT note FROM "Order Items" WHERE note LIKE 'after%'`)
    for (const r of onOld) expect({ note: r.note, unknown: unknown.includes(r.note), onMirror: mirrorCounts.has(r.note) }).toEqual({ note: r.note, unknown: true, onMirror: false })
  })
})

function countBy(values: readonly string[]): Map<string, number> {
  const counts = new Map<string, number>()
  for (const v of values) counts.set(v, (counts.get(v) ?? 0) + 1)
  return counts
}
