import { PROBE_SQL } from '../../src/endpoint/role-probe.js'
import type { SimClock } from './clock.js'

/** What a simulated server answers: rows, or an error shaped like pg's DatabaseError. */
export type Answer = { readonly rows: Array<Record<string, unknown>>; readonly command: string } | { readonly error: Error }

/** The client side of one session, as the node sees it (implemented by the simulated client). */
export interface Peer {
  /** The connection is open: `session` is its server side. */
  opened(session: Session): void
  /** The connection attempt failed (refused, or rejected at startup with `error`). */
  refused(error: Error): void
  /** A statement's answer arrived. */
  answered(statementId: number, answer: Answer): void
  /** The server ended the session (FATAL `error`, or the socket died: `error` is the client-side error). */
  lost(error: Error): void
  /** A ParameterStatus message (in_hot_standby after a promotion). */
  parameterStatus(name: string, value: string): void
}

/** One statement on its way to a node. */
export interface Statement {
  readonly id: number
  readonly sql: string
  readonly values: readonly unknown[]
}

/** Why a read's answer is stale, by which rule (see World.readArrived). */
export interface Staleness {
  readonly rule: 'diverged' | 'branch' | 'detached' | 'behind'
  readonly invariant: string
  readonly detail: string
}

/** The ledger count: the one read the world judges for staleness. */
export const LEDGER_READ_RE = /^SELECT count\(\*\)::int AS n FROM ledger$/i

/** Server side of one connection. */
export class Session {
  readonly pid: number
  /** 'I' idle, 'T' in a transaction, 'E' in a failed transaction (PostgreSQL's ReadyForQuery status). */
  txStatus: 'I' | 'T' | 'E' = 'I'
  txReadOnly = false
  readonly txWrites: string[] = []
  readonly settings = new Map<string, string>()
  /** False once the session ended (either side). */
  alive = true
  /** Statements received and not answered yet (a frozen node holds them). */
  busy = 0
  /** Set when the client cut its socket: answers are dropped, statements already received still run. */
  clientGone = false

  constructor(
    readonly node: SimNode,
    readonly peer: Peer,
    pid: number,
    /** Sessions opened by the library's own monitoring (probes, watches), by application_name. */
    readonly monitoring: boolean,
  ) {
    this.pid = pid
  }
}

/** A commit seen by the world's ledger: which write, on which node, when, on which timeline. */
export interface Commit {
  readonly writeId: string
  readonly node: SimNode
  readonly at: number
  readonly timeline: number
}

/** The world a node lives in: the clock, the timeline registry and the ledger of commits. */
export interface NodeWorld {
  readonly clock: SimClock
  nextPid(): number
  committed(commit: Commit): void
  /** True when a standby on timeline `tl` holding `length` commits can follow a node on `upstreamTl`. */
  canFollow(tl: number, length: number, upstreamTl: number): boolean
  /** A new timeline forked from `parent` after `length` commits. */
  newTimeline(parent: number, length: number): number
  /** A read reached `node` now: the check, made when it runs, of whether its answer is stale in a way the pool should have prevented. */
  readArrived(node: SimNode): () => Staleness | null
  /** When the write `writeId` was committed on the primary that took it (undefined: unknown). */
  commitTime(writeId: string): number | undefined
  trace(line: string): void
}

/** The watch window (watchWindowSql): its check interval in seconds and its number of checks. */
const WINDOW_CTE_RE = /^WITH RECURSIVE promotion_wait[\s\S]*pg_sleep\(([\d.]+)\)[\s\S]*n < (\d+)/
const REPLAY_WAIT_RE = /pg_last_wal_replay_lsn\(\) < '([0-9a-fA-F]+\/[0-9a-fA-F]+)'::pg_lsn/
const WINDOW_RE = /interval '([\d.]+) seconds'/

/** Bytes of simulated WAL one commit takes. */
export const COMMIT_BYTES = 0x100

/** The LSN text of a history position. */
export function lsnOf(length: number): string {
  return `0/${(0x1000000 + length * COMMIT_BYTES).toString(16).toUpperCase()}`
}

function lengthOfLsn(lsn: string): number {
  const [, lo] = lsn.split('/')
  return Math.max(0, Math.floor((parseInt(lo!, 16) - 0x1000000) / COMMIT_BYTES))
}

function pgError(message: string, code: string, severity = 'ERROR'): Error {
  return Object.assign(new Error(message), { code, severity, name: 'error' })
}

/**
 * A simulated PostgreSQL server: up, down or frozen; primary or standby on a timeline; a history of
 * commits that standbys replicate; sessions that run one statement at a time. It runs the
 * statements the library sends (the role probe, the promotion watch, read-your-writes positions)
 * and the simulated applications' ledger writes and reads. Latencies come from the seeded clock.
 */
export class SimNode {
  state: 'up' | 'down' | 'frozen' = 'up'
  /** Simulated time since which this node has been down or frozen without a break (null while up). */
  unavailableSince: number | null = null
  role: 'primary' | 'standby'
  readOnly = false
  timeline = 1
  readonly history: string[] = []
  /** The node a standby replicates from. */
  upstream: SimNode | null = null
  /** False while the standby's WAL receiver cannot reach its upstream. */
  receiverUp = true
  /** Connection refusals at startup (53300 after a restart, 28P01 after a password rotation), or null. */
  refusal: { code: string; message: string } | null = null
  /** A proxy in front of the node holds each statement this long before the node runs it (PgBouncer queueing). */
  holdMs = 0
  readonly sessions = new Set<Session>()
  /** Statements and connects that arrived while frozen, run on thaw. */
  #frozen: Array<() => void> = []
  #replicating = false
  readonly #watchers = new Set<() => void>()
  readonly followers = new Set<SimNode>()

  constructor(
    readonly world: NodeWorld,
    readonly name: string,
    readonly host: string,
    readonly port: number,
    role: 'primary' | 'standby',
    readonly systemId: string,
  ) {
    this.role = role
  }

  get inRecovery(): boolean {
    return this.role === 'standby'
  }

  /** Writable as PostgreSQL would say: out of recovery and not read-only. */
  get writable(): boolean {
    return this.state === 'up' && this.role === 'primary' && !this.readOnly
  }

  // ---------------------------------------------------------------- the network side

  /** A client connects. */
  connect(peer: Peer, monitoring: boolean): void {
    this.#arrive(() => {
      if (this.state === 'down') return peer.refused(Object.assign(new Error(`connect ECONNREFUSED ${this.host}:${this.port}`), { code: 'ECONNREFUSED', errno: -111, syscall: 'connect' }))
      if (this.refusal) return peer.refused(pgError(this.refusal.message, this.refusal.code, 'FATAL'))
      const session = new Session(this, peer, this.world.nextPid(), monitoring)
      this.sessions.add(session)
      peer.opened(session)
    }, this.world.clock.between(0.2, 1.5))
  }

  /** A statement arrives on `session`. */
  receive(session: Session, statement: Statement): void {
    session.busy++
    const hold = this.holdMs
    // A proxy's queue is not the node: a held statement runs later even if its client went away.
    const delay = this.world.clock.between(0.05, 0.4) + hold
    const staleAtRun = LEDGER_READ_RE.test(statement.sql.trim()) ? this.world.readArrived(this) : null
    this.#arrive(() => this.#execute(session, statement, staleAtRun), delay)
  }

  /** The client closed or cut its socket. Statements the node already has still run (as in PostgreSQL). */
  clientClosed(session: Session): void {
    session.clientGone = true
    if (session.busy === 0) this.#end(session)
  }

  #arrive(fn: () => void, delay: number): void {
    this.world.clock.setTimeout(() => {
      if (this.state === 'frozen') this.#frozen.push(fn)
      else if (this.state === 'up') fn()
      else fn() // down: connects are refused; statements on dead sessions are dropped by #execute
    }, delay)
  }

  #answer(session: Session, statement: Statement, answer: Answer, after = this.world.clock.between(0.05, 1.5)): void {
    this.world.clock.setTimeout(() => {
      const deliver = (): void => {
        session.busy--
        if (!session.alive) return
        if (session.clientGone) {
          if (session.busy === 0) this.#end(session)
          return
        }
        session.peer.answered(statement.id, answer)
      }
      if (this.state === 'frozen') this.#frozen.push(deliver)
      else deliver()
    }, after)
  }

  #end(session: Session): void {
    if (!session.alive) return
    session.alive = false
    this.sessions.delete(session)
  }

  // ---------------------------------------------------------------- statements

  #execute(session: Session, st: Statement, staleAtRun: (() => Staleness | null) | null): void {
    if (!session.alive || this.state === 'down') {
      session.busy--
      return
    }
    const sql = st.sql.trim()
    if (sql === PROBE_SQL) return this.#answer(session, st, this.#probeRow())
    const window = WINDOW_CTE_RE.exec(sql)
    if (window) return this.#watch(session, st, Number(window[1]) * 1000 * Number(window[2]))
    if (REPLAY_WAIT_RE.test(sql)) return this.#replayWait(session, st, sql)
    if (sql === 'SELECT pg_is_in_recovery() AS r') return this.#answer(session, st, rows('SELECT', { r: this.inRecovery }))
    if (sql === 'SELECT pg_current_wal_insert_lsn()::text AS lsn') {
      if (this.inRecovery) return this.#answer(session, st, { error: pgError('recovery is in progress', '55000') })
      return this.#answer(session, st, rows('SELECT', { lsn: lsnOf(this.history.length) }))
    }
    if (sql === 'SELECT pg_last_wal_replay_lsn()::text AS lsn') return this.#answer(session, st, rows('SELECT', { lsn: this.inRecovery ? lsnOf(this.history.length) : null }))
    if (session.txStatus === 'E' && !/^(COMMIT|ROLLBACK)/i.test(sql)) {
      return this.#answer(session, st, { error: pgError('current transaction is aborted, commands ignored until end of transaction block', '25P02') })
    }
    if (/^BEGIN/i.test(sql)) {
      session.txStatus = 'T'
      session.txReadOnly = /READ ONLY/i.test(sql)
      return this.#answer(session, st, rows('BEGIN'))
    }
    if (/^(COMMIT|ROLLBACK)/i.test(sql)) {
      const commit = /^COMMIT/i.test(sql) && session.txStatus === 'T'
      if (commit) for (const id of session.txWrites) this.#commit(id)
      session.txWrites.length = 0
      session.txStatus = 'I'
      session.txReadOnly = false
      return this.#answer(session, st, rows(commit ? 'COMMIT' : 'ROLLBACK'))
    }
    if (/^SET app\.tenant = '([^']*)'$/i.test(sql)) {
      session.settings.set('app.tenant', /'([^']*)'/.exec(sql)![1]!)
      return this.#answer(session, st, rows('SET'))
    }
    if (/^SELECT current_setting\('app\.tenant', true\) AS tenant$/i.test(sql)) return this.#answer(session, st, rows('SELECT', { tenant: session.settings.get('app.tenant') ?? '' }))
    if (/^INSERT INTO ledger/i.test(sql)) {
      const readOnly = this.inRecovery || this.readOnly || session.txReadOnly
      if (readOnly) {
        if (session.txStatus === 'T') session.txStatus = 'E'
        return this.#answer(session, st, { error: pgError('cannot execute INSERT in a read-only transaction', '25006') })
      }
      const id = String(st.values[0])
      if (session.txStatus === 'T') session.txWrites.push(id)
      else this.#commit(id)
      return this.#answer(session, st, rows('INSERT'))
    }
    if (staleAtRun !== null) {
      // Judged where it ran, reported only if the answer reaches the application (one cut on its way is harmless).
      return this.#answer(session, st, rows('SELECT', { n: this.history.length, stale: staleAtRun() }))
    }
    if (/^SELECT 1/i.test(sql)) return this.#answer(session, st, rows('SELECT', { '?column?': 1 }))
    if (session.txStatus === 'T') session.txStatus = 'E'
    this.#answer(session, st, { error: pgError(`syntax error in simulated statement: ${sql.slice(0, 40)}`, '42601') })
  }

  #commit(writeId: string): void {
    this.history.push(writeId)
    this.world.committed({ writeId, node: this, at: this.world.clock.now(), timeline: this.timeline })
    for (const f of this.followers) f.replicateSoon()
  }

  /** True while this standby's WAL receiver streams: its upstream is up and it can follow it. */
  get receiving(): boolean {
    const up = this.upstream
    return up !== null && this.receiverUp && up.state !== 'down' && this.world.canFollow(this.timeline, this.history.length, up.timeline)
  }

  #probeRow(): Answer {
    return rows('SELECT', {
      in_recovery: this.inRecovery,
      read_only: this.inRecovery || this.readOnly,
      system_id: this.systemId,
      timeline: this.timeline,
      receiving: !this.inRecovery || this.receiving,
      // The pool's role may read pg_stat_wal_receiver here (the tests' superuser).
      received_timeline: this.inRecovery && this.receiving ? this.timeline : null,
      lsn: lsnOf(this.history.length),
      lag_ms: this.#replayLagMs(),
      server_version: 150000,
    })
  }

  /**
   * What PostgreSQL reports as `lag_ms` (see PROBE_SQL): on a standby whose WAL receiver does not
   * stream, the time since the last transaction it replayed was committed on the primary (0 if it
   * has none); otherwise 0 (simulated replication replays what it receives at once).
   */
  #replayLagMs(): number {
    if (!this.inRecovery || this.receiving) return 0
    const last = this.history[this.history.length - 1]
    const committedAt = last === undefined ? undefined : this.world.commitTime(last)
    return committedAt === undefined ? 0 : this.world.clock.now() - committedAt
  }

  /** A watch window: returns the probe row when the node leaves recovery or the window ends. */
  #watch(session: Session, st: Statement, windowMs: number): void {
    if (!this.inRecovery) return this.#answer(session, st, this.#probeRow(), this.world.clock.between(0.1, 5))
    let done = false
    const finish = (): void => {
      if (done) return
      done = true
      this.#watchers.delete(finish)
      // The probe columns are evaluated after the wait, when the answer is sent.
      this.#answer(session, st, this.#probeRow())
      if (!this.inRecovery) session.peer.parameterStatus('in_hot_standby', 'off')
    }
    this.#watchers.add(finish)
    this.world.clock.setTimeout(finish, windowMs)
  }

  #replayWait(session: Session, st: Statement, sql: string): void {
    const target = lengthOfLsn(REPLAY_WAIT_RE.exec(sql)![1]!)
    const windowMs = Number(WINDOW_RE.exec(sql)![1]) * 1000
    const deadline = this.world.clock.now() + windowMs
    const check = (): void => {
      if (!session.alive) return
      if (this.history.length >= target || this.world.clock.now() >= deadline || !this.inRecovery) return this.#answer(session, st, rows('DO'))
      this.world.clock.setTimeout(check, 2)
    }
    check()
  }

  // ---------------------------------------------------------------- replication

  /** Follow `upstream` as a standby. */
  follow(upstream: SimNode | null): void {
    this.upstream?.followers.delete(this)
    this.upstream = upstream
    upstream?.followers.add(this)
    this.replicateSoon()
  }

  /** Schedules one replication step (coalesced). */
  replicateSoon(): void {
    if (this.#replicating || this.role !== 'standby' || this.upstream === null) return
    this.#replicating = true
    this.world.clock.setTimeout(() => {
      this.#replicating = false
      this.#replicate()
    }, this.world.clock.between(0.5, 4))
  }

  #replicate(): void {
    const up = this.upstream
    if (up === null || this.role !== 'standby' || !this.receiverUp || this.state !== 'up' || up.state !== 'up') return
    if (!this.world.canFollow(this.timeline, this.history.length, up.timeline)) return
    if (up.history.length > this.history.length) {
      for (let i = this.history.length; i < up.history.length; i++) this.history.push(up.history[i]!)
    }
    this.timeline = up.timeline
  }

  // ---------------------------------------------------------------- faults

  /** `pg_ctl promote`: a standby leaves recovery on a new timeline. The old primary is untouched. */
  promote(): void {
    if (this.role !== 'standby') return
    this.follow(null)
    this.role = 'primary'
    this.receiverUp = true
    this.detachedAt = null
    this.timeline = this.world.newTimeline(this.timeline, this.history.length)
    this.world.trace(`${this.name} promoted (timeline ${this.timeline}, ${this.history.length} commits)`)
    for (const watcher of [...this.#watchers]) this.world.clock.setTimeout(watcher, this.world.clock.between(0.5, 5))
  }

  /** The postmaster dies (kill -9) or stops: every session is lost, connects are refused. */
  kill(): void {
    if (this.state === 'up') this.unavailableSince = this.world.clock.now()
    this.state = 'down'
    this.#frozen = []
    for (const s of [...this.sessions]) this.#lose(s, Object.assign(new Error('Connection terminated unexpectedly'), {}))
    this.#watchers.clear()
  }

  /** The node starts again (same role, timeline and history: a crashed primary restarted in place). */
  start(): void {
    if (this.state !== 'down') return
    this.state = 'up'
    this.unavailableSince = null
    this.replicateSoon()
    for (const f of this.followers) f.replicateSoon()
  }

  /** SIGSTOP: nothing is answered, connects hang. */
  freeze(): void {
    if (this.state !== 'up') return
    this.state = 'frozen'
    this.unavailableSince = this.world.clock.now()
  }

  /** SIGCONT: what arrived meanwhile runs now. */
  thaw(): void {
    if (this.state !== 'frozen') return
    this.state = 'up'
    this.unavailableSince = null
    const queued = this.#frozen
    this.#frozen = []
    for (const fn of queued) fn()
    this.replicateSoon()
    // Its standbys' WAL receivers reconnect as they would after a restart (they learn a new
    // timeline then, even with nothing new committed).
    for (const f of this.followers) f.replicateSoon()
  }

  /** pg_terminate_backend of one session (FATAL 57P01). */
  terminate(session: Session): void {
    this.#lose(session, pgError('terminating connection due to administrator command', '57P01', 'FATAL'))
  }

  /** Simulated time its WAL receiver stopped streaming (detachStandby), or null. */
  detachedAt: number | null = null
  /** How long this standby has been more commits behind the primary than the lag limit allows, while the primary answered (ms). */
  behindSeenMs = 0
  /**
   * Simulated time since which this standby holds commits its upstream's timeline never got (it
   * rejoined without pg_rewind, or had replayed past the point where another node was promoted), or null.
   */
  divergedSince: number | null = null
  /**
   * How long this standby has been diverged while the pool could see a primary on a newer timeline (a
   * member, answering): only then can its probes learn that this one cannot follow the cluster.
   */
  divergedSeenMs = 0
  /**
   * How long this standby has streamed from a primary on an older timeline than one the pool could
   * see (a member, answering) that holds commits this standby lacks: it follows a branch the cluster
   * left (a promotion by hand that nobody repointed it after), and will never get them.
   */
  branchSeenMs = 0

  get diverged(): boolean {
    return this.divergedSince !== null
  }

  /** Marks this standby diverged if it can no longer follow its upstream. */
  checkDiverged(): void {
    const up = this.upstream
    if (this.role === 'standby' && up !== null && this.divergedSince === null && !this.world.canFollow(this.timeline, this.history.length, up.timeline)) this.divergedSince = this.world.clock.now()
  }

  /** The old primary rejoins as a standby of `upstream` (after pg_rewind when `rewind`: its extra commits are discarded). */
  rejoinAsStandby(upstream: SimNode, rewind: boolean): void {
    this.kill()
    this.role = 'standby'
    this.readOnly = false
    this.divergedSince = null
    if (rewind) {
      // Keep only what the new primary has too (the common prefix).
      let common = 0
      while (common < this.history.length && common < upstream.history.length && this.history[common] === upstream.history[common]) common++
      this.history.length = common
      this.timeline = upstream.timeline
    }
    this.state = 'up'
    this.unavailableSince = null
    this.follow(upstream)
    this.checkDiverged()
  }

  #lose(session: Session, error: Error): void {
    if (!session.alive) return
    this.#end(session)
    session.peer.lost(error)
  }
}

function rows(command: string, row?: Record<string, unknown>): Answer {
  return { rows: row ? [row] : [], command }
}
