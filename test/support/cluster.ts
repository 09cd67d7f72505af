/**
 * A real, throw-away PostgreSQL cluster (one primary + N streaming standbys) for integration
 * tests, the demo script and benchmarks of pg-failover-pool.
 *
 * Every node is a real `postgres` server on 127.0.0.1 with its own data directory under one
 * temp directory (`$TMPDIR/pgfp-XXXXXX/<node>/data`). The harness can stop, kill, freeze,
 * promote, re-point and rewind nodes so that tests can script failovers and split brains.
 *
 * Layout of a node directory:
 *   <baseDir>/<name>/data          the data directory (PGDATA)
 *   <baseDir>/<name>/postgres.log  server log (pg_ctl -l)
 *   <baseDir>/<name>/.s.PGSQL.*    the unix socket (unix_socket_directories)
 *
 * Every cluster registers an exit cleanup (TempHarness, see temp-harness.ts / exit-cleanup.ts) and
 * is torn down (SIGQUIT = immediate shutdown, then rm -rf) on process exit, SIGINT and SIGTERM
 * even if `destroy()` is never called.
 */
import { randomBytes } from 'node:crypto'
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, readFileSync, unlinkSync, writeFileSync } from 'node:fs'
import { freePort, probePort } from './ports.js'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import {
  chownToServerUser,
  childPids,
  fileSize,
  findPgBinDir,
  isAlive,
  pgLiteral,
  processState,
  readLogFrom,
  runPgTool,
  signal,
  tail,
  waitGoneSync,
  writeConfBlock,
  writeServerFile,
  type RunResult,
} from './pg-binaries.js'
import { killPostmaster, postmasterPid, serverPids, shmIdOf } from './ha/postmaster.js'
import { findNamed, TempHarness } from './temp-harness.js'
import { waitUntil } from './wait.js'

export { findPgBinDir } from './pg-binaries.js'

/** Options for {@link startCluster}. */
export interface ClusterOptions {
  /** Number of streaming standbys (default 2). */
  standbys?: number
  /**
   * Synchronous replication (default false). When true, every node gets
   * `synchronous_standby_names = 'ANY 1 (<all node names>)'`, so whichever node is primary
   * waits for any one of the others (a primary never counts itself). Note that commits on a
   * primary then block while no standby is streaming from it.
   */
  synchronous?: boolean
  /** Extra postgresql.conf settings for every node (cannot override listen_addresses, port, unix_socket_directories). */
  settings?: Record<string, string | number>
  /** Name prefix; nodes are named `${prefix}0` (initial primary), `${prefix}1`, ... (default 'node'; must be a plain identifier). */
  namePrefix?: string
}

/** One PostgreSQL server of a {@link Cluster}. */
export interface ClusterNode {
  /** Node name, e.g. 'node0'; also its `cluster_name` and the `application_name` it uses as a standby. */
  readonly name: string
  /** TCP port on 127.0.0.1. */
  readonly port: number
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** Data directory (PGDATA). */
  readonly dataDir: string
  /** Server log file (outside the data directory so base backups / rewinds do not copy it). */
  readonly logFile: string
  /** postgres://postgres:<password>@127.0.0.1:<port>/postgres */
  readonly url: string
  /** pg ClientConfig equivalent {host, port, user, password, database}. A fresh object on every access. */
  readonly config: { host: string; port: number; user: string; password: string; database: string }
}

const CONSTRUCT = Symbol('Cluster.construct')
const DEFAULT_TIMEOUT_MS = 10_000

class NodeImpl implements ClusterNode {
  readonly host = '127.0.0.1' as const
  readonly dir: string
  readonly dataDir: string
  readonly logFile: string
  /** @internal mutable until the node is first started (port retry). */
  portValue = 0
  /** @internal pids stopped by freeze(), or null. */
  frozenPids: number[] | null = null
  /** @internal SysV shm id orphaned by kill(), removed by destroy() if the node is never restarted. */
  leakedShmId: number | null = null

  constructor(
    readonly name: string,
    baseDir: string,
    private readonly password: string,
  ) {
    this.dir = path.join(baseDir, name)
    this.dataDir = path.join(this.dir, 'data')
    this.logFile = path.join(this.dir, 'postgres.log')
  }

  get port(): number {
    return this.portValue
  }

  get url(): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.portValue}/postgres`
  }

  get config(): { host: string; port: number; user: string; password: string; database: string } {
    return { host: this.host, port: this.portValue, user: 'postgres', password: this.password, database: 'postgres' }
  }

  toJSON(): object {
    return { name: this.name, port: this.portValue, dataDir: this.dataDir }
  }
}

// ---------------------------------------------------------------------------------------------
// Small helpers


function newClient(node: NodeImpl, extra: pg.ClientConfig = {}): pg.Client {
  const client = new pg.Client({
    ...node.config,
    connectionTimeoutMillis: 2000,
    application_name: 'pgfp-harness',
    ...extra,
  })
  // A killed node must never crash the test process with an unhandled 'error' event.
  client.on('error', () => undefined)
  return client
}

async function closeQuietly(client: pg.Client): Promise<void> {
  let timer: NodeJS.Timeout | undefined
  await Promise.race([
    client.end().catch(() => undefined),
    new Promise<void>((resolve) => {
      timer = setTimeout(resolve, 1000)
    }),
  ])
  clearTimeout(timer)
}

function rowsOf<T>(res: unknown): T[] {
  const last = Array.isArray(res) ? res[res.length - 1] : res
  return ((last as pg.QueryResult | undefined)?.rows ?? []) as T[]
}

function removeIfExists(file: string): void {
  try {
    unlinkSync(file)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

const CONF_BEGIN = '# >>> pgfp test harness (managed block, regenerated by test/support/cluster.ts) >>>'
const CONF_END = '# <<< pgfp test harness <<<'

const BASE_SETTINGS: Record<string, string | number> = {
  fsync: 'off',
  full_page_writes: 'on', // required by pg_rewind
  wal_level: 'logical',
  wal_log_hints: 'on', // required by pg_rewind (no data checksums)
  max_wal_senders: 10,
  max_replication_slots: 10,
  hot_standby: 'on',
  hot_standby_feedback: 'on',
  shared_buffers: '16MB',
  max_connections: 100,
  wal_keep_size: '256MB',
  wal_receiver_status_interval: '1s',
  wal_retrieve_retry_interval: '100ms',
  logging_collector: 'off',
  jit: 'off',
}

// ---------------------------------------------------------------------------------------------

/**
 * A running PostgreSQL cluster created by {@link startCluster}. Node arguments accept either a
 * {@link ClusterNode} of this cluster or its name.
 */
export class Cluster extends TempHarness {
  /** All nodes; `nodes[0]` is the initial primary. */
  readonly nodes: ClusterNode[]
  /** Password of the `postgres` superuser on every node (scram-sha-256 over TCP). */
  readonly password: string
  /** Directory of the PostgreSQL server binaries in use. */
  readonly binDir: string
  /** Whether synchronous replication is configured. */
  readonly synchronous: boolean

  private readonly impls: NodeImpl[]
  private readonly extraSettings: Record<string, string | number>

  /** @internal Use {@link startCluster}. */
  constructor(token: symbol, options: ClusterOptions) {
    if (token !== CONSTRUCT) throw new Error('use startCluster() to create a Cluster')
    const standbys = options.standbys ?? 2
    if (!Number.isInteger(standbys) || standbys < 0) throw new Error(`invalid standbys: ${String(options.standbys)}`)
    const prefix = options.namePrefix ?? 'node'
    if (!/^[a-z_][a-z0-9_]*$/.test(prefix)) {
      throw new Error(`namePrefix must be a lower-case identifier ([a-z_][a-z0-9_]*), got ${JSON.stringify(prefix)}`)
    }
    const binDir = findPgBinDir() // before the temp directory: no PostgreSQL, nothing to clean up
    super(mkdtempSync(path.join(os.tmpdir(), 'pgfp-')))
    this.binDir = binDir
    this.synchronous = options.synchronous ?? false
    this.extraSettings = { ...options.settings }
    this.password = `pw-${randomBytes(12).toString('hex')}`
    chownToServerUser(this.baseDir)
    this.impls = Array.from({ length: standbys + 1 }, (_, i) => new NodeImpl(`${prefix}${i}`, this.baseDir, this.password))
    for (const n of this.impls) {
      mkdirSync(n.dir, { mode: 0o700 })
      chownToServerUser(n.dir)
    }
    this.nodes = this.impls
  }

  // ------------------------------------------------------------------ lookup / SQL

  /** The node called `name` (throws if unknown). */
  node(name: string): ClusterNode {
    return this.resolve(name)
  }

  /** Run SQL on a node with a fresh short-lived pg.Client (connectionTimeoutMillis 2000) and return its rows (of the last statement). */
  async sql<T = any>(node: ClusterNode | string, text: string, values?: unknown[]): Promise<T[]> {
    return this.withClient(this.resolve(node), async (c) => rowsOf<T>(await c.query(text, values)))
  }

  /** `SELECT pg_is_in_recovery()` on the node. */
  async isInRecovery(node: ClusterNode | string): Promise<boolean> {
    const [row] = await this.sql<{ r: boolean }>(node, 'SELECT pg_is_in_recovery() AS r')
    return row?.r === true
  }

  /** Postmaster pid of a running node (from postmaster.pid), or null when it is not running. */
  postmasterPid(node: ClusterNode | string): number | null {
    return postmasterPid(this.resolve(node).dataDir)
  }

  /** Postmaster pid plus all its (non-zombie) children, or [] when the node is not running. */
  serverPids(node: ClusterNode | string): number[] {
    return serverPids(this.resolve(node).dataDir)
  }

  /** Current timeline of a primary (from the WAL file name of pg_current_wal_lsn()). */
  async timeline(node: ClusterNode | string): Promise<number> {
    const [row] = await this.sql<{ f: string }>(node, 'SELECT pg_walfile_name(pg_current_wal_lsn()) AS f')
    return parseInt((row?.f ?? '').slice(0, 8), 16)
  }

  // ------------------------------------------------------------------ lifecycle

  /** `pg_ctl stop -m <mode> -w` (default 'fast'). Thaws a frozen node first; no-op if the node is not running. */
  async stop(node: ClusterNode | string, mode: 'fast' | 'immediate' = 'fast'): Promise<void> {
    const n = this.resolve(node)
    this.thawSignals(n)
    if (postmasterPid(n.dataDir) === null) return
    await this.pgCtl(n, ['-D', n.dataDir, '-m', mode, '-w', '-t', '60', 'stop'])
  }

  /** `pg_ctl start -w`, resolving once the node accepts connections. No-op if already running. */
  async start(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    if (postmasterPid(n.dataDir) !== null) return
    await this.pgCtlStart(n)
  }

  /**
   * SIGKILL the postmaster and all its children at once (like a crash of the whole server; killing
   * the children too means a restart never finds the old shared memory still attached), wait
   * until the port refuses connections and remove the stale postmaster.pid. The data directory
   * is left as is, so start() performs crash recovery.
   */
  async kill(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    // Read before the kill: the pid file is removed below.
    const shmId = shmIdOf(n.dataDir)
    const pid = await killPostmaster(n.dataDir, true, DEFAULT_TIMEOUT_MS).catch((err: unknown) => {
      n.frozenPids = null // SIGKILL was sent: stopped or not, they are no longer frozen
      throw err
    })
    if (pid === null) throw new Error(`kill(${n.name}): node is not running`)
    n.frozenPids = null
    await waitUntil(async () => (await probePort(n.port, 200)) === 'refused', {
      what: `${n.name} port ${n.port} to refuse connections`,
      timeout: DEFAULT_TIMEOUT_MS,
      interval: 10,
    })
    this.removeStaleLockFiles(n)
    if (shmId !== null) n.leakedShmId = shmId
  }

  /**
   * SIGSTOP the postmaster and all its children: the node keeps its sockets open (the kernel still
   * completes TCP handshakes) but never answers. Idempotent.
   */
  async freeze(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    if (n.frozenPids !== null) return
    const pid = postmasterPid(n.dataDir)
    if (pid === null) throw new Error(`freeze(${n.name}): node is not running`)
    // Stop the postmaster first so it cannot fork new children while we collect them.
    signal(pid, 'SIGSTOP')
    const stopped = new Set<number>([pid])
    for (let round = 0; round < 2; round++) {
      for (const child of childPids(pid)) {
        if (stopped.has(child)) continue
        signal(child, 'SIGSTOP')
        stopped.add(child)
      }
    }
    n.frozenPids = [...stopped]
    await waitUntil(
      () =>
        [...stopped].every((p) => {
          const s = processState(p)
          return s === undefined || s === 'T' || s === 't' || s === 'Z'
        }),
      { what: `${n.name} processes to stop`, timeout: DEFAULT_TIMEOUT_MS, interval: 5 },
    )
  }

  /** SIGCONT the processes stopped by freeze() and wait until the node answers queries again. */
  async thaw(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    if (n.frozenPids === null) return
    this.thawSignals(n)
    await this.waitUntilAccepting(n)
  }

  /** `pg_ctl promote -w`; resolves when pg_is_in_recovery() is false. */
  async promote(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    await this.pgCtl(n, ['-D', n.dataDir, '-w', '-t', '60', 'promote'])
    await waitUntil(async () => !(await this.isInRecovery(n)), { what: `${n.name} to leave recovery after promote`, timeout: DEFAULT_TIMEOUT_MS, interval: 10 })
  }

  /**
   * Point a running standby at another node: `ALTER SYSTEM SET primary_conninfo`
   * (application_name = the standby's name), `recovery_target_timeline = 'latest'`,
   * `pg_reload_conf()`. Resolves once the standby streams from `newPrimary` (on its current
   * timeline if `newPrimary` is a primary); times out after 20 s.
   */
  async repoint(standby: ClusterNode | string, newPrimary: ClusterNode | string): Promise<void> {
    const s = this.resolve(standby)
    const p = this.resolve(newPrimary)
    if (s === p) throw new Error(`repoint(${s.name}): a node cannot replicate from itself`)
    await this.withClient(s, async (c) => {
      await c.query(`ALTER SYSTEM SET primary_conninfo = ${pgLiteral(this.conninfo(p, s.name))}`)
      await c.query(`ALTER SYSTEM SET recovery_target_timeline = 'latest'`)
      await c.query('SELECT pg_reload_conf()')
    })
    await this.waitStreamingFrom(s, p)
  }

  /**
   * Split brain helper: start a stopped node WITHOUT standby.signal/recovery.signal so it comes up
   * as a writable primary on its own (old) timeline. With `synchronous: true` the node is started
   * with `-c synchronous_standby_names=''` (for this run only) because nobody replicates from it
   * and its commits would otherwise block forever.
   */
  async startAsWritable(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    if (postmasterPid(n.dataDir) !== null) throw new Error(`startAsWritable(${n.name}): node must be stopped first`)
    removeIfExists(path.join(n.dataDir, 'standby.signal'))
    removeIfExists(path.join(n.dataDir, 'recovery.signal'))
    await this.pgCtlStart(n, this.synchronous ? "-c synchronous_standby_names=''" : undefined)
    await waitUntil(async () => !(await this.isInRecovery(n)), { what: `${n.name} to be writable`, timeout: DEFAULT_TIMEOUT_MS, interval: 10 })
  }

  /**
   * Turn an old primary into a standby of `newPrimary`: stop it (fast) if running, CHECKPOINT
   * `newPrimary` (so pg_rewind sees its new timeline), `pg_rewind --source-server`, restore the
   * node's own settings (pg_rewind copies the source's config files), write standby.signal +
   * primary_conninfo, start, and wait until it streams from `newPrimary`.
   */
  async rejoinAsStandby(node: ClusterNode | string, newPrimary: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    const p = this.resolve(newPrimary)
    if (n === p) throw new Error(`rejoinAsStandby(${n.name}): a node cannot replicate from itself`)
    await this.stop(n, 'fast')
    if (postmasterPid(n.dataDir) === null) this.removeStaleLockFiles(n)
    // PG < 16: pg_rewind reads the source's timeline from its control file, which a freshly
    // promoted server only updates at its first checkpoint; without this it may wrongly decide
    // "no rewind required" and the node can never follow the new timeline.
    await this.sql(p, 'CHECKPOINT')
    await this.runTool(
      'pg_rewind',
      [
        `--target-pgdata=${n.dataDir}`,
        `--source-server=host=127.0.0.1 port=${p.port} user=postgres dbname=postgres`,
        '--no-sync',
      ],
      n,
    )
    this.writeConf(n)
    this.configureAsStandby(n, p)
    await this.pgCtlStart(n)
    await this.waitStreamingFrom(n, p)
  }

  /**
   * The mistake pg_rewind exists to prevent: restart an old primary as a standby of `newPrimary`
   * as it is, without rewinding it. If it wrote after `newPrimary` was promoted it holds commits the
   * new timeline never got and can never follow it (its WAL receiver keeps failing), yet it answers
   * as a hot standby. Resolves once it accepts connections (in recovery).
   */
  async restartAsStandbyWithoutRewind(node: ClusterNode | string, newPrimary: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    const p = this.resolve(newPrimary)
    if (n === p) throw new Error(`restartAsStandbyWithoutRewind(${n.name}): a node cannot replicate from itself`)
    await this.stop(n, 'fast')
    if (postmasterPid(n.dataDir) === null) this.removeStaleLockFiles(n)
    this.configureAsStandby(n, p)
    await this.pgCtlStart(n)
    await waitUntil(() => this.isInRecovery(n), { what: `${n.name} to run as a standby`, timeout: DEFAULT_TIMEOUT_MS, interval: 20 })
  }

  /**
   * Cut a running standby off its upstream: its `primary_conninfo` points at a port nobody listens
   * on (as after a reload with a typo, or a firewall change), so its WAL receiver keeps failing.
   */
  async detach(standby: ClusterNode | string, closedPort: number): Promise<void> {
    const s = this.resolve(standby)
    await this.withClient(s, async (c) => {
      await c.query(`ALTER SYSTEM SET primary_conninfo = ${pgLiteral(`host=127.0.0.1 port=${closedPort} user=postgres application_name=${s.name}`)}`)
      await c.query('SELECT pg_reload_conf()')
    })
    await waitUntil(async () => (await this.sql<{ n: number }>(s, "SELECT count(*)::int AS n FROM pg_stat_wal_receiver WHERE status = 'streaming'"))[0]!.n === 0, {
      what: `${s.name}'s WAL receiver to stop streaming`,
      timeout: DEFAULT_TIMEOUT_MS,
      interval: 50,
    })
  }

  // ------------------------------------------------------------------ replication helpers

  /** `SELECT pg_wal_replay_pause()` and wait until pg_get_wal_replay_pause_state() = 'paused'. */
  async pauseReplay(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    await this.sql(n, 'SELECT pg_wal_replay_pause()')
    await waitUntil(
      async () => {
        const [row] = await this.sql<{ s: string }>(n, 'SELECT pg_get_wal_replay_pause_state() AS s')
        return row?.s === 'paused'
      },
      { what: `${n.name} replay to pause`, timeout: DEFAULT_TIMEOUT_MS, interval: 10 },
    )
  }

  /** `SELECT pg_wal_replay_resume()` and wait until the pause state is 'not paused'. */
  async resumeReplay(node: ClusterNode | string): Promise<void> {
    const n = this.resolve(node)
    await this.sql(n, 'SELECT pg_wal_replay_resume()')
    await waitUntil(
      async () => {
        const [row] = await this.sql<{ s: string }>(n, 'SELECT pg_get_wal_replay_pause_state() AS s')
        return row?.s === 'not paused'
      },
      { what: `${n.name} replay to resume`, timeout: DEFAULT_TIMEOUT_MS, interval: 10 },
    )
  }

  /**
   * pg_terminate_backend (waiting up to 5 s for each) on every client backend of the node except
   * the harness's own connection. Returns the number of backends terminated.
   */
  async terminateBackends(node: ClusterNode | string): Promise<number> {
    const [row] = await this.sql<{ n: number }>(
      node,
      `WITH targets AS MATERIALIZED (
         SELECT pid FROM pg_stat_activity
         WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()
       )
       SELECT (count(*) FILTER (WHERE pg_terminate_backend(pid, 5000)))::int AS n FROM targets`,
    )
    return row?.n ?? 0
  }

  /**
   * Wait until every running standby has replayed the primary's current LSN
   * (`pg_last_wal_replay_lsn() >= pg_current_wal_lsn()` taken now), polling every 10 ms.
   * "Running standby" = any other node that is running, not frozen, in recovery and whose replay
   * is not paused (paused/frozen/stopped nodes are skipped). Throws after `timeoutMs` (10 s).
   */
  async waitForReplication(primary: ClusterNode | string, timeoutMs = DEFAULT_TIMEOUT_MS): Promise<void> {
    const p = this.resolve(primary)
    const [row] = await this.sql<{ lsn: string }>(p, 'SELECT pg_current_wal_lsn()::text AS lsn')
    const target = row?.lsn
    if (target === undefined) throw new Error(`waitForReplication: no LSN from ${p.name}`)
    const candidates = this.impls.filter((n) => n !== p && n.frozenPids === null && postmasterPid(n.dataDir) !== null)
    const clients = new Map<NodeImpl, pg.Client>()
    try {
      const pending = new Map<NodeImpl, string>()
      for (const n of candidates) {
        const c = newClient(n)
        clients.set(n, c)
        await c.connect()
        const [st] = rowsOf<{ standby: boolean; pause: string | null }>(
          await c.query(
            `SELECT pg_is_in_recovery() AS standby,
                    CASE WHEN pg_is_in_recovery() THEN pg_get_wal_replay_pause_state() END AS pause`,
          ),
        )
        if (st?.standby === true && st.pause === 'not paused') pending.set(n, '?')
      }
      if (pending.size === 0) return
      await waitUntil(
        async () => {
          for (const n of [...pending.keys()]) {
            const [r] = rowsOf<{ ok: boolean | null; replay: string | null }>(
              await clients
                .get(n)!
                .query('SELECT pg_last_wal_replay_lsn() >= $1::pg_lsn AS ok, pg_last_wal_replay_lsn()::text AS replay', [target]),
            )
            if (r?.ok === true) pending.delete(n)
            else pending.set(n, r?.replay ?? 'null')
          }
          return pending.size === 0
        },
        {
          what: `standbys to replay ${p.name}'s LSN ${target}`,
          timeout: timeoutMs,
          interval: 10,
          diagnostics: async () => {
            const details: string[] = []
            for (const [n, replay] of pending) {
              let receiver = ''
              try {
                const [w] = await this.sql<Record<string, unknown>>(
                  n,
                  'SELECT status, sender_port, received_tli, flushed_lsn::text FROM pg_stat_wal_receiver',
                )
                receiver = w === undefined ? 'no wal receiver' : JSON.stringify(w)
              } catch (err) {
                receiver = String(err)
              }
              details.push(`${n.name}: replayed ${replay}, receiver ${receiver}\n${this.logTail(n, 10)}`)
            }
            return details.join('\n')
          },
        },
      )
    } finally {
      await Promise.all([...clients.values()].map((c) => closeQuietly(c)))
    }
  }

  // ------------------------------------------------------------------ teardown

  /** For destroy(): immediate shutdown of every node (thawing frozen ones first), SIGKILL if that fails. */
  protected async killAll(): Promise<void> {
    await Promise.all(
      this.impls.map(async (n) => {
        this.thawSignals(n)
        const pids = serverPids(n.dataDir)
        if (pids.length > 0) {
          try {
            await this.pgCtl(n, ['-D', n.dataDir, '-m', 'immediate', '-w', '-t', '10', 'stop'])
          } catch {
            for (const p of pids) signal(p, 'SIGKILL')
          }
          try {
            await waitUntil(() => pids.every((p) => !isAlive(p)), { what: `${n.name} processes to exit`, timeout: 5000, interval: 10 })
          } catch {
            for (const p of pids) signal(p, 'SIGKILL')
          }
        }
        this.removeLeakedShm(n)
      }),
    )
  }

  /** For the exit handlers: SIGQUIT every postmaster (thawed), then SIGKILL whatever outlives 3 s. */
  protected killAllSync(): void {
    const postmasters: number[] = []
    const all: number[] = []
    for (const n of this.impls) {
      const pids = serverPids(n.dataDir)
      for (const p of n.frozenPids ?? []) signal(p, 'SIGCONT')
      for (const p of pids) signal(p, 'SIGCONT')
      n.frozenPids = null
      if (pids[0] !== undefined) {
        postmasters.push(pids[0])
        signal(pids[0], 'SIGQUIT') // immediate shutdown; the postmaster removes its shm segment
      }
      all.push(...pids)
    }
    waitGoneSync(postmasters, 3000)
    for (const p of all) if (isAlive(p)) signal(p, 'SIGKILL')
    for (const n of this.impls) this.removeLeakedShm(n)
  }

  // ------------------------------------------------------------------ internals

  /** @internal Create the primary and the standbys. */
  async init(): Promise<void> {
    const [primary, ...standbys] = this.impls
    if (primary === undefined) throw new Error('no nodes')
    const pwfile = path.join(this.baseDir, 'pwfile')
    writeServerFile(pwfile, `${this.password}\n`)
    await this.runTool(
      'initdb',
      [
        '-D',
        primary.dataDir,
        '-A',
        'scram-sha-256',
        '--auth-local=trust',
        '-U',
        'postgres',
        `--pwfile=${pwfile}`,
        '--no-sync',
        '-E',
        'UTF8',
        '--locale=C',
        '--no-instructions',
      ],
      primary,
    )
    removeIfExists(pwfile)
    const hbaFile = path.join(primary.dataDir, 'pg_hba.conf')
    const hba = readFileSync(hbaFile, 'utf8')
    if (!/^\s*host\s+replication\s+(all|postgres)\s+127\.0\.0\.1\/32\s+scram-sha-256\s*$/m.test(hba)) {
      writeFileSync(hbaFile, `${hba.replace(/\n*$/, '\n')}host replication postgres 127.0.0.1/32 scram-sha-256\n`)
    }
    await this.startNew(primary, async () => {
      this.writeConf(primary)
    })
    await Promise.all(
      standbys.map(async (s) => {
        await this.runTool(
          'pg_basebackup',
          ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-D', s.dataDir]
            .concat(['-X', 'stream', '-c', 'fast', '--no-sync', '--no-manifest']),
          s,
        )
        this.configureAsStandby(s, primary)
        await this.startNew(s, async () => {
          this.writeConf(s)
        })
      }),
    )
    if (standbys.length > 0) {
      await waitUntil(
        async () => {
          // Until a standby has reported a flush position PostgreSQL shows it as 'async' whatever
          // synchronous_standby_names says (it may take wal_receiver_status_interval), so a
          // synchronous cluster is ready only once every standby has reported one.
          const rows = await this.sql<{ application_name: string }>(
            primary,
            `SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'${this.synchronous ? ' AND flush_lsn IS NOT NULL' : ''}`,
          )
          const streaming = new Set(rows.map((r) => r.application_name))
          return standbys.every((s) => streaming.has(s.name))
        },
        {
          what: 'all standbys to stream from the primary',
          timeout: 15_000,
          interval: 10,
          diagnostics: () => standbys.map((s) => `${s.name}:\n${this.logTail(s, 10)}`).join('\n'),
        },
      )
    }
  }

  private resolve(node: ClusterNode | string): NodeImpl {
    if (this.destroyed) throw new Error('cluster has been destroyed')
    return findNamed(this.impls, node, 'node')
  }

  private async withClient<T>(n: NodeImpl, fn: (c: pg.Client) => Promise<T>): Promise<T> {
    const client = newClient(n)
    try {
      await client.connect()
      return await fn(client)
    } finally {
      await closeQuietly(client)
    }
  }

  private conninfo(primary: NodeImpl, applicationName: string): string {
    return `host=127.0.0.1 port=${primary.port} user=postgres password=${this.password} application_name=${applicationName}`
  }

  /** (Re)write the managed settings block at the end of the node's postgresql.conf. */
  private writeConf(n: NodeImpl): void {
    const settings: Record<string, string | number> = {
      ...BASE_SETTINGS,
      cluster_name: n.name,
      ...(this.synchronous ? { synchronous_standby_names: `ANY 1 (${this.impls.map((x) => x.name).join(', ')})` } : {}),
      ...this.extraSettings,
      listen_addresses: '127.0.0.1',
      port: n.port,
      unix_socket_directories: n.dir,
    }
    writeConfBlock(path.join(n.dataDir, 'postgresql.conf'), CONF_BEGIN, CONF_END, settings)
  }

  /** Write standby.signal and primary_conninfo (in postgresql.auto.conf) for a stopped node. */
  private configureAsStandby(n: NodeImpl, primary: NodeImpl): void {
    const autoFile = path.join(n.dataDir, 'postgresql.auto.conf')
    const set: Record<string, string> = {
      primary_conninfo: this.conninfo(primary, n.name),
      recovery_target_timeline: 'latest',
    }
    const existing = existsSync(autoFile)
      ? readFileSync(autoFile, 'utf8').split('\n')
      : ['# Do not edit this file manually!', '# It will be overwritten by the ALTER SYSTEM command.']
    const kept = existing.filter((l) => l.trim() !== '' && !Object.keys(set).some((k) => new RegExp(`^\\s*${k}\\s*=`).test(l)))
    const lines = [...kept, ...Object.entries(set).map(([k, v]) => `${k} = ${pgLiteral(v)}`)]
    writeServerFile(autoFile, `${lines.join('\n')}\n`)
    removeIfExists(path.join(n.dataDir, 'recovery.signal'))
    writeServerFile(path.join(n.dataDir, 'standby.signal'), '')
  }

  /** First start of a node: pick a free port, retrying with a new one if the port is taken. */
  private async startNew(n: NodeImpl, configure: () => Promise<void>): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      n.portValue = await freePort()
      await configure()
      const offset = fileSize(n.logFile)
      try {
        await this.pgCtlStart(n)
        return
      } catch (err) {
        const log = readLogFrom(n.logFile, offset)
        const portTaken = /could not bind|address already in use|could not create any TCP\/IP sockets/i.test(log)
        if (!portTaken || attempt >= 5) throw err
      }
    }
  }

  private async pgCtlStart(n: NodeImpl, postgresOptions?: string): Promise<void> {
    n.frozenPids = null
    if (existsSync(path.join(n.dataDir, 'postmaster.pid')) && postmasterPid(n.dataDir) === null) this.removeStaleLockFiles(n)
    const args = ['-D', n.dataDir, '-l', n.logFile, '-w', '-t', '60']
    if (postgresOptions !== undefined) args.push('-o', postgresOptions)
    args.push('start')
    await this.pgCtl(n, args)
    n.leakedShmId = null // the new postmaster reclaims an orphaned segment of the same data directory
    await this.waitUntilAccepting(n)
  }

  private async waitUntilAccepting(n: NodeImpl): Promise<void> {
    await waitUntil(
      async () => {
        await this.withClient(n, (c) => c.query('SELECT 1'))
        return true
      },
      { what: `${n.name} to accept connections`, timeout: 15_000, interval: 10, diagnostics: () => this.logTail(n, 15) },
    )
  }

  private async waitStreamingFrom(s: NodeImpl, p: NodeImpl): Promise<void> {
    let tli: number | undefined
    try {
      if (!(await this.isInRecovery(p))) tli = await this.timeline(p)
    } catch {
      // newPrimary unreachable right now: only check the sender port
    }
    await waitUntil(
      async () => {
        const [r] = await this.sql<{ status: string; sender_port: number; received_tli: number; receive_start_tli: number }>(
          s,
          'SELECT status, sender_port, received_tli, receive_start_tli FROM pg_stat_wal_receiver',
        )
        return (
          r !== undefined &&
          r.status === 'streaming' &&
          r.sender_port === p.port &&
          (tli === undefined || r.received_tli >= tli || r.receive_start_tli >= tli)
        )
      },
      {
        what: `${s.name} to stream from ${p.name}${tli !== undefined ? ` on timeline ${tli}` : ''}`,
        timeout: 20_000,
        interval: 20,
        diagnostics: () => `${s.name}:\n${this.logTail(s, 15)}\n${p.name}:\n${this.logTail(p, 5)}`,
      },
    )
  }

  private thawSignals(n: NodeImpl): void {
    if (n.frozenPids === null) return
    // Children first, postmaster last, so the postmaster never sees stopped children.
    for (const p of [...n.frozenPids].reverse()) signal(p, 'SIGCONT')
    n.frozenPids = null
  }

  /**
   * Remove postmaster.pid and the unix socket + its lock file left behind by a dead postmaster.
   * PostgreSQL itself treats them as stale only if their pid is gone, but where PID 1 does not reap
   * orphans (some containers) the dead postmaster lingers as a zombie and would block a restart.
   */
  private removeStaleLockFiles(n: NodeImpl): void {
    removeIfExists(path.join(n.dataDir, 'postmaster.pid'))
    removeIfExists(path.join(n.dir, `.s.PGSQL.${n.port}.lock`))
    removeIfExists(path.join(n.dir, `.s.PGSQL.${n.port}`))
  }

  private removeLeakedShm(n: NodeImpl): void {
    if (n.leakedShmId === null) return
    spawnSync('ipcrm', ['-m', String(n.leakedShmId)], { stdio: 'ignore' })
    n.leakedShmId = null
  }

  private logTail(n: NodeImpl, lines: number): string {
    const t = tail(readLogFrom(n.logFile), lines)
    return `--- ${n.logFile} (tail) ---\n${t === '' ? '(empty)' : t}`
  }

  private pgCtl(n: NodeImpl, args: string[]): Promise<RunResult> {
    return this.runTool('pg_ctl', args, n)
  }

  private runTool(tool: string, args: string[], n: NodeImpl): Promise<RunResult> {
    return runPgTool(this.binDir, tool, args, {
      cwd: this.baseDir,
      env: { PGPASSWORD: this.password, PGCONNECT_TIMEOUT: '5' },
      logFile: n.logFile,
      logOffset: fileSize(n.logFile),
      secrets: [this.password],
    })
  }
}

/**
 * Create and start a cluster: initdb the primary (`${prefix}0`), pg_basebackup the standbys in
 * parallel, start everything and wait until all standbys stream. On failure everything created
 * so far is torn down and the error is rethrown. Prints nothing on success.
 */
export async function startCluster(options: ClusterOptions = {}): Promise<Cluster> {
  const cluster = new Cluster(CONSTRUCT, options)
  try {
    await cluster.init()
  } catch (err) {
    await cluster.destroy().catch(() => undefined)
    throw err
  }
  return cluster
}
