/**
 * Proves that every operation of the PostgreSQL cluster harness (test/support/cluster.ts)
 * really works against real servers. The tests share one cluster and run in order: each one
 * builds on the topology left by the previous one (failover → split brain → rejoin).
 */
import { existsSync } from 'node:fs'
import { beforeAll, describe, expect, it } from 'vitest'
import pg from 'pg'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { isAlive, processesMentioning, processState } from '../support/pg-binaries.js'
import { sleep } from '../support/wait.js'

const TEST_TIMEOUT = 60_000

function client(node: ClusterNode, extra: pg.ClientConfig = {}): pg.Client {
  const c = new pg.Client({ ...node.config, ...extra })
  c.on('error', () => undefined)
  return c
}

async function closeQuietly(c: pg.Client): Promise<void> {
  await Promise.race([c.end().catch(() => undefined), sleep(1000)])
}

describe('PostgreSQL cluster harness', () => {
  // The last test destroys the cluster itself; the teardown then finds it gone (destroy is idempotent).
  const shared = useResources('all')
  let cluster: Cluster
  let node0: ClusterNode
  let node1: ClusterNode
  let node2: ClusterNode
  let startupMs = 0

  beforeAll(async () => {
    const t0 = Date.now()
    cluster = await shared.cluster({ standbys: 2, synchronous: true })
    startupMs = Date.now() - t0
    node0 = cluster.node('node0')
    node1 = cluster.node('node1')
    node2 = cluster.node('node2')
  }, TEST_TIMEOUT)

  it('starts a primary and two streaming standbys', async () => {
    expect(startupMs).toBeLessThan(15_000)
    expect(cluster.nodes.map((n) => n.name)).toEqual(['node0', 'node1', 'node2'])
    expect(new Set(cluster.nodes.map((n) => n.port)).size).toBe(3)
    for (const n of cluster.nodes) {
      expect(n.host).toBe('127.0.0.1')
      expect(n.url).toBe(`postgres://postgres:${cluster.password}@127.0.0.1:${n.port}/postgres`)
      expect(n.config).toEqual({ host: '127.0.0.1', port: n.port, user: 'postgres', password: cluster.password, database: 'postgres' })
      expect(existsSync(n.dataDir)).toBe(true)
    }
    expect(cluster.password).toMatch(/^pw-[0-9a-f]+$/)
    expect(await cluster.isInRecovery(node0)).toBe(false)
    expect(await cluster.isInRecovery(node1)).toBe(true)
    expect(await cluster.isInRecovery('node2')).toBe(true)

    const repl = await cluster.sql<{ application_name: string; state: string; sync_state: string }>(
      node0,
      'SELECT application_name, state, sync_state FROM pg_stat_replication ORDER BY application_name',
    )
    expect(repl).toEqual([
      { application_name: 'node1', state: 'streaming', sync_state: 'quorum' },
      { application_name: 'node2', state: 'streaming', sync_state: 'quorum' },
    ])

    // A pg URL works too, and TCP needs the password (scram-sha-256).
    const viaUrl = new pg.Client({ connectionString: node1.url })
    viaUrl.on('error', () => undefined)
    await viaUrl.connect()
    expect((await viaUrl.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    await viaUrl.end()
    const wrongPw = client(node0, { password: 'wrong' })
    await expect(wrongPw.connect()).rejects.toThrow(/password authentication failed/)
    await closeQuietly(wrongPw)
  }, TEST_TIMEOUT)

  it('configures synchronous replication', async () => {
    const [row] = await cluster.sql<{ synchronous_standby_names: string }>(node0, 'SHOW synchronous_standby_names')
    expect(row?.synchronous_standby_names).toBe('ANY 1 (node0, node1, node2)')
    const [lh] = await cluster.sql<{ listen_addresses: string }>(node0, 'SHOW listen_addresses')
    expect(lh?.listen_addresses).toBe('127.0.0.1')
    const [hints] = await cluster.sql<{ wal_log_hints: string }>(node2, 'SHOW wal_log_hints')
    expect(hints?.wal_log_hints).toBe('on')
  }, TEST_TIMEOUT)

  it('replicates a write to every standby (waitForReplication)', async () => {
    await cluster.sql(node0, 'CREATE TABLE items (id int PRIMARY KEY, note text)')
    await cluster.sql(node0, 'INSERT INTO items VALUES ($1, $2)', [1, 'first'])
    await cluster.waitForReplication(node0)
    for (const n of [node1, node2]) {
      expect(await cluster.sql(n, 'SELECT id, note FROM items ORDER BY id')).toEqual([{ id: 1, note: 'first' }])
    }
  }, TEST_TIMEOUT)

  it('pauseReplay makes a standby lag and resumeReplay catches it up', async () => {
    await cluster.pauseReplay(node1)
    const [st] = await cluster.sql<{ s: string }>(node1, 'SELECT pg_get_wal_replay_pause_state() AS s')
    expect(st?.s).toBe('paused')

    await cluster.sql(node0, "INSERT INTO items VALUES (2, 'while paused')")
    await cluster.waitForReplication(node0) // skips the paused node1
    expect(await cluster.sql(node2, 'SELECT id FROM items WHERE id = 2')).toEqual([{ id: 2 }])
    // node1 has received the WAL (synchronous quorum) but not replayed it: give a (wrong) replay
    // time to happen, then check there was none.
    await sleep(200)
    expect(await cluster.sql(node1, 'SELECT id FROM items WHERE id = 2')).toEqual([])

    await cluster.resumeReplay(node1)
    await cluster.waitForReplication(node0)
    expect(await cluster.sql(node1, 'SELECT id FROM items WHERE id = 2')).toEqual([{ id: 2 }])
  }, TEST_TIMEOUT)

  it('terminateBackends ends other sessions', async () => {
    const victim = client(node0)
    await victim.connect()
    expect((await victim.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    const n = await cluster.terminateBackends(node0)
    expect(n).toBeGreaterThanOrEqual(1)
    await expect(victim.query('SELECT 1')).rejects.toThrow()
    await closeQuietly(victim)
    // The node itself is fine.
    expect(await cluster.sql(node0, 'SELECT 1 AS one')).toEqual([{ one: 1 }])
  }, TEST_TIMEOUT)

  it('freeze makes a node hang without closing sockets; thaw restores it', async () => {
    const held = client(node2, { query_timeout: 500 })
    await held.connect()
    expect((await held.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])

    const pidsBefore = cluster.serverPids(node2)
    expect(pidsBefore.length).toBeGreaterThan(3)
    await cluster.freeze(node2)
    expect(processState(pidsBefore[0]!)).toBe('T') // the postmaster
    // Every child is stopped too (a backend of an earlier, already closed session may have exited meanwhile).
    for (const pid of pidsBefore) expect(['T', 't', 'Z', undefined]).toContain(processState(pid))
    expect(cluster.serverPids(node2).map(processState).every((s) => s === 'T' || s === 't')).toBe(true)

    let t = Date.now()
    await expect(held.query('SELECT 1')).rejects.toThrow(/timeout/i)
    expect(Date.now() - t).toBeGreaterThanOrEqual(450)

    // New connections are accepted by the kernel but never answered.
    const fresh = client(node2, { connectionTimeoutMillis: 500 })
    t = Date.now()
    await expect(fresh.connect()).rejects.toThrow(/timeout/i)
    expect(Date.now() - t).toBeGreaterThanOrEqual(450)
    await closeQuietly(fresh)

    // The primary keeps committing (synchronous quorum satisfied by node1).
    await cluster.sql(node0, "INSERT INTO items VALUES (3, 'while node2 frozen')")

    await cluster.thaw(node2)
    expect(cluster.serverPids(node2).map(processState).some((s) => s === 'T' || s === 't')).toBe(false)
    const after = client(node2, { query_timeout: 2000 })
    await after.connect()
    expect((await after.query('SELECT 1 AS one')).rows).toEqual([{ one: 1 }])
    await closeQuietly(after)
    await closeQuietly(held)
    await cluster.waitForReplication(node0)
    expect(await cluster.sql(node2, 'SELECT id FROM items WHERE id = 3')).toEqual([{ id: 3 }])
  }, TEST_TIMEOUT)

  it('kill makes connections fail with ECONNREFUSED and start recovers the node', async () => {
    const pids = cluster.serverPids(node0)
    expect(pids.length).toBeGreaterThan(3)
    const open = client(node0)
    await open.connect()

    await cluster.kill(node0)
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
    expect(cluster.postmasterPid(node0)).toBeNull()
    await expect(cluster.sql(node0, 'SELECT 1')).rejects.toMatchObject({ code: 'ECONNREFUSED' })
    await expect(open.query('SELECT 1')).rejects.toThrow()
    await closeQuietly(open)

    await cluster.start(node0)
    expect(await cluster.isInRecovery(node0)).toBe(false)
    expect(await cluster.sql(node0, 'SELECT count(*)::int AS n FROM items')).toEqual([{ n: 3 }])
    // Standbys reconnect on their own and replication works again.
    await cluster.sql(node0, "INSERT INTO items VALUES (4, 'after crash')")
    await cluster.waitForReplication(node0)
    for (const n of [node1, node2]) {
      expect(await cluster.sql(n, 'SELECT id FROM items WHERE id = 4')).toEqual([{ id: 4 }])
    }
  }, TEST_TIMEOUT)

  it('stop + promote + repoint performs a failover', async () => {
    await cluster.stop(node0, 'fast')
    expect(cluster.postmasterPid(node0)).toBeNull()
    await expect(cluster.sql(node0, 'SELECT 1')).rejects.toMatchObject({ code: 'ECONNREFUSED' })

    await cluster.promote(node1)
    expect(await cluster.isInRecovery(node1)).toBe(false)
    // Writable (a local commit: node2 does not follow node1 yet, so a synchronous commit would wait).
    await cluster.sql(node1, "BEGIN; SET LOCAL synchronous_commit = local; INSERT INTO items VALUES (5, 'on node1'); COMMIT")

    await cluster.repoint(node2, node1)
    const [rcv] = await cluster.sql<{ status: string; sender_port: number }>(
      node2,
      'SELECT status, sender_port FROM pg_stat_wal_receiver',
    )
    expect(rcv).toEqual({ status: 'streaming', sender_port: node1.port })
    await cluster.sql(node1, "INSERT INTO items VALUES (6, 'synchronous on node1')")
    await cluster.waitForReplication(node1)
    expect(await cluster.sql(node2, 'SELECT id FROM items WHERE id >= 5 ORDER BY id')).toEqual([{ id: 5 }, { id: 6 }])
    expect(await cluster.isInRecovery(node2)).toBe(true)
  }, TEST_TIMEOUT)

  it('startAsWritable produces a split brain on diverging timelines', async () => {
    await cluster.startAsWritable(node0)
    expect(await cluster.isInRecovery(node0)).toBe(false)
    expect(await cluster.isInRecovery(node1)).toBe(false)
    await cluster.sql(node0, "INSERT INTO items VALUES (100, 'split brain on node0')")
    await cluster.sql(node1, "INSERT INTO items VALUES (101, 'split brain on node1')")
    expect(await cluster.sql(node0, 'SELECT id FROM items WHERE id >= 100')).toEqual([{ id: 100 }])
    expect(await cluster.sql(node1, 'SELECT id FROM items WHERE id >= 100')).toEqual([{ id: 101 }])

    await cluster.sql(node1, 'CHECKPOINT')
    await cluster.sql(node0, 'CHECKPOINT')
    const [tl0] = await cluster.sql<{ timeline_id: number }>(node0, 'SELECT timeline_id FROM pg_control_checkpoint()')
    const [tl1] = await cluster.sql<{ timeline_id: number }>(node1, 'SELECT timeline_id FROM pg_control_checkpoint()')
    expect(tl0?.timeline_id).toBe(1)
    expect(tl1?.timeline_id).toBe(2)
    expect(await cluster.timeline(node0)).toBe(1)
    expect(await cluster.timeline(node1)).toBe(2)
  }, TEST_TIMEOUT)

  it('rejoinAsStandby rewinds the old primary and makes it follow the new one', async () => {
    await cluster.rejoinAsStandby(node0, node1)
    expect(await cluster.isInRecovery(node0)).toBe(true)
    // The split-brain write on node0 was rewound away.
    expect(await cluster.sql(node0, 'SELECT id FROM items WHERE id >= 100')).toEqual([{ id: 101 }])
    const [rcv] = await cluster.sql<{ status: string; sender_port: number; received_tli: number }>(
      node0,
      'SELECT status, sender_port, received_tli FROM pg_stat_wal_receiver',
    )
    expect(rcv).toEqual({ status: 'streaming', sender_port: node1.port, received_tli: 2 })
    const [port] = await cluster.sql<{ port: string }>(node0, 'SHOW port')
    expect(port?.port).toBe(String(node0.port))

    await cluster.sql(node1, "INSERT INTO items VALUES (7, 'after rejoin')")
    await cluster.waitForReplication(node1)
    for (const n of [node0, node2]) {
      expect(await cluster.sql(n, 'SELECT id FROM items WHERE id = 7')).toEqual([{ id: 7 }])
    }
    const repl = await cluster.sql<{ application_name: string; state: string }>(
      node1,
      'SELECT application_name, state FROM pg_stat_replication ORDER BY application_name',
    )
    expect(repl).toEqual([
      { application_name: 'node0', state: 'streaming' },
      { application_name: 'node2', state: 'streaming' },
    ])
  }, TEST_TIMEOUT)

  it('destroy stops every server and removes the temp directory (idempotently)', async () => {
    await cluster.freeze(node2) // destroy must cope with frozen nodes
    const pids = cluster.nodes.flatMap((n) => cluster.serverPids(n))
    expect(pids.length).toBeGreaterThan(9)
    const baseDir = cluster.baseDir
    expect(processesMentioning(baseDir).length).toBe(3) // the three postmasters (-D <dataDir>)

    await cluster.destroy()
    for (const pid of pids) expect(isAlive(pid)).toBe(false)
    expect(processesMentioning(baseDir)).toEqual([])
    expect(existsSync(baseDir)).toBe(false)
    await cluster.destroy()
    await expect(cluster.sql(node1, 'SELECT 1')).rejects.toThrow(/destroyed/)
  }, TEST_TIMEOUT)
})
