/**
 * A throw-away repmgr 5.3 cluster (Debian's postgresql-15-repmgr) on 127.0.0.1: a primary, one or
 * two standbys cloned with `repmgr standby clone`, a witness (a separate PostgreSQL instance
 * registered with `repmgr witness register`), and repmgrd on every node with
 * `failover=automatic`, so tests can watch repmgrd promote a standby after the primary dies.
 *
 * Layout (`$TMPDIR/pgfp-repmgr-XXXXXX/`):
 *   pgpass                  shared .pgpass (PGPASSFILE of every repmgr/repmgrd, and repmgr's
 *                           `passfile`, which it writes into primary_conninfo)
 *   <node>/data             PGDATA
 *   <node>/postgres.log     server log (also of restarts repmgr does with pg_ctl: pg_ctl_options -l)
 *   <node>/repmgr.conf      the node's repmgr config
 *   <node>/repmgr.log       repmgr's log (`--log-to-file`: promote/follow commands)
 *   <node>/repmgrd.log      repmgrd's output
 *
 * Timings: monitor_interval_secs=1, reconnect_attempts=2, reconnect_interval=1,
 * primary_notification_timeout=10, election_rerun_interval=3, standby_reconnect_timeout and
 * node_rejoin_timeout 30 (repmgr requires the former >= the latter).
 *
 * PostgreSQL and repmgrd run under subreapers (daemon.ts) so that killed postmasters never linger
 * as zombies (PID 1 of this VM reaps orphans only every ~2 s; some containers' never do). Everything is killed and the temp directory
 * removed on process exit, SIGINT and SIGTERM even if `destroy()` is never called.
 *
 * Failover as measured here (2 standbys + witness): the standbys' repmgrd ping the dead primary
 * twice (1 s apart), compare LSNs and priorities (node2 > node3 at equal LSN), check that neither
 * the sibling nor the witness saw the primary in the last seconds, and the winner runs
 * promote_command (`repmgr standby promote`, i.e. pg_promote(); no restart) about 2 s after the
 * kill; the other standby and the witness are notified and `standby follow` re-points the standby
 * by changing primary_conninfo and reloading (PostgreSQL >= 13: no restart).
 *
 * What repmgr does NOT do (and tests rely on): it never fences an old primary. A killed primary
 * started again ({@link RepmgrCluster.startAsIs}) comes up writable on its old timeline next to
 * the promoted standby — a split brain the client has to detect. Its repmgrd (still running)
 * just logs "reconnected to primary node ..., resuming monitoring"; `repmgr cluster show` marks
 * it "! running" (node record inactive).
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync, unlinkSync } from 'node:fs'
import path from 'node:path'
import {
  chownToServerUser,
  fileSize,
  findPgBinDir,
  readLogFrom,
  runPgTool,
  signalQuiet,
  tail,
  waitGoneSync,
  writeConfBlock,
  writeServerFile,
  type RunResult,
} from '../pg-binaries.js'
import { findNamed, TempHarness } from '../temp-harness.js'
import { Daemon } from './daemon.js'
import { ensureDebianPackages } from './packages.js'
import {
  killPostmaster as killPostmasterOf,
  postmasterPid,
  removePidFileUnlessLive,
  removeShmIfUnused,
  serverPids,
  shmIdOf,
  waitReaped,
} from './postmaster.js'
import { freePort, makeServerTempDir, pgQuery, type PgConfig, runAsServerUser, GiveUp, timelineOf, waitFor } from './util.js'

/** Options for {@link startRepmgr}. */
export interface RepmgrOptions {
  /** Number of standbys: 1 or 2 (default 2). */
  standbys?: 1 | 2
  /** Extra postgresql.conf settings for every node. */
  settings?: Record<string, string | number>
  /** Deadline for startRepmgr (default 120 000 ms). */
  startTimeoutMs?: number
}

/** Role a node was created with. */
export type RepmgrNodeKind = 'primary' | 'standby' | 'witness'

/** One PostgreSQL instance of a {@link RepmgrCluster}. */
export interface RepmgrNode {
  /** repmgr node_name: 'node1' (initial primary), 'node2', 'node3', or 'witness'. */
  readonly name: string
  /** repmgr node_id (witness: 99). */
  readonly id: number
  /** What the node was created as (does not change on failover; ask the cluster for roles). */
  readonly kind: RepmgrNodeKind
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** PostgreSQL TCP port. */
  readonly port: number
  readonly dataDir: string
  /** The node's repmgr.conf. */
  readonly configFile: string
  /** PostgreSQL server log. */
  readonly logFile: string
  /** repmgrd's own stdout/stderr (startup errors only: once running, repmgrd logs to {@link repmgrLogFile}). */
  readonly repmgrdLogFile: string
  /** Log of repmgrd (after startup) and of the repmgr commands it runs (promote/follow, `--log-to-file`). */
  readonly repmgrLogFile: string
  /** `{ name, host, port, user: 'postgres', password, database: 'postgres' }` for applications; a fresh object each time. */
  readonly config: PgConfig & { name: string }
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  readonly url: string
}

/** One standby's replication as last observed by {@link RepmgrCluster.waitForStreaming}. */
interface ReplicationSeen {
  /** Its walsender's state on the primary ('startup', 'catchup', 'streaming'; 'not connected'; 'unreachable: ...'). */
  sender: string
  /** Its WAL receiver's status ('streaming', 'waiting', ...; 'no WAL receiver'; 'unreachable: ...'). */
  receiver: string
}

/** "node2: walsender on node1 'catchup', WAL receiver 'streaming'; node3: ..." for error messages. */
function describeReplication(primary: { name: string }, seen: ReadonlyMap<{ name: string }, ReplicationSeen>): string {
  if (seen.size === 0) return '(nothing observed yet)'
  return [...seen].map(([s, r]) => `${s.name}: walsender on ${primary.name} '${r.sender}', WAL receiver '${r.receiver}'`).join('; ')
}

const CONSTRUCT = Symbol('RepmgrCluster.construct')
const CONF_BEGIN = '# >>> pgfp repmgr harness (managed block) >>>'
const CONF_END = '# <<< pgfp repmgr harness <<<'

class NodeImpl implements RepmgrNode {
  readonly host = '127.0.0.1' as const
  readonly dir: string
  readonly dataDir: string
  readonly configFile: string
  readonly logFile: string
  readonly repmgrLogFile: string
  readonly repmgrdLogFile: string
  /** Subreaper running the postmaster we started last (null when repmgr restarted it itself). */
  postgres: Daemon | null = null
  repmgrd: Daemon | null = null
  readonly leakedShm = new Set<number>()

  constructor(
    readonly name: string,
    readonly id: number,
    readonly kind: RepmgrNodeKind,
    baseDir: string,
    readonly port: number,
    private readonly password: string,
  ) {
    this.dir = path.join(baseDir, name)
    this.dataDir = path.join(this.dir, 'data')
    this.configFile = path.join(this.dir, 'repmgr.conf')
    this.logFile = path.join(this.dir, 'postgres.log')
    this.repmgrLogFile = path.join(this.dir, 'repmgr.log')
    this.repmgrdLogFile = path.join(this.dir, 'repmgrd.log')
  }

  get config(): PgConfig & { name: string } {
    return { name: this.name, host: this.host, port: this.port, user: 'postgres', password: this.password, database: 'postgres' }
  }

  get url(): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/postgres`
  }

  get conninfo(): string {
    return `host=127.0.0.1 port=${this.port} user=postgres dbname=repmgr connect_timeout=2`
  }

  toJSON(): object {
    return { name: this.name, id: this.id, kind: this.kind, port: this.port }
  }
}

/** A running repmgr cluster created by {@link startRepmgr}. Node arguments take a node or its name. */
export class RepmgrCluster extends TempHarness {
  /** All nodes: data nodes first (`nodes[0]` is the initial primary), the witness last. */
  readonly nodes: RepmgrNode[]
  /** The data nodes (primary and standbys), without the witness. */
  readonly dataNodes: RepmgrNode[]
  /** The witness node (a separate PostgreSQL instance holding only repmgr metadata). */
  readonly witness: RepmgrNode
  /** Password of the `postgres` superuser on every node (scram-sha-256 over TCP). */
  readonly password: string
  readonly binDir: string

  private readonly impls: NodeImpl[]
  private readonly pgpass: string

  /** @internal Use {@link startRepmgr}. */
  constructor(
    token: symbol,
    private readonly options: RepmgrOptions,
    ports: number[],
  ) {
    if (token !== CONSTRUCT) throw new Error('use startRepmgr() to create a RepmgrCluster')
    const standbys = options.standbys ?? 2
    if (standbys !== 1 && standbys !== 2) throw new Error(`standbys must be 1 or 2, got ${String(options.standbys)}`)
    const binDir = findPgBinDir() // before the temp directory: no PostgreSQL, nothing to clean up
    super(makeServerTempDir('pgfp-repmgr-'))
    this.binDir = binDir
    this.password = `pw-${randomBytes(12).toString('hex')}`
    this.pgpass = path.join(this.baseDir, 'pgpass')
    writeServerFile(this.pgpass, `127.0.0.1:*:*:postgres:${this.password}\n`)
    const port = (i: number): number => ports[i] ?? 0
    this.impls = [
      new NodeImpl('node1', 1, 'primary', this.baseDir, port(0), this.password),
      ...Array.from({ length: standbys }, (_, i) => new NodeImpl(`node${i + 2}`, i + 2, 'standby', this.baseDir, port(i + 1), this.password)),
      new NodeImpl('witness', 99, 'witness', this.baseDir, port(standbys + 1), this.password),
    ]
    for (const n of this.impls) {
      mkdirSync(n.dir, { mode: 0o700 })
      chownToServerUser(n.dir)
      this.writeRepmgrConf(n)
    }
    this.nodes = this.impls
    this.dataNodes = this.impls.filter((n) => n.kind !== 'witness')
    this.witness = this.impls[this.impls.length - 1]!
  }

  // ------------------------------------------------------------------ lookup / state

  /** The node called `name` (throws if unknown). */
  node(name: string): RepmgrNode {
    return this.resolve(name)
  }

  /** Run SQL on a node with a fresh short-lived pg.Client and return the rows. */
  async sql<T = any>(node: RepmgrNode | string, text: string, values?: unknown[]): Promise<T[]> {
    return pgQuery<T>(this.resolve(node).config, text, values)
  }

  /** True when the node answers and is not in recovery. */
  async isWritable(node: RepmgrNode | string): Promise<boolean> {
    try {
      const [r] = await this.sql<{ ro: boolean }>(node, 'SELECT pg_is_in_recovery() AS ro')
      return r?.ro === false
    } catch {
      return false
    }
  }

  /** Data nodes that answer and are not in recovery (more than one = split brain). */
  async writableNodes(): Promise<RepmgrNode[]> {
    const flags = await Promise.all(this.dataNodes.map((n) => this.isWritable(n)))
    return this.dataNodes.filter((_, i) => flags[i])
  }

  /**
   * The primary, asking the data nodes themselves (`pg_is_in_recovery()`): the only writable
   * one, or — if several are writable — the one on the highest timeline. Null when none is.
   */
  async primary(): Promise<RepmgrNode | null> {
    const writable = await this.writableNodes()
    if (writable.length <= 1) return writable[0] ?? null
    const tls = await Promise.all(writable.map((n) => this.timeline(n).catch(() => 0)))
    let best = 0
    for (let i = 1; i < writable.length; i++) if ((tls[i] ?? 0) > (tls[best] ?? 0)) best = i
    return writable[best] ?? null
  }

  /** Current timeline of a node (of its WAL insert position on a primary, of the WAL receiver on a standby). */
  async timeline(node: RepmgrNode | string): Promise<number> {
    return timelineOf(this.resolve(node).config)
  }

  /** Pid of the node's live postmaster, or null. */
  postmasterPid(node: RepmgrNode | string): number | null {
    return postmasterPid(this.resolve(node).dataDir)
  }

  /** Whether repmgrd runs on the node. */
  isRepmgrdRunning(node: RepmgrNode | string): boolean {
    return this.resolve(node).repmgrd?.running === true
  }

  /**
   * `repmgr cluster show` run with the given node's config (default the first data node with a
   * running postmaster). Returns stdout even when repmgr exits non-zero (it does when a node is
   * unreachable), with stderr appended.
   */
  async clusterShow(via?: RepmgrNode | string): Promise<string> {
    const n = this.resolve(via ?? this.dataNodes.find((x) => postmasterPid(x.dataDir) !== null) ?? this.impls[0]!)
    const r = await runAsServerUser(path.join(this.binDir, 'repmgr'), ['-f', n.configFile, 'cluster', 'show'], {
      cwd: n.dir,
      env: this.toolEnv(n),
    })
    return `${r.stdout}${r.stderr === '' ? '' : `\n${r.stderr}`}`.trim()
  }

  /**
   * Wait until a data node other than `notName` is the only writable data node
   * (ignoring `notName`, which may be a stale old primary). Returns it.
   */
  async waitForPrimary(notName?: RepmgrNode | string, timeoutMs = 60_000): Promise<RepmgrNode> {
    const not = typeof notName === 'string' ? notName : notName?.name
    return waitFor(
      `a writable repmgr primary${not === undefined ? '' : ` other than ${not}`}`,
      timeoutMs,
      100,
      async () => {
        const writable = (await this.writableNodes()).filter((n) => n.name !== not)
        return writable.length === 1 ? writable[0] : null
      },
      () => this.diagnostics(),
    )
  }

  /**
   * Wait until every given standby (default: all data nodes other than `primary` with a running
   * postmaster) streams from `primary`: the primary's pg_stat_replication shows it in state
   * 'streaming' (see {@link replicationOf}). On timeout the error names each standby still
   * waited for with what the primary and the standby last said.
   */
  async waitForStreaming(primary: RepmgrNode | string, standbys?: Array<RepmgrNode | string>, timeoutMs = 60_000): Promise<void> {
    const p = this.resolve(primary)
    const wanted = (standbys ?? this.dataNodes.filter((n) => n !== p && postmasterPid(n.dataDir) !== null)).map((s) => this.resolve(s))
    const last = new Map<NodeImpl, ReplicationSeen>()
    await waitFor(
      `${wanted.map((s) => s.name).join(', ')} to stream from ${p.name}`,
      timeoutMs,
      100,
      async () => {
        const seen = await Promise.all(wanted.map((s) => this.replicationOf(p, s)))
        wanted.forEach((s, i) => last.set(s, seen[i]!))
        return seen.every((r) => r.sender === 'streaming')
      },
      () => `last seen: ${describeReplication(p, last)}\n${this.diagnostics()}`,
    )
  }

  /**
   * How `standby` replicates from `primary`, as both of them say: the state of its walsender in
   * the primary's pg_stat_replication (found by application_name, which repmgr's primary_conninfo
   * sets to node_name) and the status of the standby's WAL receiver. The walsender is what
   * repmgr itself checks (`standby register`: "local node not attached to primary node"
   * unless 'streaming'); the receiver reports 'streaming' while the walsender is still in
   * 'catchup', so it is only diagnostics. Never throws: an unreachable node is a state too.
   */
  private async replicationOf(primary: NodeImpl, standby: NodeImpl): Promise<ReplicationSeen> {
    const [sender, receiver] = await Promise.all([
      this.sql<{ state: string }>(primary, 'SELECT state FROM pg_stat_replication WHERE application_name = $1', [standby.name]).then(
        (rows) => (rows.some((r) => r.state === 'streaming') ? 'streaming' : rows.map((r) => r.state).join('+') || 'not connected'),
        (err: Error) => `unreachable: ${err.message}`,
      ),
      this.sql<{ status: string }>(standby, 'SELECT status FROM pg_stat_wal_receiver').then(
        (rows) => rows[0]?.status ?? 'no WAL receiver',
        (err: Error) => `unreachable: ${err.message}`,
      ),
    ])
    return { sender, receiver }
  }

  // ------------------------------------------------------------------ faults

  /**
   * SIGKILL the current primary's postmaster and all its children (a crash; its repmgrd keeps
   * running). repmgrd on the standbys notices after ~reconnect_attempts × reconnect_interval and
   * promotes one of them. Resolves with the killed node once its processes are gone.
   */
  async killPrimary(): Promise<RepmgrNode> {
    const p = await this.primary()
    if (p === null) throw new Error(`killPrimary: no writable primary\n${this.diagnostics()}`)
    await this.killServer(this.resolve(p))
    return p
  }

  /** SIGKILL a node's postmaster and all its children (its repmgrd keeps running). */
  async killNode(node: RepmgrNode | string): Promise<void> {
    await this.killServer(this.resolve(node))
  }

  /**
   * Stop a node: its repmgrd (unless `keepRepmgrd`) and PostgreSQL (`pg_ctl stop -m fast`).
   * No-op for parts that are not running.
   */
  async stopNode(node: RepmgrNode | string, opts: { keepRepmgrd?: boolean } = {}): Promise<void> {
    const n = this.resolve(node)
    if (opts.keepRepmgrd !== true) await this.stopRepmgrd(n)
    if (postmasterPid(n.dataDir) !== null) {
      await this.runTool('pg_ctl', ['-D', n.dataDir, '-m', 'fast', '-w', '-t', '60', 'stop'], n)
    }
    // The subreaper exits once it reaped the last server process: until then a zombie child could
    // keep postmaster.pid "alive" for startAsIs(). Bounded, so that a stuck one says so.
    const d = n.postgres
    if (d !== null) {
      await waitFor(`the postgres subreaper of ${n.name} to exit after the stop`, 30_000, 20, async () => !d.running, () =>
        `still running: pids ${JSON.stringify(d.groupMembersButMain())} in its group\n${this.diagnostics()}`,
      )
    }
  }

  /**
   * Start a stopped (or killed) node exactly as it is on disk — what a reboot does under repmgr:
   * an old primary comes up writable on its old timeline (repmgr does not fence it), a standby
   * as a standby. With `repmgrd: true` its repmgrd is started too (if not running). Resolves
   * when the node accepts connections.
   */
  async startAsIs(node: RepmgrNode | string, opts: { repmgrd?: boolean } = {}): Promise<void> {
    const n = this.resolve(node)
    if (postmasterPid(n.dataDir) !== null) throw new Error(`startAsIs(${n.name}): PostgreSQL is already running`)
    await this.startPostgres(n)
    if (opts.repmgrd === true && n.repmgrd?.running !== true) this.startRepmgrd(n)
  }

  /** Start repmgrd on a node (no-op if running). */
  startRepmgrd(node: RepmgrNode | string): void {
    const n = this.resolve(node)
    if (n.repmgrd?.running === true) return
    n.repmgrd = new Daemon({
      name: `repmgrd ${n.name}`,
      command: path.join(this.binDir, 'repmgrd'),
      args: ['-f', n.configFile, '--daemonize=false', '--no-pid-file'],
      logFile: n.repmgrdLogFile,
      cwd: n.dir,
      subreaper: true,
      env: this.toolEnv(n),
    })
    n.repmgrd.start()
  }

  /**
   * Stop a node's repmgrd (SIGTERM, then SIGKILL). A postmaster that repmgr restarted under it
   * keeps running.
   */
  async stopRepmgrd(node: RepmgrNode | string): Promise<void> {
    const n = this.resolve(node)
    const d = n.repmgrd
    if (d === null || !d.running) return
    // Only repmgrd itself: its subreaper may have adopted a postmaster (pg_ctl restart by repmgr).
    for (const p of d.groupMembersButMain()) signalQuiet(p, 'SIGTERM')
    await waitFor(`repmgrd on ${n.name} to exit`, 10_000, 20, async () => d.groupMembersButMain().length === 0).catch(() => undefined)
    for (const p of d.groupMembersButMain()) signalQuiet(p, 'SIGKILL')
    // The subreaper exits by itself once it has no children left; if a postmaster is still one
    // of them, it stays until that postmaster exits.
  }

  /** Run `repmgr -f <node's repmgr.conf> <args>` as the postgres user. */
  async repmgr(node: RepmgrNode | string, args: string[], allowFailure = false): Promise<RunResult> {
    const n = this.resolve(node)
    try {
      return await this.runTool('repmgr', ['-f', n.configFile, ...args], n)
    } catch (err) {
      if (allowFailure) return { stdout: (err as Error).message, stderr: '' }
      throw err
    }
  }

  /** Compact state of every node for error messages. */
  diagnostics(lines = 8): string {
    return this.impls
      .map((n) => {
        const pg = tail(readLogFrom(n.logFile), lines)
        const rd = tail(`${readLogFrom(n.repmgrdLogFile)}${readLogFrom(n.repmgrLogFile)}`, lines)
        return (
          `${n.name} (postmaster ${String(postmasterPid(n.dataDir))}, repmgrd ${n.repmgrd?.running === true ? 'running' : 'down'}):\n` +
          `--- postgres.log ---\n${pg}\n--- repmgrd.log + repmgr.log ---\n${rd}`
        )
      })
      .join('\n')
  }

  // ------------------------------------------------------------------ teardown

  /** For destroy(): kill every repmgrd, then every PostgreSQL, then their subreapers. */
  protected async killAll(): Promise<void> {
    // repmgrd first (it could restart or promote nodes), then the servers while the subreapers
    // are still alive to reap them, then the subreapers.
    for (const n of this.impls) for (const p of n.repmgrd?.groupMembersButMain() ?? []) signalQuiet(p, 'SIGKILL')
    await Promise.all(this.impls.map((n) => this.killServer(n).catch(() => undefined)))
    await Promise.all(this.impls.flatMap((n) => [n.repmgrd?.kill(), n.postgres?.kill()]))
    for (const n of this.impls) for (const id of n.leakedShm) removeShmIfUnused(id)
  }

  /** For the exit handlers: the same order as {@link killAll}, with SIGKILL throughout. */
  protected killAllSync(): void {
    for (const n of this.impls) for (const p of n.repmgrd?.groupMembersButMain() ?? []) signalQuiet(p, 'SIGKILL')
    const all: number[] = []
    for (const n of this.impls) {
      const shm = shmIdOf(n.dataDir)
      if (shm !== null) n.leakedShm.add(shm)
      const pids = serverPids(n.dataDir)
      for (const p of pids) signalQuiet(p, 'SIGKILL')
      all.push(...pids)
    }
    waitGoneSync(all, 2000)
    for (const n of this.impls) {
      n.repmgrd?.killSync()
      n.postgres?.killSync()
    }
    for (const n of this.impls) for (const id of n.leakedShm) removeShmIfUnused(id)
  }

  // ------------------------------------------------------------------ setup

  /** @internal */
  async init(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs
    const remaining = (): number => Math.max(1000, deadline - Date.now())
    const primary = this.impls[0]!
    const standbys = this.impls.filter((n) => n.kind === 'standby')
    const witness = this.witness as NodeImpl
    // The witness is an independent instance: create it while the primary comes up.
    await Promise.all([this.initdb(primary), this.initdb(witness)])
    await Promise.all([this.startPostgres(primary), this.startPostgres(witness)])
    await Promise.all([
      this.sql(primary, 'CREATE DATABASE repmgr'),
      this.sql(witness, 'CREATE DATABASE repmgr'),
    ])
    await this.repmgr(primary, ['primary', 'register'])
    await Promise.all(
      standbys.map(async (s) => {
        await this.repmgr(s, ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-d', 'repmgr', 'standby', 'clone', '--fast-checkpoint'])
        this.writePostgresConf(s) // the clone copied the primary's postgresql.conf (its port)
        await this.startPostgres(s)
        // Accepting connections is not attached: for a moment after the start (longer on a loaded
        // machine) the walsender is in 'startup' or 'catchup', and `standby register` then fails
        // with "local node not attached to primary node 1".
        await this.waitForStreaming(primary, [s], remaining())
        await this.repmgr(s, ['standby', 'register'])
      }),
    )
    await this.repmgr(witness, ['-h', '127.0.0.1', '-p', String(primary.port), '-U', 'postgres', '-d', 'repmgr', 'witness', 'register'])
    await this.waitForNodeRecords(standbys, remaining())
    for (const n of this.impls) this.startRepmgrd(n)
    await this.waitForMonitoring(remaining())
  }

  /**
   * Wait until every standby has replayed the repmgr.nodes rows of all nodes. The registrations
   * are written on the primary; repmgrd reads the node list from its LOCAL database (and exits
   * with "no metadata record found" for its own node), and a standby's repmgrd counts the
   * witness and the sibling in an election only if it knows them.
   */
  private async waitForNodeRecords(standbys: NodeImpl[], timeoutMs: number): Promise<void> {
    const names = this.impls.map((n) => n.name)
    const last = new Map<NodeImpl, string>()
    await waitFor(
      `${standbys.map((s) => s.name).join(', ')} to replay the repmgr.nodes rows of ${names.join(', ')}`,
      timeoutMs,
      100,
      async () => {
        const known = await Promise.all(
          standbys.map((s) =>
            pgQuery<{ node_name: string }>({ ...s.config, database: 'repmgr' }, 'SELECT node_name FROM repmgr.nodes ORDER BY node_id').then(
              (rows) => rows.map((r) => r.node_name),
              (err: Error) => `unreachable: ${err.message}`,
            ),
          ),
        )
        standbys.forEach((s, i) => last.set(s, JSON.stringify(known[i])))
        return known.every((k) => Array.isArray(k) && names.every((n) => k.includes(n)))
      },
      () => `last seen: ${[...last].map(([s, k]) => `${s.name}: ${k}`).join('; ')}\n${this.diagnostics()}`,
    )
  }

  /**
   * Wait until repmgrd monitors on every node: it runs (`repmgrd_is_running()`), and on a standby
   * or the witness it has reached its upstream (`get_upstream_last_seen()` is -1 until then).
   * repmgrd registers its pid before it first connects to the upstream: a primary killed in
   * that gap would leave the standbys' repmgrd starting up against a dead node. Gives up at once
   * when a repmgrd exits.
   */
  private async waitForMonitoring(timeoutMs: number): Promise<void> {
    const last = new Map<NodeImpl, string>()
    await waitFor(
      'repmgrd to monitor on every node (standbys and witness: to have seen their upstream)',
      timeoutMs,
      100,
      async () => {
        const ready = await Promise.all(
          this.impls.map(async (n) => {
            const d = n.repmgrd
            if (d === null || !d.running) throw new GiveUp(`repmgrd on ${n.name} exited (${JSON.stringify(d?.lastExit ?? null)})`)
            const [r] = await pgQuery<{ running: boolean; seen: number }>(
              { ...n.config, database: 'repmgr' },
              'SELECT repmgr.repmgrd_is_running() AS running, repmgr.get_upstream_last_seen() AS seen',
            ).catch((err: Error) => {
              last.set(n, `unreachable: ${err.message}`)
              return []
            })
            if (r === undefined) return false
            last.set(n, `repmgrd_is_running ${String(r.running)}, ${r.seen < 0 ? 'upstream not seen yet' : `upstream last seen ${r.seen} s ago`}`)
            return r.running && (n.kind === 'primary' || r.seen >= 0)
          }),
        )
        return ready.every(Boolean)
      },
      () => `last seen: ${[...last].map(([n, s]) => `${n.name}: ${s}`).join('; ')}\n${this.diagnostics()}`,
    )
  }

  private async initdb(n: NodeImpl): Promise<void> {
    const pwfile = path.join(n.dir, 'pwfile')
    writeServerFile(pwfile, `${this.password}\n`)
    await this.runTool(
      'initdb',
      ['-D', n.dataDir, '-A', 'scram-sha-256', '--auth-local=trust', '-U', 'postgres', `--pwfile=${pwfile}`]
        .concat(['--no-sync', '-E', 'UTF8', '--locale=C', '--no-instructions']),
      n,
    )
    unlinkSync(pwfile)
    const hba = [
      'local all all trust',
      'local replication all trust',
      'host all all 127.0.0.1/32 scram-sha-256',
      'host replication all 127.0.0.1/32 scram-sha-256',
      '',
    ].join('\n')
    writeServerFile(path.join(n.dataDir, 'pg_hba.conf'), hba)
    this.writePostgresConf(n)
  }

  private writePostgresConf(n: NodeImpl): void {
    const settings: Record<string, string | number> = {
      fsync: 'off',
      full_page_writes: 'on',
      wal_log_hints: 'on',
      wal_level: 'replica',
      max_wal_senders: 10,
      max_replication_slots: 10,
      hot_standby: 'on',
      hot_standby_feedback: 'on',
      shared_buffers: '16MB',
      max_connections: 100,
      wal_keep_size: '256MB',
      wal_receiver_status_interval: '1s',
      wal_retrieve_retry_interval: '500ms',
      logging_collector: 'off',
      jit: 'off',
      ...this.options.settings,
      shared_preload_libraries: 'repmgr',
      cluster_name: n.name,
      listen_addresses: '127.0.0.1',
      port: n.port,
      unix_socket_directories: n.dir,
    }
    writeConfBlock(path.join(n.dataDir, 'postgresql.conf'), CONF_BEGIN, CONF_END, settings)
  }

  private writeRepmgrConf(n: NodeImpl): void {
    const repmgr = path.join(this.binDir, 'repmgr')
    const q = (v: string): string => `'${v.replace(/'/g, "\\'")}'`
    const lines = [
      `node_id=${n.id}`,
      `node_name=${q(n.name)}`,
      `conninfo=${q(n.conninfo)}`,
      `data_directory=${q(n.dataDir)}`,
      `pg_bindir=${q(this.binDir)}`,
      `passfile=${q(this.pgpass)}`,
      `replication_user='postgres'`,
      `use_replication_slots=true`,
      `pg_ctl_options=${q(`-l ${n.logFile}`)}`,
      `log_level='INFO'`,
      `log_file=${q(n.repmgrLogFile)}`,
      `failover='automatic'`,
      `priority=${n.kind === 'witness' ? 0 : 100 - n.id}`,
      `promote_command=${q(`${repmgr} standby promote -f ${n.configFile} --log-to-file`)}`,
      `follow_command=${q(`${repmgr} standby follow -f ${n.configFile} --log-to-file --upstream-node-id=%n`)}`,
      `monitor_interval_secs=1`,
      `reconnect_attempts=2`,
      `reconnect_interval=1`,
      `primary_notification_timeout=10`,
      `election_rerun_interval=3`,
      `standby_reconnect_timeout=30`,
      `node_rejoin_timeout=30`,
      `promote_check_timeout=30`,
      `promote_check_interval=1`,
      `connection_check_type='ping'`,
      '',
    ]
    writeServerFile(n.configFile, lines.join('\n'))
  }

  /** Start PostgreSQL in the foreground under a subreaper and wait until it accepts connections. */
  private async startPostgres(n: NodeImpl): Promise<void> {
    removePidFileUnlessLive(n.dataDir)
    const offset = fileSize(n.logFile)
    n.postgres = new Daemon({
      name: `postgres ${n.name}`,
      command: path.join(this.binDir, 'postgres'),
      args: ['-D', n.dataDir],
      logFile: n.logFile,
      cwd: n.dir,
      subreaper: true,
      env: { HOME: n.dir },
    })
    n.postgres.start()
    const d = n.postgres
    await waitFor(
      `${n.name} to accept connections`,
      60_000,
      50,
      async () => {
        if (!d.running) throw new GiveUp(`postgres exited (${JSON.stringify(d.lastExit)})`)
        await this.sql(n, 'SELECT 1')
        return true
      },
      () => `--- ${n.logFile} (tail) ---\n${tail(readLogFrom(n.logFile, offset), 20)}`,
    )
  }

  private async killServer(n: NodeImpl): Promise<void> {
    const shm = shmIdOf(n.dataDir)
    const pids = serverPids(n.dataDir)
    const pid = await killPostmasterOf(n.dataDir, true)
    if (pid === null) return
    if (shm !== null) n.leakedShm.add(shm)
    // Wait for the subreaper to reap them so postmaster.pid does not name a zombie.
    await waitReaped(pids)
    removePidFileUnlessLive(n.dataDir)
  }

  private toolEnv(n: NodeImpl): Record<string, string> {
    return { HOME: n.dir, PGPASSFILE: this.pgpass, PGCONNECT_TIMEOUT: '5' }
  }

  private runTool(tool: string, args: string[], n: NodeImpl): Promise<RunResult> {
    return runPgTool(this.binDir, tool, args, {
      cwd: n.dir,
      env: this.toolEnv(n),
      logFile: tool === 'repmgr' ? n.repmgrLogFile : n.logFile,
      logOffset: fileSize(tool === 'repmgr' ? n.repmgrLogFile : n.logFile),
      secrets: [this.password],
    })
  }

  private resolve(node: RepmgrNode | string): NodeImpl {
    if (this.destroyed) throw new Error('repmgr cluster has been destroyed')
    return findNamed(this.impls, node, 'node')
  }
}

/**
 * Start a repmgr cluster: initdb + `primary register` on node1, `standby clone` + `standby
 * register` for each standby (once it streams: repmgr refuses one that does not), a witness
 * registered with `witness register`, then repmgrd on every node. Resolves when the standbys
 * stream, know every node's record, and every repmgrd monitors (standbys and witness have seen
 * the primary). Installs `postgresql-15-repmgr` if needed.
 */
export async function startRepmgr(options: RepmgrOptions = {}): Promise<RepmgrCluster> {
  await ensureDebianPackages(['postgresql-15-repmgr'])
  const count = (options.standbys ?? 2) + 2
  const ports: number[] = []
  for (let i = 0; i < count; i++) ports.push(await freePort())
  const cluster = new RepmgrCluster(CONSTRUCT, options, ports)
  try {
    await cluster.init(options.startTimeoutMs ?? 120_000)
  } catch (err) {
    await cluster.destroy()
    throw err
  }
  return cluster
}
