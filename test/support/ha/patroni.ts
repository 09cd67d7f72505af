/**
 * A throw-away Patroni 3 cluster (Debian's patroni 3.0.2) of N PostgreSQL members on a
 * single-node etcd (etcd.ts), all on 127.0.0.1, for integration tests of pg-failover-pool
 * against the HA tool our users actually run.
 *
 * Layout (`$TMPDIR/pgfp-patroni-XXXXXX/`):
 *   <member>/patroni.yml   the member's Patroni config (etcd3 DCS)
 *   <member>/patroni.log   Patroni's log; the postmaster Patroni starts inherits it, so PostgreSQL's
 *                          log lines are in there too
 *   <member>/data          PGDATA (created by Patroni: initdb on the first member, pg_basebackup on
 *                          the others)
 *   <member>/pgpass        Patroni's pgpass (per member: the default ~postgres/.pgpass is shared)
 *
 * Timings (bootstrap DCS config): ttl 10, loop_wait 2, retry_timeout 4 (Patroni requires
 * loop_wait + 2 * retry_timeout <= ttl), maximum_lag_on_failover 1 GiB, use_pg_rewind with
 * wal_log_hints, fsync off. Each Patroni runs under a subreaper (see daemon.ts) so that the
 * postmasters it starts in their own session are reaped when killed.
 *
 * What Patroni 3.0.2 does after {@link PatroniCluster.killPostmaster} on the leader (read from its
 * log, timed by test/integration/ha-harness.test.ts): it keeps the leader key, notices the dead
 * postmaster on its next loop (≤ loop_wait: "Postgresql is not running"), runs crash recovery in
 * single-user mode ("doing crash recovery in a single user mode", because use_pg_rewind is on),
 * then starts PostgreSQL READ-ONLY as a standby without primary_conninfo ("starting as readonly
 * because i had the session lock") and on its next cycle promotes it ("promoted self to leader
 * because I had the session lock"): the same member is the leader again but on a NEW timeline
 * (old + 1). Fresh clients see ECONNREFUSED for ~1–2 s, then (briefly, ~0.2 s) a read-only server
 * (SQLSTATE 25006 on writes; sometimes 57P03 "starting up" before that), then a writable one:
 * ~1.3–3.3 s from the kill to the first successful write on this machine. The /cluster
 * `timeline` field lags behind the promotion by a loop. Other members are not involved and keep
 * streaming (they follow the new timeline).
 *
 * Every cluster is torn down (processes killed, temp dir removed) on process exit, SIGINT and
 * SIGTERM even if `destroy()` is never called.
 */
import { randomBytes } from 'node:crypto'
import { mkdirSync } from 'node:fs'
import path from 'node:path'
import { chownToServerUser, findPgBinDir, runPgTool, signalQuiet, waitGoneSync, writeServerFile } from '../pg-binaries.js'
import { findNamed, TempHarness } from '../temp-harness.js'
import { Daemon } from './daemon.js'
import { startEtcd, type Etcd } from './etcd.js'
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
import { freePort, httpRequest, makeServerTempDir, pgQuery, type PgConfig, timelineOf, waitFor } from './util.js'

/** Options for {@link startPatroni}. */
export interface PatroniOptions {
  /** Number of members (default 3). Member 0 bootstraps the cluster and is the first leader. */
  members?: number
  /**
   * How many of them start with the cluster (default all); the others join when the test calls
   * {@link PatroniCluster.joinMember} (a member added at runtime clones the leader as any replica).
   */
  initialMembers?: number
  /** Patroni `synchronous_mode` (default false). */
  synchronousMode?: boolean
  /** Extra PostgreSQL parameters (bootstrap DCS config, i.e. for every member). */
  parameters?: Record<string, string | number>
  /** Member name prefix (default 'pg'): members are `${prefix}0`, `${prefix}1`, ... */
  namePrefix?: string
  /** Use this etcd instead of starting one (it is then not destroyed with the cluster). */
  etcd?: Etcd
  /** Deadline for start() (default 120 000 ms). */
  startTimeoutMs?: number
}

/** A pg connection config for an application, plus the member's name. */
export interface PatroniPgConfig extends PgConfig {
  /** Patroni member name. */
  name: string
}

/** One Patroni member (a Patroni daemon and the PostgreSQL server it manages). */
export interface PatroniMember {
  /** Patroni member name (also its application_name as a standby). */
  readonly name: string
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** PostgreSQL TCP port. */
  readonly port: number
  /** Patroni REST API port. */
  readonly restPort: number
  /** `http://127.0.0.1:<restPort>` */
  readonly restUrl: string
  /** PGDATA. */
  readonly dataDir: string
  /** The member's patroni.yml (usable with `patronictl -c`). */
  readonly configFile: string
  /** Patroni's log (PostgreSQL's log lines included). */
  readonly logFile: string
  /** `{ name, host, port, user: 'postgres', password, database: 'postgres' }`; a fresh object on every access. */
  readonly config: PatroniPgConfig
  /** `postgres://postgres:<password>@127.0.0.1:<port>/postgres` */
  readonly url: string
}

/** One entry of `GET /cluster` → `members` (Patroni 3.0.2). */
export interface PatroniClusterMember {
  name: string
  /** 'leader' | 'replica' | 'sync_standby' | 'standby_leader' */
  role: string
  /** 'running' | 'starting' | 'stopped' | 'crashed' | 'creating replica' | 'restarting' | ... */
  state: string
  api_url: string
  host: string
  port: number
  timeline?: number
  lag?: number | string
  tags?: Record<string, unknown>
}

/** Parsed `GET /cluster`. */
export interface PatroniClusterState {
  members: PatroniClusterMember[]
  scope?: string
  pause?: boolean
  scheduled_switchover?: unknown
}

const CONSTRUCT = Symbol('PatroniCluster.construct')
/** /cluster roles of a member that replicates from the leader. */
const REPLICA_ROLES = new Set(['replica', 'sync_standby'])
/** /cluster states of a member whose PostgreSQL runs (3.0.2 says 'running'; later versions 'streaming' for replicas). */
const RUNNING_STATES = new Set(['running', 'streaming'])
const PATRONICTL = '/usr/bin/patronictl'

class MemberImpl implements PatroniMember {
  readonly host = '127.0.0.1' as const
  readonly dir: string
  readonly dataDir: string
  readonly configFile: string
  readonly logFile: string
  daemon: Daemon | null = null
  /** SysV shm ids of postmasters we killed, removed on destroy if still unused. */
  readonly leakedShm = new Set<number>()

  constructor(
    readonly name: string,
    baseDir: string,
    readonly port: number,
    readonly restPort: number,
    private readonly password: string,
  ) {
    this.dir = path.join(baseDir, name)
    this.dataDir = path.join(this.dir, 'data')
    this.configFile = path.join(this.dir, 'patroni.yml')
    this.logFile = path.join(this.dir, 'patroni.log')
  }

  get restUrl(): string {
    return `http://127.0.0.1:${this.restPort}`
  }

  get config(): PatroniPgConfig {
    return { name: this.name, host: this.host, port: this.port, user: 'postgres', password: this.password, database: 'postgres' }
  }

  get url(): string {
    return `postgres://postgres:${encodeURIComponent(this.password)}@127.0.0.1:${this.port}/postgres`
  }

  toJSON(): object {
    return { name: this.name, port: this.port, restPort: this.restPort }
  }
}

/** A running Patroni cluster created by {@link startPatroni}. Member arguments take a member or its name. */
export class PatroniCluster extends TempHarness {
  /** All members; `members[0]` bootstrapped the cluster. */
  readonly members: PatroniMember[]
  /** Patroni scope (cluster name). */
  readonly scope: string
  /** Password of the `postgres` superuser (scram-sha-256 over TCP). */
  readonly password: string
  /** Replication user (`replicator`) password. */
  readonly replicationPassword: string
  /** The etcd used as DCS. */
  readonly etcd: Etcd

  private readonly impls: MemberImpl[]
  private readonly ownsEtcd: boolean

  /** @internal Use {@link startPatroni}. */
  constructor(
    token: symbol,
    etcd: Etcd,
    ownsEtcd: boolean,
    private readonly options: PatroniOptions,
    ports: Array<{ pg: number; rest: number }>,
  ) {
    if (token !== CONSTRUCT) throw new Error('use startPatroni() to create a PatroniCluster')
    super(makeServerTempDir('pgfp-patroni-'))
    this.etcd = etcd
    this.ownsEtcd = ownsEtcd
    this.password = `pw-${randomBytes(12).toString('hex')}`
    this.replicationPassword = `rpw-${randomBytes(12).toString('hex')}`
    this.scope = `pgfp-${path.basename(this.baseDir).slice('pgfp-patroni-'.length).toLowerCase()}`
    const prefix = options.namePrefix ?? 'pg'
    this.impls = ports.map((p, i) => new MemberImpl(`${prefix}${i}`, this.baseDir, p.pg, p.rest, this.password))
    this.members = this.impls
    for (const m of this.impls) {
      mkdirSync(m.dir, { mode: 0o700 })
      chownToServerUser(m.dir)
      this.writeConfig(m)
    }
  }

  // ------------------------------------------------------------------ lookup / state

  /** The member called `name` (throws if unknown). */
  member(name: string): PatroniMember {
    return this.resolve(name)
  }

  /**
   * `GET /cluster` from the first member whose REST API answers (members in order, or `via`
   * first). Throws if none answers.
   */
  async cluster(via?: PatroniMember | string): Promise<PatroniClusterState> {
    const order = via === undefined ? this.impls : [this.resolve(via), ...this.impls.filter((m) => m !== this.resolve(via))]
    const errors: string[] = []
    for (const m of order) {
      if (m.daemon?.running !== true) continue
      try {
        const r = await httpRequest('GET', `${m.restUrl}/cluster`, undefined, 2000)
        if (r.status === 200) return JSON.parse(r.body) as PatroniClusterState
        errors.push(`${m.name}: HTTP ${r.status}`)
      } catch (err) {
        errors.push(`${m.name}: ${(err as Error).message}`)
      }
    }
    throw new Error(`no Patroni REST API answered /cluster (${errors.join('; ') || 'no member running'})`)
  }

  /** The member /cluster reports as leader, or null when there is none (or no REST API answers). */
  async leader(): Promise<PatroniMember | null> {
    let state: PatroniClusterState
    try {
      state = await this.cluster()
    } catch {
      return null
    }
    const l = state.members.find((m) => m.role === 'leader' || m.role === 'standby_leader')
    return l === undefined ? null : (this.impls.find((m) => m.name === l.name) ?? null)
  }

  /** Run SQL on a member with a fresh short-lived pg.Client and return the rows. */
  async sql<T = any>(member: PatroniMember | string, text: string, values?: unknown[]): Promise<T[]> {
    return pgQuery<T>(this.resolve(member).config, text, values)
  }

  /** True when the member answers and is not in recovery (a writable primary; no write is attempted). */
  async isWritable(member: PatroniMember | string): Promise<boolean> {
    try {
      const [r] = await this.sql<{ ro: boolean; tro: string }>(
        member,
        `SELECT pg_is_in_recovery() AS ro, current_setting('transaction_read_only') AS tro`,
      )
      return r?.ro === false && r.tro === 'off'
    } catch {
      return false
    }
  }

  /** Current timeline of a member: of its WAL insert position on a primary, of the replayed WAL on a standby. */
  async timeline(member: PatroniMember | string): Promise<number> {
    return timelineOf(this.resolve(member).config)
  }

  /** Pid of the member's live postmaster (from postmaster.pid), or null. */
  postmasterPid(member: PatroniMember | string): number | null {
    return postmasterPid(this.resolve(member).dataDir)
  }

  /** Whether the member's Patroni daemon is running. */
  isPatroniRunning(member: PatroniMember | string): boolean {
    return this.resolve(member).daemon?.running === true
  }

  /** Last lines of the member's Patroni log. */
  logTail(member: PatroniMember | string, lines = 30): string {
    const m = this.resolve(member)
    return `--- ${m.logFile} (tail) ---\n${m.daemon?.logTail(lines) ?? ''}`
  }

  // ------------------------------------------------------------------ waiting

  /**
   * Poll /cluster until a member other than `notName` is leader AND accepts writes (not in
   * recovery). Returns that member.
   */
  async waitForLeader(notName?: PatroniMember | string, timeoutMs = 60_000): Promise<PatroniMember> {
    const not = typeof notName === 'string' ? notName : notName?.name
    return waitFor(
      `a writable Patroni leader${not === undefined ? '' : ` other than ${not}`}`,
      timeoutMs,
      100,
      async () => {
        const l = await this.leader()
        if (l === null || l.name === not) return null
        return (await this.isWritable(l)) ? l : null
      },
      () => this.diagnostics(),
    )
  }

  /**
   * Wait until every member whose Patroni runs (or the given ones), other than the leader,
   * streams from the leader (pg_stat_replication on the leader, state 'streaming') AND Patroni's
   * member list (/cluster) says so too: the leader as 'leader' and 'running', each of the others
   * as 'replica' or 'sync_standby' and 'running'. Patroni rewrites a member's key only once per
   * loop (loop_wait 2 s), so the list lags what PostgreSQL shows, and Patroni acts on the list:
   * a switchover to a member still 'starting' there is refused. On timeout the error names each
   * member with what the leader and /cluster last said about it.
   */
  async waitForStreaming(members?: Array<PatroniMember | string>, timeoutMs = 60_000): Promise<void> {
    const wanted = (members ?? this.impls.filter((m) => m.daemon?.running === true)).map((m) => this.resolve(m))
    let last = '(nothing observed yet)'
    await waitFor(
      `${wanted.map((m) => m.name).join(', ')} to stream from the leader, listed in /cluster as running replicas`,
      timeoutMs,
      100,
      async () => {
        const seen = await this.replicationSeen(wanted)
        last = seen.text
        return seen.settled
      },
      () => `last seen: ${last}\n${this.diagnostics()}`,
    )
  }

  /**
   * One look at the leader (from /cluster; writable) and at how each of `wanted` replicates from
   * it: its walsender state on the leader and its role/state in /cluster. `settled` when every
   * one streams and is listed as a running replica; `text` says what was seen, for errors.
   */
  private async replicationSeen(wanted: MemberImpl[]): Promise<{ settled: boolean; text: string }> {
    const state = await this.cluster()
    const list = state.members.map((e) => `${e.name} ${e.role}/${e.state}`).join(', ')
    const entry = state.members.find((e) => e.role === 'leader' || e.role === 'standby_leader')
    const leader = this.impls.find((m) => m.name === entry?.name)
    if (entry === undefined || leader === undefined) return { settled: false, text: `no leader in /cluster (${list})` }
    if (!RUNNING_STATES.has(entry.state) || !(await this.isWritable(leader))) {
      return { settled: false, text: `leader ${leader.name} not yet running and writable (/cluster: ${list})` }
    }
    const senders = await this.sql<{ application_name: string; state: string }>(leader, 'SELECT application_name, state FROM pg_stat_replication')
    const others = wanted.filter((m) => m !== leader).map((m) => {
      const states = senders.filter((r) => r.application_name === m.name).map((r) => r.state)
      const e = state.members.find((x) => x.name === m.name)
      const listed = e !== undefined && REPLICA_ROLES.has(e.role) && RUNNING_STATES.has(e.state)
      const text = `${m.name}: walsender on ${leader.name} '${states.join('+') || 'not connected'}', /cluster ${e === undefined ? 'absent' : `${e.role}/${e.state}`}`
      return { ok: states.includes('streaming') && listed, text }
    })
    return { settled: others.every((o) => o.ok), text: [`leader ${leader.name}`, ...others.map((o) => o.text)].join('; ') }
  }

  // ------------------------------------------------------------------ faults and operations

  /**
   * SIGKILL the member's postmaster only (its children exit by themselves; Patroni keeps running).
   * On the leader, Patroni keeps the leader key and restarts PostgreSQL in place (see the module
   * comment for what exactly happens). Resolves once the postmaster is gone; returns its pid.
   */
  async killPostmaster(member: PatroniMember | string): Promise<number> {
    const m = this.resolve(member)
    const shm = shmIdOf(m.dataDir)
    const pid = await killPostmasterOf(m.dataDir, false)
    if (pid === null) throw new Error(`killPostmaster(${m.name}): PostgreSQL is not running`)
    if (shm !== null) m.leakedShm.add(shm)
    return pid
  }

  /**
   * Node lost: SIGKILL Patroni and the postmaster with all its children. The leader key expires
   * after `ttl` (10 s) and another member takes over. Resolves once every process is gone.
   */
  async killMember(member: PatroniMember | string): Promise<void> {
    const m = this.resolve(member)
    await this.killMemberProcesses(m)
  }

  /** Gracefully stop a member's Patroni (it stops PostgreSQL first; a leader releases its key). */
  async stopMember(member: PatroniMember | string, timeoutMs = 30_000): Promise<void> {
    const m = this.resolve(member)
    await m.daemon?.stop(timeoutMs)
    if (serverPids(m.dataDir).length > 0) await this.killMemberProcesses(m)
  }

  /**
   * Start a member's Patroni again (after killMember/stopMember). It rejoins the cluster (with
   * pg_rewind when its timeline diverged). With `wait` (default true) resolves once it streams
   * from the leader (or is the leader itself).
   */
  async restartMember(member: PatroniMember | string, wait = true, timeoutMs = 90_000): Promise<void> {
    const m = this.resolve(member)
    if (m.daemon?.running === true) throw new Error(`restartMember(${m.name}): Patroni is still running`)
    // A postmaster we killed may linger as a zombie when nobody reaped it: Patroni (psutil) would
    // take it for a running postmaster. No live postmaster → the pid file is stale.
    removePidFileUnlessLive(m.dataDir)
    this.spawnPatroni(m)
    if (wait) await this.waitForStreaming([m], timeoutMs)
  }

  /** Starts a member that was left out at start (`initialMembers`): resolves once it streams from the leader. */
  async joinMember(member: PatroniMember | string, timeoutMs = 90_000): Promise<void> {
    const m = this.resolve(member)
    if (m.daemon !== null) throw new Error(`joinMember(${m.name}): it was started before (use restartMember)`)
    this.spawnPatroni(m)
    await this.waitForStreaming([m], timeoutMs)
  }

  /**
   * Planned switchover: `patronictl -c <cfg> switchover --leader <current> --candidate <to>
   * --force` (patroni 3.0.2 flags; `--leader` has the aliases --primary/--master), once `to`
   * streams from the leader and /cluster lists it as a running replica. Resolves when `to` is the
   * leader and writable. Does not wait for the old leader to stream again (use
   * {@link waitForStreaming}).
   */
  async switchover(to: PatroniMember | string, timeoutMs = 60_000): Promise<{ output: string }> {
    const target = this.resolve(to)
    const current = await this.waitForLeader(undefined, timeoutMs)
    if (current.name === target.name) throw new Error(`switchover: ${target.name} is already the leader`)
    // Patroni refuses a candidate that its member list does not show as a healthy replica yet.
    await this.waitForStreaming([target], timeoutMs)
    const output = await this.patronictl(['switchover', '--leader', current.name, '--candidate', target.name, '--force'])
    await waitFor(
      `${target.name} to become a writable leader after switchover`,
      timeoutMs,
      100,
      async () => {
        const l = await this.leader()
        return l?.name === target.name && (await this.isWritable(target))
      },
      () => `patronictl output:\n${output}\n${this.diagnostics()}`,
    )
    return { output }
  }

  /** Run `patronictl -c <config of a running member> <args>` as the postgres user; resolves with stdout + stderr. */
  async patronictl(args: string[], timeoutMs = 60_000): Promise<string> {
    const m = this.impls.find((x) => x.daemon?.running === true) ?? this.impls[0]!
    const r = await runPgTool(path.dirname(PATRONICTL), path.basename(PATRONICTL), ['-c', m.configFile, ...args], {
      cwd: this.baseDir,
      env: { HOME: this.baseDir },
      timeoutMs,
      secrets: [this.password, this.replicationPassword],
    })
    return `${r.stdout}${r.stderr}`.trim()
  }

  /** Compact state of every member for error messages: /cluster plus each log's tail. */
  diagnostics(lines = 8): string {
    return this.impls
      .map((m) => `${m.name} (patroni ${m.daemon?.running === true ? 'running' : 'down'}, postmaster ${String(postmasterPid(m.dataDir))}):\n${this.logTail(m, lines)}`)
      .join('\n')
  }

  // ------------------------------------------------------------------ teardown

  /** For destroy(): kill every member (Patroni and PostgreSQL), then the etcd if we started it. */
  protected async killAll(): Promise<void> {
    await Promise.all(this.impls.map((m) => this.killMemberProcesses(m).catch(() => undefined)))
    for (const m of this.impls) for (const id of m.leakedShm) removeShmIfUnused(id)
    if (this.ownsEtcd) await this.etcd.destroy()
  }

  /** For the exit handlers: SIGKILL every member's Patroni and PostgreSQL (etcd cleans up after itself). */
  protected killAllSync(): void {
    for (const m of this.impls) {
      const tool = m.daemon?.groupMembersButMain() ?? []
      for (const p of tool) signalQuiet(p, 'SIGKILL')
      const shm = shmIdOf(m.dataDir)
      if (shm !== null) m.leakedShm.add(shm)
      const server = serverPids(m.dataDir)
      for (const p of server) signalQuiet(p, 'SIGKILL')
      waitGoneSync([...tool, ...server], 2000)
      m.daemon?.killSync()
    }
    for (const m of this.impls) for (const id of m.leakedShm) removeShmIfUnused(id)
    // etcd registered its own exit cleanup when we started it.
  }

  // ------------------------------------------------------------------ internals

  /** @internal Bootstrap member 0, then start the others and wait until they stream. */
  async init(timeoutMs: number): Promise<void> {
    const [first, ...others] = this.impls
    if (first === undefined) throw new Error('a Patroni cluster needs at least one member')
    const rest = others.slice(0, Math.max(0, (this.options.initialMembers ?? this.impls.length) - 1))
    const deadline = Date.now() + timeoutMs
    this.spawnPatroni(first)
    const leader = await this.waitForLeader(undefined, timeoutMs)
    if (leader !== first) throw new Error(`expected ${first.name} to bootstrap, but ${leader.name} is leader`)
    for (const m of rest) this.spawnPatroni(m)
    await this.waitForStreaming([first, ...rest], Math.max(1000, deadline - Date.now()))
  }

  private spawnPatroni(m: MemberImpl): void {
    m.daemon = new Daemon({
      name: `patroni ${m.name}`,
      command: 'patroni',
      args: [m.configFile],
      logFile: m.logFile,
      cwd: m.dir,
      subreaper: true,
      env: { HOME: m.dir, PGPASSFILE: undefined, PGPASSWORD: undefined, PYTHONUNBUFFERED: '1' },
    })
    m.daemon.start()
  }

  /**
   * Kill in an order that leaves no zombie behind: Patroni first (so it cannot restart
   * PostgreSQL), then the postmaster and its children while the subreaper is still alive to reap
   * them, then whatever is left of the daemon's group.
   */
  private async killMemberProcesses(m: MemberImpl): Promise<void> {
    for (const p of m.daemon?.groupMembersButMain() ?? []) signalQuiet(p, 'SIGKILL')
    const shm = shmIdOf(m.dataDir)
    // Collected before the kill: afterwards serverPids() finds no live postmaster and says [].
    const pids = serverPids(m.dataDir)
    await killPostmasterOf(m.dataDir, true)
    if (shm !== null) m.leakedShm.add(shm)
    // Let the subreaper reap them before it is killed itself (then PID 1 would have to, which here
    // takes up to ~2 s, and meanwhile a zombie keeps postmaster.pid "alive").
    await waitReaped(pids)
    await m.daemon?.kill()
  }

  private writeConfig(m: MemberImpl): void {
    const o = this.options
    const params: Record<string, string | number> = {
      wal_log_hints: 'on',
      fsync: 'off',
      full_page_writes: 'on',
      wal_level: 'replica',
      hot_standby: 'on',
      max_connections: 100,
      max_wal_senders: 10,
      max_replication_slots: 10,
      wal_keep_size: '256MB',
      shared_buffers: '16MB',
      wal_receiver_status_interval: '1s',
      wal_retrieve_retry_interval: '500ms',
      jit: 'off',
      ...o.parameters,
    }
    const y = (v: string | number): string => (typeof v === 'number' ? String(v) : JSON.stringify(v))
    const lines = [
      `scope: ${this.scope}`,
      `namespace: /pgfp/`,
      `name: ${m.name}`,
      `log:`,
      `  level: INFO`,
      `  format: '%(asctime)s %(levelname)s: %(message)s'`,
      `restapi:`,
      `  listen: 127.0.0.1:${m.restPort}`,
      `  connect_address: 127.0.0.1:${m.restPort}`,
      `etcd3:`,
      `  host: ${this.etcd.hostPort}`,
      `bootstrap:`,
      `  dcs:`,
      `    ttl: 10`,
      `    loop_wait: 2`,
      `    retry_timeout: 4`,
      `    maximum_lag_on_failover: 1073741824`,
      `    synchronous_mode: ${o.synchronousMode === true ? 'true' : 'false'}`,
      `    postgresql:`,
      `      use_pg_rewind: true`,
      `      use_slots: true`,
      `      parameters:`,
      ...Object.entries(params).map(([k, v]) => `        ${k}: ${y(v)}`),
      `  initdb:`,
      `    - encoding: UTF8`,
      `    - locale: C`,
      `    - auth-local: trust`,
      `    - auth-host: scram-sha-256`,
      `postgresql:`,
      `  listen: 127.0.0.1:${m.port}`,
      `  connect_address: 127.0.0.1:${m.port}`,
      `  data_dir: ${JSON.stringify(m.dataDir)}`,
      `  bin_dir: ${JSON.stringify(findPgBinDir())}`,
      `  pgpass: ${JSON.stringify(path.join(m.dir, 'pgpass'))}`,
      `  authentication:`,
      `    superuser:`,
      `      username: postgres`,
      `      password: ${JSON.stringify(this.password)}`,
      `    replication:`,
      `      username: replicator`,
      `      password: ${JSON.stringify(this.replicationPassword)}`,
      `  parameters:`,
      `    unix_socket_directories: ${JSON.stringify(m.dir)}`,
      `  pg_hba:`,
      `    - local all all trust`,
      `    - host all all 127.0.0.1/32 scram-sha-256`,
      `    - host replication replicator 127.0.0.1/32 scram-sha-256`,
      `    - host replication postgres 127.0.0.1/32 scram-sha-256`,
      `watchdog:`,
      `  mode: off`,
      `tags:`,
      `  nofailover: false`,
      `  noloadbalance: false`,
      `  clonefrom: false`,
      `  nosync: false`,
      '',
    ]
    writeServerFile(m.configFile, lines.join('\n'))
  }

  private resolve(member: PatroniMember | string): MemberImpl {
    if (this.destroyed) throw new Error('Patroni cluster has been destroyed')
    return findNamed(this.impls, member, 'member')
  }
}

/**
 * Start a Patroni cluster: an etcd (unless `options.etcd`), member 0 bootstraps (initdb) and
 * becomes leader, the others clone it with pg_basebackup. Resolves when the leader is writable
 * and every other member streams from it. Installs `patroni` and `etcd-server` if needed.
 */
export async function startPatroni(options: PatroniOptions = {}): Promise<PatroniCluster> {
  await ensureDebianPackages(['patroni', 'etcd-server'])
  const n = options.members ?? 3
  if (!Number.isInteger(n) || n < 1) throw new Error(`invalid members: ${String(options.members)}`)
  const etcd = options.etcd ?? (await startEtcd())
  const ports: Array<{ pg: number; rest: number }> = []
  for (let i = 0; i < n; i++) ports.push({ pg: await freePort(), rest: await freePort() })
  let cluster: PatroniCluster
  try {
    cluster = new PatroniCluster(CONSTRUCT, etcd, options.etcd === undefined, options, ports)
  } catch (err) {
    if (options.etcd === undefined) await etcd.destroy()
    throw err
  }
  try {
    await cluster.init(options.startTimeoutMs ?? 120_000)
  } catch (err) {
    await cluster.destroy()
    throw err
  }
  return cluster
}
