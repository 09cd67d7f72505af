/**
 * Promotion-watch mechanisms, measured on real PostgreSQL 15 standbys.
 *
 *   node --import tsx bench/watch-mechanisms.ts [--instances 20] [--cpu-seconds 10] [--promotions 4] [--only key,key]
 *
 * The question: how can an application instance notice the promotion of a standby within 20 ms
 * while idle, with at most one monitoring connection per node and at most 0.5 ms of standby CPU per
 * second? PostgreSQL pushes nothing to an idle session at promotion (in_hot_standby=off is reported
 * only when the session next completes a statement; LISTEN is refused on a standby), so every
 * mechanism waits or polls somewhere. For each mechanism the bench
 *
 * 1. starts `--instances` simulated application instances against the standby, at random phases.
 *    An instance is what one pool opens there: the watch plus the health probe every 2 s (PROBE_SQL
 *    from src/endpoint/role-probe.ts), on one session or two, as a plain LOGIN role without any
 *    privilege (a REPLICATION role only for the replication-stream mechanism);
 * 2. measures the CPU of those instances' standby backends over `--cpu-seconds` from
 *    /proc/<pid>/schedstat (ns; the main number) and /proc/<pid>/stat utime+stime (10 ms ticks; a
 *    coarse cross-check); also the whole standby minus an idle baseline, and the bench's own CPU
 *    (the application side);
 * 3. with ~200 commits/s on the primary (so every fresh snapshot gets a newer xmin), samples
 *    `pg_stat_activity.backend_xmin` of the instances every ~10 ms: the longest time one session
 *    keeps the same xmin is how long it holds a snapshot (what hot_standby_feedback forwards to the
 *    primary's vacuum, and what replay of a conflicting cleanup record waits for when it is off).
 *    The instances' CPU under that write load is recorded too;
 * 4. fails over `--promotions` times with fresh instances each time: the primary is shut down
 *    (`pg_ctl stop -m fast`: its sessions and WAL stream close), 300 ms later the standby is promoted
 *    with `pg_promote(false)`; afterwards the old primary is rewound and re-attached as the new
 *    standby (roles alternate). Adaptive mechanisms are also measured with the primary frozen
 *    (SIGSTOP: a lost host whose sockets stay open; promoted 4 s later, as an HA manager would only
 *    after a timeout) and with the primary left running (a promotion behind a healthy primary's
 *    back). Each instance's notice is timed from the server-side clock_timestamp() at which a tight
 *    poller on another session (back-to-back `SELECT pg_is_in_recovery()`, reniced to -10) first
 *    saw false; the gap to its previous poll is reported as the reference's resolution.
 *
 * Preflight facts (evaluation order, unprivileged role, COMMIT in DO, per-check and per-probe costs
 * without any sleep) and the platform's cost of one bare timer wakeup (a Python sleep loop, no
 * PostgreSQL) are measured too. It prints a report and writes bench/WATCH.md (keeping up to four
 * earlier runs in its run log).
 */
import { spawnSync } from 'node:child_process'
import { existsSync, readFileSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import { PROBE_SQL } from '../src/endpoint/role-probe.js'

/**
 * The watch statement the pool ran before one session per node (commit e08c75b): a DO block that
 * loops on the server until the node leaves recovery or the window ends. Kept here, as it was, so
 * the comparison with what replaced it can be measured again.
 */
function legacyDoBlockWatchSql(windowMs: number, checkMs: number): string {
  const window = Math.max(0.01, windowMs / 1000).toFixed(3)
  const check = Math.max(0.001, checkMs / 1000).toFixed(3)
  return `DO $pgfp$ DECLARE deadline timestamptz := clock_timestamp() + interval '${window} seconds';
BEGIN
  WHILE pg_is_in_recovery() AND clock_timestamp() < deadline LOOP PERFORM pg_sleep(${check}); END LOOP;
END $pgfp$`
}
import { type Cluster, type ClusterNode, startCluster } from '../test/support/cluster.js'
import { sleep } from '../test/support/wait.js'

// ------------------------------------------------------------------------------------- settings

function arg(name: string, fallback: string): string {
  const i = process.argv.indexOf(`--${name}`)
  return i >= 0 && process.argv[i + 1] !== undefined ? process.argv[i + 1]! : fallback
}

const INSTANCES = Number(arg('instances', '20'))
const CPU_SECONDS = Number(arg('cpu-seconds', '10'))
const PROMOTIONS = Number(arg('promotions', '4'))
const ONLY = arg('only', '')
  .split(',')
  .map((s) => s.trim())
  .filter(Boolean)
const SNAPSHOT_SECONDS = 5
const PROBE_EVERY_MS = 2_000
/** How long an adaptive instance waits for the primary's probe before it doubts the primary. */
const PRIMARY_PROBE_TIMEOUT_MS = 1_000
/** Freeze → promote: an HA manager promotes only after its own timeout; the probe deadline is shorter. */
const FREEZE_BEFORE_PROMOTE_MS = 4_000
const STOP_BEFORE_PROMOTE_MS = 300
/** Targets from the brief. */
const TARGET_CPU_MS_PER_S = 0.5
const TARGET_NOTICE_MS = 20

const HERE = path.dirname(fileURLToPath(import.meta.url))
const OUT = path.join(HERE, 'WATCH.md')

const WATCHER = { user: 'pgfp_watcher', password: 'watcher-pw' }
const REPLICATOR = { user: 'pgfp_replicator', password: 'replicator-pw' }

// ------------------------------------------------------------------------------------- the SQL

/** The probe columns of PROBE_SQL (everything after its leading SELECT), to append to another query. */
const PROBE_COLUMNS = PROBE_SQL.replace(/^SELECT\s+/, '')

const sec = (ms: number): string => (ms / 1000).toFixed(3)

/** Candidate 2: the sleep inside the WHILE condition, one simple expression per check (no SPI). */
function doConditionSql(windowMs: number, checkMs: number, commitEachCheck: boolean): string {
  return `DO $pgfp$ DECLARE deadline timestamptz := clock_timestamp() + interval '${sec(windowMs)} seconds';
BEGIN
  WHILE pg_is_in_recovery() AND clock_timestamp() < deadline AND pg_sleep(${sec(checkMs)}) IS NOT NULL LOOP${commitEachCheck ? ' COMMIT;' : ''} END LOOP;
END $pgfp$`
}

/**
 * Candidate 3: one SELECT. The recursive term sleeps, then checks; it stops after the first check
 * that finds the node out of recovery or after `windowMs / checkMs` checks. The probe columns are
 * the outer query's target list, computed only once its FROM item (the aggregate over the whole
 * wait) has produced its row, i.e. after the wait; their scalar subqueries are lazy InitPlans.
 */
function recursiveWaitSql(windowMs: number, checkMs: number): string {
  const checks = Math.max(1, Math.round(windowMs / checkMs))
  return `WITH RECURSIVE promotion_wait(n, standby) AS (
    SELECT 0, pg_is_in_recovery()
  UNION ALL
    SELECT n + 1, pg_sleep(${sec(checkMs)}) IS NOT NULL AND pg_is_in_recovery()
    FROM promotion_wait WHERE standby AND n < ${checks}
)
SELECT w.checks, ${PROBE_COLUMNS}
FROM (SELECT max(n) AS checks FROM promotion_wait) AS w`
}

/**
 * Adaptive on a server-side signal: checks every `slowMs` while a WAL receiver process exists
 * (its pid is visible to any role; its status is not), every `fastMs` once it is gone. The window
 * is bounded by time. The function is called in an expression so that it runs at every check: as
 * a FROM item (`FROM pg_stat_wal_receiver`) its result would be computed once and replayed on
 * every rescan, since its (empty) arguments never change.
 */
function receiverAdaptiveSql(windowMs: number, slowMs: number, fastMs: number): string {
  return `WITH RECURSIVE promotion_wait(n, standby) AS (
    SELECT 0, pg_is_in_recovery()
  UNION ALL
    SELECT n + 1, pg_sleep(CASE WHEN (pg_stat_get_wal_receiver()).pid IS NOT NULL THEN ${sec(slowMs)} ELSE ${sec(fastMs)} END) IS NOT NULL
      AND pg_is_in_recovery()
    FROM promotion_wait WHERE standby AND clock_timestamp() < statement_timestamp() + interval '${sec(windowMs)} seconds'
)
SELECT w.checks, ${PROBE_COLUMNS}
FROM (SELECT max(n) AS checks FROM promotion_wait) AS w`
}

/**
 * Candidate 5: the same wait without recursion: generate_series yields one row per check; each row
 * checks first and sleeps only while still in recovery; LIMIT 1 stops at the first row that finds
 * the node promoted.
 */
function seriesWaitSql(windowMs: number, checkMs: number): string {
  const checks = Math.max(1, Math.round(windowMs / checkMs))
  return `SELECT w.promoted, ${PROBE_COLUMNS}
FROM (SELECT count(*) AS promoted FROM (
  SELECT FROM generate_series(1, ${checks}) WHERE NOT pg_is_in_recovery() OR pg_sleep(${sec(checkMs)}) IS NULL LIMIT 1) AS s) AS w`
}

/** Reference: the same wakeups with no check at all (what sleeping alone costs a backend). */
function sleepOnlySql(windowMs: number, checkMs: number): string {
  return `SELECT count(*) FROM generate_series(1, ${Math.round(windowMs / checkMs)}) WHERE pg_sleep(${sec(checkMs)}) IS NOT NULL`
}

// ------------------------------------------------------------------------------------- /proc

function schedNs(pid: number): number | null {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0])
  } catch {
    return null
  }
}

const TICK_MS = 10 // USER_HZ = 100 on Linux

function statTicks(pid: number): number | null {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8')
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ') // fields from #3 (state) on
    return Number(f[11]) + Number(f[12]) // #14 utime, #15 stime
  } catch {
    return null
  }
}

interface CpuSnapshot {
  readonly at: number
  readonly sched: Map<number, number>
  readonly ticks: Map<number, number>
  readonly client: NodeJS.CpuUsage
}

function cpuSnapshot(pids: readonly number[]): CpuSnapshot {
  const sched = new Map<number, number>()
  const ticks = new Map<number, number>()
  for (const pid of pids) {
    const a = schedNs(pid)
    const b = statTicks(pid)
    if (a !== null) sched.set(pid, a)
    if (b !== null) ticks.set(pid, b)
  }
  return { at: performance.now(), sched, ticks, client: process.cpuUsage() }
}

/** CPU used between two snapshots in ms, counting only pids in `keep` (default: all) present in both. */
function cpuDelta(a: CpuSnapshot, b: CpuSnapshot, keep?: Set<number>): { schedMs: number; tickMs: number; clientMs: number; seconds: number } {
  let ns = 0
  let ticks = 0
  for (const [pid, v] of b.sched) {
    const before = a.sched.get(pid)
    if (before !== undefined && (!keep || keep.has(pid))) ns += v - before
  }
  for (const [pid, v] of b.ticks) {
    const before = a.ticks.get(pid)
    if (before !== undefined && (!keep || keep.has(pid))) ticks += v - before
  }
  const clientMs = (b.client.user - a.client.user + b.client.system - a.client.system) / 1000
  return { schedMs: ns / 1e6, tickMs: ticks * TICK_MS, clientMs, seconds: (b.at - a.at) / 1000 }
}

/** CPU of one bare timer wakeup on this machine: a Python loop sleeping `ms`, no PostgreSQL (µs). */
function platformWakeupUs(ms: number): number | null {
  const code = `import time
def s(): return int(open('/proc/self/schedstat').read().split()[0])
n = ${Math.round(3000 / ms)}
a = s()
for _ in range(n): time.sleep(${ms / 1000})
print((s() - a) / n / 1000)`
  const r = spawnSync('python3', ['-c', code], { encoding: 'utf8', timeout: 20_000 })
  const v = Number(r.stdout?.trim())
  return r.status === 0 && Number.isFinite(v) ? v : null
}

/** Wall-clock time in ms with sub-ms resolution (the clock PostgreSQL's clock_timestamp() reads). */
const wallNow = (): number => performance.timeOrigin + performance.now()

// ------------------------------------------------------------------------------------- sessions

type Credentials = { user: string; password: string }

interface Session {
  readonly client: pg.Client
  readonly pid: number
}

async function openSession(node: ClusterNode, creds: Credentials, name: string, extra: Record<string, unknown> = {}): Promise<Session> {
  const client = new pg.Client({ ...node.config, ...creds, application_name: name, connectionTimeoutMillis: 10_000, ...extra } as pg.ClientConfig)
  client.on('error', () => undefined)
  await client.connect()
  return { client, pid: (client as unknown as { processID: number }).processID }
}

function connectionOf(client: pg.Client): NodeJS.EventEmitter {
  return (client as unknown as { connection: NodeJS.EventEmitter }).connection
}

async function endQuietly(client: pg.Client): Promise<void> {
  await Promise.race([client.end().catch(() => undefined), sleep(1000)])
}

/** Calls `onNotice` each time the session reports in_hot_standby=off (the caller keeps the first). */
function watchParameterStatus(client: pg.Client, onNotice: () => void): void {
  connectionOf(client).on('parameterStatus', (m: { parameterName: string; parameterValue: string }) => {
    if (m.parameterName === 'in_hot_standby' && m.parameterValue === 'off') onNotice()
  })
}

const PROBE_PREPARED = { name: 'pgfp_probe', text: PROBE_SQL }

// ------------------------------------------------------------------------------------- instances

/** One simulated application instance: its standby sessions and how to stop them. */
interface Instance {
  /** Backend pids on the standby (what the CPU columns count). */
  readonly pids: number[]
  /** Server-side waits completed and their total client-side duration; checks reported by the rows. */
  readonly rounds: { count: number; totalMs: number; serverChecks: number }
  /** The row the combined statement (or the probe after a DO block) returned at the promotion. */
  noticeRow: Record<string, unknown> | null
  stop(): Promise<void>
}

interface StartContext {
  readonly standby: ClusterNode
  readonly primary: ClusterNode
  readonly phaseMs: number
  readonly onNotice: (at: number) => void
}

type Scenario = 'stop' | 'freeze' | 'alive'

interface Mechanism {
  readonly key: string
  readonly label: string
  /** The candidate number in the brief (1-5; 'ref' for a reference row). */
  readonly candidate: string
  /** Check interval shown in the table. */
  readonly check: string
  readonly windowMs: number | null
  /** Connections this mechanism keeps open per standby per instance (watch + health probe). */
  readonly connections: number
  /** Timer or socket wakeups per second per instance on the standby while idle (by construction). */
  readonly wakeupsPerS: number
  readonly sql: string
  readonly notes: string
  /** Whether it is timed at promotions at all (reference rows are not). */
  readonly watches: boolean
  /** Failover scenarios its promotions cycle through. */
  readonly scenarios: Scenario[]
  start(ctx: StartContext): Promise<Instance>
}

interface LoopOptions {
  readonly session: Session
  readonly ctx: StartContext
  /** One round; returns the row that shows the node promoted, if it saw one itself. */
  readonly round: (instance: Instance) => Promise<Record<string, unknown> | null>
  readonly extraPids?: number[]
  readonly onStop?: () => Promise<void> | void
  /** Keep looping after a failed round (a cancelled statement) instead of ending. */
  readonly retryOnError?: () => boolean
}

/** Runs `round` back to back on one session until stopped or the promotion is noticed. */
function loopInstance(opts: LoopOptions): Instance {
  let stopped = false
  let noticed = false
  const notice = (): void => {
    if (noticed) return
    noticed = true
    opts.ctx.onNotice(wallNow())
  }
  watchParameterStatus(opts.session.client, notice)
  const instance: Instance = {
    pids: [opts.session.pid, ...(opts.extraPids ?? [])],
    rounds: { count: 0, totalMs: 0, serverChecks: 0 },
    noticeRow: null,
    async stop() {
      stopped = true
      await opts.onStop?.()
      await endQuietly(opts.session.client)
    },
  }
  void (async () => {
    await sleep(opts.ctx.phaseMs)
    while (!stopped && !noticed) {
      const started = performance.now()
      try {
        const row = await opts.round(instance)
        if (row) {
          instance.noticeRow ??= row
          notice()
        }
      } catch {
        if (stopped || !opts.retryOnError?.()) return // closed (stop) or the node went away
        continue
      }
      instance.rounds.count++
      instance.rounds.totalMs += performance.now() - started
    }
  })()
  return instance
}

/** Runs PROBE_SQL every 2 s on `s` from `phaseMs` on; returns a stop function. */
function probeEvery(s: Session, phaseMs: number, query: pg.QueryConfig | string): () => void {
  let timer: NodeJS.Timeout | undefined
  let stopped = false
  const next = (delay: number): void => {
    timer = setTimeout(() => {
      if (stopped) return
      s.client.query(query).then(
        () => next(PROBE_EVERY_MS),
        () => undefined,
      )
    }, delay)
  }
  next(phaseMs % PROBE_EVERY_MS)
  return () => {
    stopped = true
    clearTimeout(timer)
  }
}

const FAILOVER: Scenario[] = ['stop']
const ALL_SCENARIOS: Scenario[] = ['stop', 'freeze', 'alive']

/** Today's structure: a watch session running a DO block, plus a monitor session probing every 2 s. */
function twoSessionDo(key: string, label: string, checkMs: number, notes: string): Mechanism {
  const sql = legacyDoBlockWatchSql(1_000, checkMs)
  return {
    key,
    label,
    candidate: '1',
    check: `${checkMs} ms`,
    windowMs: 1_000,
    connections: 2,
    wakeupsPerS: 1000 / checkMs + 1 + 0.5,
    sql: `-- watch session, back to back (the DO block before e08c75b, legacyDoBlockWatchSql(1000, ${checkMs})):\n${sql}\n-- monitor session, every 2 s (simple protocol, as today):\n${PROBE_SQL}`,
    notes,
    watches: true,
    scenarios: FAILOVER,
    async start(ctx) {
      const watch = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key} watch`)
      const monitor = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key} monitor`)
      const stopProbe = probeEvery(monitor, ctx.phaseMs, PROBE_SQL)
      return loopInstance({
        session: watch,
        ctx,
        extraPids: [monitor.pid],
        onStop: async () => {
          stopProbe()
          await endQuietly(monitor.client)
        },
        round: async () => {
          await watch.client.query(sql)
          return null // the ParameterStatus in_hot_standby=off that precedes ReadyForQuery is the notice
        },
      })
    },
  }
}

/** One session: a DO block per window, then the health probe (prepared) as its own statement. */
function oneSessionDo(key: string, label: string, candidate: string, checkMs: number, windowMs: number, commit: boolean, notes: string): Mechanism {
  const sql = doConditionSql(windowMs, checkMs, commit)
  return {
    key,
    label,
    candidate,
    check: `${checkMs} ms`,
    windowMs,
    connections: 1,
    wakeupsPerS: 1000 / checkMs + 1000 / windowMs,
    sql: `${sql};\n-- then, on the same session after each window (prepared once):\n${PROBE_SQL}`,
    notes,
    watches: true,
    scenarios: FAILOVER,
    async start(ctx) {
      const s = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key}`)
      return loopInstance({
        session: s,
        ctx,
        round: async () => {
          await s.client.query(sql)
          const { rows } = await s.client.query<Record<string, unknown>>(PROBE_PREPARED)
          return rows[0]?.['in_recovery'] === false ? rows[0] : null
        },
      })
    },
  }
}

/** One session, one statement per window: the wait and the probe row together. */
function oneStatement(key: string, label: string, candidate: string, checkMs: number, windowMs: number, sql: string, prepared: boolean, notes: string): Mechanism {
  return {
    key,
    label,
    candidate,
    check: `${checkMs} ms`,
    windowMs,
    connections: 1,
    wakeupsPerS: 1000 / checkMs + 1000 / windowMs,
    sql: prepared ? `-- prepared once per session (a named statement), executed back to back:\n${sql}` : `-- simple protocol, back to back:\n${sql}`,
    notes,
    watches: true,
    scenarios: FAILOVER,
    async start(ctx) {
      const s = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key}`)
      const config = prepared ? { name: `pgfp_watch_${key.replace(/\W/g, '_')}`, text: sql } : { text: sql }
      return loopInstance({
        session: s,
        ctx,
        round: async (inst) => {
          const { rows } = await s.client.query<Record<string, unknown>>(config)
          const row = rows[0]
          inst.rounds.serverChecks += Number(row?.['checks'] ?? 0)
          return row?.['in_recovery'] === false ? row : null
        },
      })
    },
  }
}

/** Reference rows: no watch (probe alone), or wakeups alone (no check, no probe). */
function reference(key: string, label: string, wakeupsPerS: number, sql: string, notes: string, mode: 'probe' | 'sleep'): Mechanism {
  return {
    key,
    label,
    candidate: 'ref',
    check: mode === 'probe' ? '2 s' : '15 ms',
    windowMs: mode === 'probe' ? null : 2_000,
    connections: 1,
    wakeupsPerS,
    sql,
    notes,
    watches: false,
    scenarios: [],
    async start(ctx) {
      const s = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key}`)
      const config = { name: `pgfp_ref_${key.replace(/\W/g, '_')}`, text: sql }
      return loopInstance({
        session: s,
        ctx,
        round: async () => {
          await s.client.query(config)
          if (mode === 'probe') await sleep(PROBE_EVERY_MS)
          return null
        },
      })
    },
  }
}

/** Candidate 4: client-side polling with an empty query; the health probe replaces a poll every 2 s. */
function emptyQueryPoll(key: string, intervalMs: number): Mechanism {
  return {
    key,
    label: `empty query \`;\` from the client`,
    candidate: '4',
    check: `${intervalMs} ms`,
    windowMs: null,
    connections: 1,
    wakeupsPerS: 1000 / intervalMs,
    sql: `;   -- every ${intervalMs} ms (fixed rate); the prepared PROBE_SQL instead of it every 2 s`,
    notes: 'the ParameterStatus in_hot_standby=off arrives with the first poll after the promotion; no statement runs between polls',
    watches: true,
    scenarios: FAILOVER,
    async start(ctx) {
      const s = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key}`)
      let next = 0
      let nextProbe = 0
      return loopInstance({
        session: s,
        ctx: { ...ctx, phaseMs: ctx.phaseMs % intervalMs },
        round: async () => {
          const now = performance.now()
          if (next === 0) {
            next = now
            nextProbe = now + (ctx.phaseMs % PROBE_EVERY_MS)
          }
          if (now >= nextProbe) {
            nextProbe += PROBE_EVERY_MS
            await s.client.query(PROBE_PREPARED)
          } else {
            await s.client.query(';')
          }
          next += intervalMs
          const wait = next - performance.now()
          if (wait > 0) await sleep(wait)
          else next = performance.now() // fell behind: no burst
          return null
        },
      })
    },
  }
}

/**
 * Candidate 5: a physical replication connection to the standby (a cascading walsender), streaming
 * from its current position. At promotion the walsender finds its timeline historic and ends the
 * stream with CopyDone. Needs a REPLICATION role, a pg_hba `replication` line and a max_wal_senders
 * slot per instance; it receives every WAL byte the standby receives; it cannot run SQL while
 * streaming, so the health probe needs a second session.
 */
function replicationStream(): Mechanism {
  return {
    key: 'replication',
    label: 'physical replication stream (cascading walsender) + probe session',
    candidate: '5',
    check: 'event',
    windowMs: null,
    connections: 2,
    wakeupsPerS: 0.5,
    sql: `-- connection 1 (replication=true, a role WITH REPLICATION):\nIDENTIFY_SYSTEM;\nSTART_REPLICATION PHYSICAL <xlogpos> TIMELINE <timeline>;  -- CopyDone at promotion; a standby status reply every 10 s\n-- connection 2: the prepared PROBE_SQL every 2 s`,
    notes: 'event-driven, no periodic check; every WAL flush on the standby wakes every instance\'s walsender, which sends that WAL to the client',
    watches: true,
    scenarios: FAILOVER,
    async start(ctx) {
      const rep = await openSession(ctx.standby, REPLICATOR, 'pgfp-bench replication', { replication: 'true' })
      const probeSession = await openSession(ctx.standby, WATCHER, 'pgfp-bench replication probe')
      const { rows } = await rep.client.query<{ timeline: number; xlogpos: string }>('IDENTIFY_SYSTEM')
      const id = rows[0]!
      let noticed = false
      let stopped = false
      const connection = connectionOf(rep.client) as NodeJS.EventEmitter & { sendCopyFromChunk(b: Buffer): void }
      connection.on('copyDone', () => {
        if (noticed || stopped) return
        noticed = true
        ctx.onNotice(wallNow())
      })
      const noop = (): void => undefined
      rep.client.query({
        submit(c: { query(text: string): void }) {
          c.query(`START_REPLICATION PHYSICAL ${id.xlogpos} TIMELINE ${id.timeline}`)
        },
        handleCopyData: noop,
        handleReadyForQuery: noop,
        handleError: noop,
        handleCommandComplete: noop,
        handleRowDescription: noop,
        handleDataRow: noop,
        handleEmptyQuery: noop,
      } as unknown as pg.QueryConfig)
      // Standby status update ('r'): without one wal_sender_timeout would close the stream.
      const reply = setInterval(() => {
        const b = Buffer.alloc(34)
        b.write('r', 0)
        b.writeBigInt64BE(BigInt(Date.now() - 946_684_800_000) * 1000n, 25)
        try {
          connection.sendCopyFromChunk(b)
        } catch {
          // closed
        }
      }, 10_000)
      const stopProbe = probeEvery(probeSession, ctx.phaseMs, PROBE_PREPARED)
      return {
        pids: [rep.pid, probeSession.pid],
        rounds: { count: 0, totalMs: 0, serverChecks: 0 },
        noticeRow: null,
        async stop() {
          stopped = true
          clearInterval(reply)
          stopProbe()
          await Promise.all([endQuietly(rep.client), endQuietly(probeSession.client)])
        },
      }
    },
  }
}

/** Adaptive on the standby's own signal: slow while a WAL receiver exists, fast when it is gone. */
function receiverAdaptive(slowMs: number, fastMs: number): Mechanism {
  const sql = receiverAdaptiveSql(2_000, slowMs, fastMs)
  return {
    key: `adaptive-receiver`,
    label: `recursive CTE + probe row, prepared; ${slowMs} ms while a WAL receiver exists, ${fastMs} ms without`,
    candidate: '5',
    check: `${slowMs} / ${fastMs} ms`,
    windowMs: 2_000,
    connections: 1,
    wakeupsPerS: 1000 / slowMs + 0.5,
    sql: `-- prepared once per session, executed back to back:\n${sql}`,
    notes: `fast only once the standby's WAL receiver has exited (its upstream closed the stream); a lost host keeps it "streaming" until wal_receiver_timeout (60 s by default)`,
    watches: true,
    scenarios: ALL_SCENARIOS,
    async start(ctx) {
      const s = await openSession(ctx.standby, WATCHER, 'pgfp-bench adaptive-receiver')
      const config = { name: 'pgfp_watch_adaptive_receiver', text: sql }
      return loopInstance({
        session: s,
        ctx,
        round: async (inst) => {
          const { rows } = await s.client.query<Record<string, unknown>>(config)
          inst.rounds.serverChecks += Number(rows[0]?.['checks'] ?? 0)
          return rows[0]?.['in_recovery'] === false ? rows[0] : null
        },
      })
    },
  }
}

/**
 * Adaptive on the pool's own doubt: slow checks (or, with `slowMs` null, only the probe every 2 s)
 * while the primary answers its probes, fast ones from the moment it does not (its session breaks,
 * or a probe misses its deadline); a slow wait in progress is cancelled so the fast one starts at
 * once.
 */
function doubtAdaptive(key: string, slowMs: number | null, fastMs: number): Mechanism {
  const slow = slowMs === null ? null : recursiveWaitSql(2_000, slowMs)
  const fast = recursiveWaitSql(2_000, fastMs)
  const healthy = slowMs === null ? 'only the prepared PROBE_SQL every 2 s' : `${slowMs} ms checks`
  return {
    key,
    label: `recursive CTE + probe row, prepared; ${healthy} while the primary answers, ${fastMs} ms once it is in doubt`,
    candidate: '5',
    check: slowMs === null ? `2 s / ${fastMs} ms` : `${slowMs} / ${fastMs} ms`,
    windowMs: 2_000,
    connections: 1,
    wakeupsPerS: slowMs === null ? 0.5 : 1000 / slowMs + 0.5,
    sql:
      (slow === null
        ? `-- while the pool's primary probe (every 2 s, 1 s deadline, on the primary's own session) succeeds: the prepared PROBE_SQL every 2 s\n`
        : `-- prepared once per session; this one back to back while the pool's primary probe (every 2 s, 1 s deadline, on the primary's own session) succeeds:\n${slow}\n`) +
      `-- from the moment that probe fails or its session breaks${slow === null ? '' : ' (a cancel request ends a slow wait in progress)'}:\n${fast}`,
    notes: `the primary's session (the pool has one there anyway) is the doubt signal: it breaks at once when the primary shuts down or crashes, and its probe misses its ${PRIMARY_PROBE_TIMEOUT_MS} ms deadline within ${(PROBE_EVERY_MS + PRIMARY_PROBE_TIMEOUT_MS) / 1000} s of a silent host loss`,
    watches: true,
    scenarios: ALL_SCENARIOS,
    async start(ctx) {
      const s = await openSession(ctx.standby, WATCHER, `pgfp-bench ${key}`)
      const p = await openSession(ctx.primary, WATCHER, `pgfp-bench ${key} primary`)
      let doubt = false
      let stopped = false
      let running: { fast: boolean } | null = null
      let wake: (() => void) | null = null
      const enterDoubt = (): void => {
        if (doubt || stopped) return
        doubt = true
        wake?.()
        const active = (s.client as unknown as { _activeQuery?: unknown })._activeQuery
        if (running && !running.fast && active) {
          const canceller = new pg.Client({ ...ctx.standby.config, ...WATCHER })
          canceller.on('error', () => undefined)
          ;(canceller as unknown as { cancel(c: pg.Client, q: unknown): void }).cancel(s.client, active)
        }
      }
      p.client.on('error', enterDoubt)
      p.client.on('end', enterDoubt)
      let timer: NodeJS.Timeout | undefined
      const probePrimary = (delay: number): void => {
        timer = setTimeout(() => {
          if (stopped || doubt) return
          const deadline = setTimeout(enterDoubt, PRIMARY_PROBE_TIMEOUT_MS)
          p.client.query(PROBE_PREPARED).then(
            () => {
              clearTimeout(deadline)
              probePrimary(PROBE_EVERY_MS)
            },
            () => {
              clearTimeout(deadline)
              enterDoubt()
            },
          )
        }, delay)
      }
      probePrimary(ctx.phaseMs % PROBE_EVERY_MS)
      /** Sleeps `ms`, or less if doubt arises meanwhile (or already has). */
      const pause = (ms: number): Promise<void> =>
        new Promise((resolve) => {
          if (doubt || stopped) {
            resolve()
            return
          }
          const t = setTimeout(done, ms)
          function done(): void {
            clearTimeout(t)
            wake = null
            resolve()
          }
          wake = done
        })
      return loopInstance({
        session: s,
        ctx,
        retryOnError: () => !stopped,
        onStop: async () => {
          stopped = true
          clearTimeout(timer)
          wake?.()
          await endQuietly(p.client)
        },
        round: async (inst) => {
          const isFast = doubt
          if (!isFast && slow === null) {
            const { rows } = await s.client.query<Record<string, unknown>>(PROBE_PREPARED)
            if (rows[0]?.['in_recovery'] === false) return rows[0]
            await pause(PROBE_EVERY_MS)
            return null
          }
          running = { fast: isFast }
          try {
            const { rows } = await s.client.query<Record<string, unknown>>(isFast ? { name: 'pgfp_watch_fast', text: fast } : { name: 'pgfp_watch_slow', text: slow! })
            inst.rounds.serverChecks += Number(rows[0]?.['checks'] ?? 0)
            return rows[0]?.['in_recovery'] === false ? rows[0] : null
          } finally {
            running = null
          }
        },
      })
    },
  }
}

const TODAY_NOTE = "the former PromotionWatch SQL (legacyDoBlockWatchSql(1000, 5)) plus today's separate monitor session"

const MECHANISMS: Mechanism[] = [
  reference('probe-only', 'reference: the prepared health probe alone every 2 s, no watch', 0.5, PROBE_SQL, 'what every one-session mechanism below also pays for its probe (prepared)', 'probe'),
  reference(
    'sleep-only-15ms',
    'reference: a backend sleeping 15 ms at a time, no check, no probe',
    1000 / 15 + 0.5,
    sleepOnlySql(2_000, 15),
    'the wakeups alone: the floor under any 15 ms server-side check',
    'sleep',
  ),
  twoSessionDo('do-perform-5ms', 'DO, PERFORM pg_sleep(0.005) (today)', 5, TODAY_NOTE),
  twoSessionDo('do-perform-10ms', 'DO, PERFORM pg_sleep(0.01)', 10, 'as today, coarser check'),
  twoSessionDo('do-perform-20ms', 'DO, PERFORM pg_sleep(0.02)', 20, 'as today, coarser check'),
  oneSessionDo('do-cond-20ms', 'DO, pg_sleep in the WHILE condition, + probe', '2', 20, 2_000, false, 'one simple expression per check (no SPI); the probe is a second statement'),
  oneSessionDo(
    'do-cond-commit-20ms',
    'DO, pg_sleep in the WHILE condition, COMMIT per check, + probe',
    '5',
    20,
    2_000,
    true,
    'COMMIT in a non-atomic DO block releases the snapshot at every check',
  ),
  oneStatement('cte-20ms', 'recursive CTE + probe row, simple protocol', '3', 20, 2_000, recursiveWaitSql(2_000, 20), false, 'parsed and planned every window'),
  oneStatement('cte-prep-20ms', 'recursive CTE + probe row, prepared', '3', 20, 2_000, recursiveWaitSql(2_000, 20), true, 'parsed and planned once per session'),
  oneStatement('cte-prep-15ms', 'recursive CTE + probe row, prepared', '3', 15, 2_000, recursiveWaitSql(2_000, 15), true, 'parsed and planned once per session'),
  oneStatement('series-prep-15ms', 'generate_series + LIMIT 1 + probe row, prepared', '5', 15, 2_000, seriesWaitSql(2_000, 15), true, 'no recursion machinery per check'),
  emptyQueryPoll('poll-20ms', 20),
  emptyQueryPoll('poll-50ms', 50),
  replicationStream(),
  receiverAdaptive(250, 15),
  doubtAdaptive('adaptive-doubt', 250, 15),
  doubtAdaptive('adaptive-doubt-probe', null, 15),
]

// ------------------------------------------------------------------------------------- phases

interface MechanismResult {
  readonly key: string
  /** Instances' own standby backends, per instance: ms of CPU per second. */
  readonly cpuMsPerS: number
  /** Same from /proc/<pid>/stat utime+stime (10 ms ticks). */
  readonly tickMsPerS: number
  /** Whole standby minus the idle baseline, per instance. */
  readonly serverMsPerS: number
  /** The bench process (all instances' client side), per instance. */
  readonly clientMsPerS: number
  /** Instances' backends under ~200 commits/s on the primary, per instance. */
  readonly loadedCpuMsPerS: number
  /** Longest time one session kept the same backend_xmin (ms). */
  readonly snapshotMaxMs: number
  /** Fraction of samples in which a session held a snapshot. */
  readonly snapshotShare: number
  readonly latencies: Record<Scenario, number[]>
  readonly missed: number
  readonly promotions: number
  readonly meanRoundMs: number | null
  readonly checksPerRound: number | null
  readonly noticeRow: Record<string, unknown> | null
  readonly promoteToEndMs: number[]
  readonly resolutionMs: number[]
  readonly error?: string
}

/** The cluster's current roles; a promotion swaps them. */
interface Roles {
  primary: ClusterNode
  standby: ClusterNode
}

function warmUpMs(m: Mechanism): number {
  return (m.windowMs ?? PROBE_EVERY_MS) * 2 + PROBE_EVERY_MS + 500
}

async function startInstances(m: Mechanism, roles: Roles, onNotice: (i: number, at: number) => void): Promise<Instance[]> {
  const spread = m.windowMs ?? PROBE_EVERY_MS
  const out: Instance[] = []
  // Connect five at a time (SCRAM logins are CPU-heavy on a 2-core machine).
  for (let i = 0; i < INSTANCES; i += 5) {
    const batch = await Promise.all(
      Array.from({ length: Math.min(5, INSTANCES - i) }, (_, j) =>
        m.start({ standby: roles.standby, primary: roles.primary, phaseMs: Math.random() * spread, onNotice: (at) => onNotice(i + j, at) }),
      ),
    )
    out.push(...batch)
  }
  return out
}

async function stopInstances(instances: Instance[]): Promise<void> {
  await Promise.all(instances.map((i) => i.stop()))
}

/** Idle standby: all its processes' CPU per second (subtracted from the whole-standby number). */
async function measureIdleServer(cluster: Cluster, node: ClusterNode): Promise<number> {
  await sleep(1000)
  const pids = cluster.serverPids(node)
  const a = cpuSnapshot(pids)
  await sleep(CPU_SECONDS * 1000)
  const d = cpuDelta(a, cpuSnapshot(pids))
  return d.schedMs / d.seconds
}

interface SnapshotStats {
  maxMs: number
  share: number
  loadedCpuMsPerS: number
}

/** Writer on the primary, sampler on the standby: how long does a session keep one xmin? */
async function measureSnapshots(roles: Roles, instances: Instance[]): Promise<SnapshotStats> {
  const pids = instances.flatMap((i) => i.pids)
  const writer = new pg.Client(roles.primary.config)
  const sampler = new pg.Client(roles.standby.config)
  writer.on('error', () => undefined)
  sampler.on('error', () => undefined)
  await writer.connect()
  await sampler.connect()
  let writing = true
  const writes = (async () => {
    while (writing) {
      await writer.query("INSERT INTO pgfp_bench_load(payload) VALUES (repeat('x', 200))")
      await sleep(4)
    }
  })()
  await sleep(300)
  const current = new Map<number, { xmin: string; since: number }>()
  let maxMs = 0
  let held = 0
  let samples = 0
  const a = cpuSnapshot(pids)
  const end = performance.now() + SNAPSHOT_SECONDS * 1000
  while (performance.now() < end) {
    const { rows } = await sampler.query<{ pid: number; xmin: string | null }>('SELECT pid, backend_xmin::text AS xmin FROM pg_stat_activity WHERE pid = ANY($1::int[])', [pids])
    const now = performance.now()
    for (const r of rows) {
      samples++
      const cur = current.get(r.pid)
      if (r.xmin === null) {
        if (cur) maxMs = Math.max(maxMs, now - cur.since)
        current.delete(r.pid)
        continue
      }
      held++
      if (!cur || cur.xmin !== r.xmin) {
        if (cur) maxMs = Math.max(maxMs, now - cur.since)
        current.set(r.pid, { xmin: r.xmin, since: now })
      }
    }
    await sleep(8)
  }
  const b = cpuSnapshot(pids)
  // Snapshots still held at the end count with the time seen so far (a lower bound).
  const now = performance.now()
  for (const cur of current.values()) maxMs = Math.max(maxMs, now - cur.since)
  writing = false
  await writes
  await endQuietly(writer)
  await endQuietly(sampler)
  const d = cpuDelta(a, b)
  return { maxMs, share: samples === 0 ? 0 : held / samples, loadedCpuMsPerS: d.schedMs / d.seconds / instances.length }
}

interface PromotionSample {
  latencies: number[]
  missed: number
  promoteToEndMs: number
  resolutionMs: number
  noticeRow: Record<string, unknown> | null
}

/**
 * One failover under the given instances, then the old primary is rewound and re-attached as the
 * new standby (the roles swap). The notice reference is the server-side time of the poller's first
 * `pg_is_in_recovery() = false`: a poller starved of CPU for a few ms still gives the moment its
 * backend saw the change, not the moment Node read the answer.
 */
async function failover(cluster: Cluster, roles: Roles, scenario: Scenario, instances: Instance[], noticed: Map<number, number>): Promise<PromotionSample> {
  const { primary, standby } = roles
  const poller = new pg.Client(standby.config)
  poller.on('error', () => undefined)
  await poller.connect()
  try {
    os.setPriority((poller as unknown as { processID: number }).processID, -10)
  } catch {
    // not root: the reference is a little coarser
  }
  if (scenario === 'stop') {
    await cluster.stop(primary, 'fast')
    await sleep(STOP_BEFORE_PROMOTE_MS)
  } else if (scenario === 'freeze') {
    await cluster.freeze(primary)
    await sleep(FREEZE_BEFORE_PROMOTE_MS)
  }
  let firstFalse = 0
  let lastTrue = 0
  const polling = (async () => {
    for (;;) {
      const { rows } = await poller.query<{ r: boolean; at: number }>('SELECT pg_is_in_recovery() AS r, (EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::float8 AS at')
      const at = Number(rows[0]!.at)
      if (rows[0]!.r === false) {
        firstFalse = at
        return
      }
      lastTrue = at
    }
  })()
  const signalled = wallNow()
  await cluster.sql(standby, 'SELECT pg_promote(false)')
  await polling
  const deadline = performance.now() + 3000
  while (noticed.size < instances.length && performance.now() < deadline) await sleep(10)
  await endQuietly(poller)
  const sample: PromotionSample = {
    latencies: [...noticed.values()].map((t) => t - firstFalse),
    missed: instances.length - noticed.size,
    promoteToEndMs: firstFalse - signalled,
    resolutionMs: firstFalse - lastTrue,
    noticeRow: instances.find((i) => i.noticeRow !== null)?.noticeRow ?? null,
  }
  await stopInstances(instances)
  await cluster.rejoinAsStandby(primary, standby)
  roles.primary = standby
  roles.standby = primary
  await cluster.waitForReplication(roles.primary)
  return sample
}

async function runMechanism(cluster: Cluster, roles: Roles, m: Mechanism, idleServerMsPerS: number): Promise<MechanismResult> {
  let noticed = new Map<number, number>()
  const record = (i: number, at: number): void => {
    if (!noticed.has(i)) noticed.set(i, at)
  }
  let instances = await startInstances(m, roles, record)
  const latencies: Record<Scenario, number[]> = { stop: [], freeze: [], alive: [] }
  const promoteToEndMs: number[] = []
  const resolutionMs: number[] = []
  let missed = 0
  let noticeRow: Record<string, unknown> | null = null
  let promotions = 0
  try {
    // Warm up: every instance past its first windows and probes (a fresh backend's first statements
    // fill its catalog caches and compile PL/pgSQL: milliseconds a long-lived session pays once).
    await sleep(warmUpMs(m))
    // 1. CPU, idle cluster
    const pids = instances.flatMap((i) => i.pids)
    for (const i of instances) Object.assign(i.rounds, { count: 0, totalMs: 0, serverChecks: 0 })
    const a = cpuSnapshot([...new Set([...cluster.serverPids(roles.standby), ...pids])])
    await sleep(CPU_SECONDS * 1000)
    const b = cpuSnapshot([...new Set([...cluster.serverPids(roles.standby), ...pids])])
    const inst = cpuDelta(a, b, new Set(pids))
    const server = cpuDelta(a, b)
    const rounds = instances.reduce((acc, i) => ({ count: acc.count + i.rounds.count, totalMs: acc.totalMs + i.rounds.totalMs, checks: acc.checks + i.rounds.serverChecks }), {
      count: 0,
      totalMs: 0,
      checks: 0,
    })
    // 2. snapshots, with writes on the primary
    const snap = await measureSnapshots(roles, instances)
    // 3. failovers
    if (m.watches) {
      const perScenario = m.scenarios.length > 1 ? Math.max(1, Math.ceil(PROMOTIONS / 2)) : PROMOTIONS
      const plan = m.scenarios.flatMap((s) => Array.from({ length: perScenario }, () => s))
      for (let p = 0; p < plan.length; p++) {
        const scenario = plan[p]!
        if (p > 0) {
          noticed = new Map()
          instances = await startInstances(m, roles, record)
          await sleep((m.windowMs ?? PROBE_EVERY_MS) + PROBE_EVERY_MS + Math.random() * 1000)
        } else {
          await sleep(Math.random() * 1000)
        }
        const r = await failover(cluster, roles, scenario, instances, noticed)
        instances = []
        promotions++
        latencies[scenario].push(...r.latencies)
        promoteToEndMs.push(r.promoteToEndMs)
        resolutionMs.push(r.resolutionMs)
        missed += r.missed
        noticeRow ??= r.noticeRow
      }
    }
    return {
      key: m.key,
      cpuMsPerS: inst.schedMs / inst.seconds / INSTANCES,
      tickMsPerS: inst.tickMs / inst.seconds / INSTANCES,
      serverMsPerS: (server.schedMs / server.seconds - idleServerMsPerS) / INSTANCES,
      clientMsPerS: inst.clientMs / inst.seconds / INSTANCES,
      loadedCpuMsPerS: snap.loadedCpuMsPerS,
      snapshotMaxMs: snap.maxMs,
      snapshotShare: snap.share,
      latencies,
      missed,
      promotions,
      meanRoundMs: rounds.count > 0 && m.windowMs !== null && m.watches ? rounds.totalMs / rounds.count : null,
      checksPerRound: rounds.count > 0 && rounds.checks > 0 ? rounds.checks / rounds.count : null,
      noticeRow,
      promoteToEndMs,
      resolutionMs,
    }
  } finally {
    await stopInstances(instances)
  }
}

// ------------------------------------------------------------------------------------- preflight

interface Checks {
  orderRow: Record<string, unknown>
  doConditionMs: number
  commitInDo: string
  probeAsWatcher: Record<string, unknown>
  probeAsSuperuser: Record<string, unknown>
  /** CPU per execution (µs) of statements and per check of each loop with pg_sleep(0) (no wakeup). */
  costs: Record<string, number>
  plan: string
}

/** One-off facts the table relies on, as the unprivileged role on the standby. */
async function preflight(standby: ClusterNode): Promise<Checks> {
  const w = await openSession(standby, WATCHER, 'pgfp-bench preflight')
  const su = await openSession(standby, { user: 'postgres', password: standby.config.password }, 'pgfp-bench preflight su')
  try {
    // The probe columns are computed after the wait: the same statement plus the time that passed before them.
    const orderSql = recursiveWaitSql(300, 20).replace(
      'SELECT w.checks, ',
      'SELECT w.checks, round((EXTRACT(EPOCH FROM clock_timestamp() - statement_timestamp()) * 1000)::numeric, 1) AS ms_before_probe, ',
    )
    const orderRow = (await w.client.query(orderSql)).rows[0] as Record<string, unknown>
    const plan = (await w.client.query(`EXPLAIN (COSTS OFF) ${recursiveWaitSql(2_000, 15)}`)).rows.map((r: Record<string, string>) => r['QUERY PLAN']).join('\n')
    const t0 = performance.now()
    await w.client.query(doConditionSql(300, 20, false))
    const doConditionMs = performance.now() - t0
    let commitInDo = 'allowed (non-atomic DO at top level)'
    try {
      await w.client.query(doConditionSql(100, 20, true))
    } catch (err) {
      commitInDo = `refused: ${(err as Error).message}`
    }
    const probeAsWatcher = (await w.client.query(PROBE_SQL)).rows[0] as Record<string, unknown>
    const probeAsSuperuser = (await su.client.query(PROBE_SQL)).rows[0] as Record<string, unknown>
    // Costs without any wakeup: statements back to back, loops with pg_sleep(0) (no WaitLatch).
    const cost = async (n: number, per: number, q: () => Promise<unknown>): Promise<number> => {
      for (let i = 0; i < 3; i++) await q()
      const a = schedNs(w.pid)!
      for (let i = 0; i < n; i++) await q()
      return (schedNs(w.pid)! - a) / 1000 / n / per
    }
    const LOOP = 1000
    const costs: Record<string, number> = {
      'empty query `;` (one round trip)': await cost(300, 1, () => w.client.query(';')),
      'PROBE_SQL, simple protocol': await cost(100, 1, () => w.client.query(PROBE_SQL)),
      'PROBE_SQL, prepared': await cost(100, 1, () => w.client.query(PROBE_PREPARED)),
      'recursive CTE + probe, prepared, 0 checks (one window\'s fixed cost)': await cost(100, 1, () =>
        w.client.query({ name: 'pf_cte0', text: recursiveWaitSql(2_000, 15).replace(/n < \d+/, 'n < 0') }),
      ),
      'recursive CTE + probe, simple protocol, 0 checks': await cost(100, 1, () => w.client.query(recursiveWaitSql(2_000, 15).replace(/n < \d+/, 'n < 0'))),
      'DO block compile + run, 0 checks': await cost(100, 1, () => w.client.query(doConditionSql(0.001, 1, false))),
      'per check: DO, PERFORM pg_sleep(0)': await cost(10, LOOP, () =>
        w.client.query(`DO $$ DECLARE n int := 0; BEGIN WHILE pg_is_in_recovery() AND clock_timestamp() < clock_timestamp() + interval '1 s' AND n < ${LOOP} LOOP PERFORM pg_sleep(0); n := n + 1; END LOOP; END $$`),
      ),
      'per check: DO, pg_sleep(0) in the WHILE condition': await cost(10, LOOP, () =>
        w.client.query(`DO $$ DECLARE n int := 0; BEGIN WHILE pg_is_in_recovery() AND clock_timestamp() < clock_timestamp() + interval '1 s' AND n < ${LOOP} AND pg_sleep(0) IS NOT NULL LOOP n := n + 1; END LOOP; END $$`),
      ),
      'per check: DO, condition + COMMIT': await cost(10, LOOP, () =>
        w.client.query(`DO $$ DECLARE n int := 0; BEGIN WHILE pg_is_in_recovery() AND clock_timestamp() < clock_timestamp() + interval '1 s' AND n < ${LOOP} AND pg_sleep(0) IS NOT NULL LOOP n := n + 1; COMMIT; END LOOP; END $$`),
      ),
      'per check: recursive CTE': await cost(10, LOOP, () => w.client.query({ name: 'pf_cte', text: recursiveWaitSql(LOOP, 1).replace("pg_sleep(0.001)", 'pg_sleep(0)') })),
      'per check: generate_series': await cost(10, LOOP, () => w.client.query({ name: 'pf_series', text: seriesWaitSql(LOOP, 1).replace("pg_sleep(0.001)", 'pg_sleep(0)') })),
      'per check: adaptive CTE (with the WAL receiver lookup)': await cost(10, LOOP, () =>
        w.client.query({ name: 'pf_adaptive', text: receiverAdaptiveSql(60_000, 0, 0).replace('WHERE standby AND', `WHERE standby AND n < ${LOOP} AND`) }),
      ),
    }
    return { orderRow, doConditionMs, commitInDo, probeAsWatcher, probeAsSuperuser, costs, plan }
  } finally {
    await endQuietly(w.client)
    await endQuietly(su.client)
  }
}

// ------------------------------------------------------------------------------------- report

function quantile(xs: number[], q: number): number {
  if (xs.length === 0) return NaN
  const s = [...xs].sort((a, b) => a - b)
  return s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]!
}

const f1 = (x: number | null): string => (x === null || Number.isNaN(x) ? '–' : x.toFixed(1))
const f2 = (x: number): string => (Number.isNaN(x) ? '–' : x.toFixed(2))
const f3 = (x: number): string => (Number.isNaN(x) ? '–' : x.toFixed(3))
const maxOf = (xs: number[]): number => (xs.length ? Math.max(...xs) : NaN)

const SCENARIO_LABEL: Record<Scenario, string> = { stop: 'primary shut down', freeze: 'primary frozen', alive: 'primary still up' }

function mech(key: string): Mechanism {
  return MECHANISMS.find((x) => x.key === key)!
}

function latencyCell(m: Mechanism, r: MechanismResult): string {
  if (!m.watches) return m.key === 'probe-only' ? '≤ 2000 (next probe)' : '–'
  const missed = r.missed ? ` (${r.missed} missed)` : ''
  if (m.scenarios.length === 1) return `${f1(quantile(r.latencies.stop, 0.5))} / ${f1(maxOf(r.latencies.stop))}${missed}`
  return (
    m.scenarios.map((s) => `${SCENARIO_LABEL[s]}: ${f1(quantile(r.latencies[s], 0.5))} / ${f1(maxOf(r.latencies[s]))}`).join('<br>') + missed
  )
}

function snapshotCell(r: MechanismResult): string {
  if (r.snapshotShare === 0 || r.snapshotMaxMs < 1) return 'none seen'
  return `${Math.round(r.snapshotMaxMs)} ms (held in ${Math.round(r.snapshotShare * 100)}% of samples)`
}

function allLatencies(r: MechanismResult): number[] {
  return [...r.latencies.stop, ...r.latencies.freeze, ...r.latencies.alive]
}

function table(results: MechanismResult[]): string {
  const head =
    '| # | mechanism | check interval | conns / node / instance | standby CPU / instance (ms/s) | % of a core | wakeups/s (by design) | µs per wakeup | notice p50 / max (ms) | samples (failovers) | snapshot held for (longest seen) |\n' +
    '|---|---|---:|---:|---:|---:|---:|---:|---|---:|---|'
  const rows = results.map((r) => {
    const m = mech(r.key)
    if (r.error) return `| ${m.candidate} | ${m.label} \`${m.key}\` | ${m.check} | ${m.connections} | error: ${r.error.replace(/\|/g, '/').slice(0, 200)} | | | | | | |`
    const window = m.windowMs === null ? '' : ` (window ${m.windowMs / 1000} s)`
    return `| ${m.candidate} | ${m.label} \`${m.key}\` | ${m.check}${window} | ${m.connections} | **${f2(r.cpuMsPerS)}** | ${f3(r.cpuMsPerS / 10)}% | ${f1(m.wakeupsPerS)} | ${Math.round((r.cpuMsPerS * 1000) / m.wakeupsPerS)} | ${latencyCell(m, r)} | ${allLatencies(r).length} (${r.promotions}) | ${snapshotCell(r)} |`
  })
  return [head, ...rows].join('\n')
}

function crossCheckTable(results: MechanismResult[]): string {
  const head =
    '| mechanism | standby backends, schedstat (ms/s) | same, utime+stime ticks (ms/s) | whole standby − idle (ms/s) | backends under ~200 commits/s (ms/s) | client (bench) CPU (ms/s) | mean window (ms) | checks per window |\n|---|---:|---:|---:|---:|---:|---:|---:|'
  const rows = results
    .filter((r) => !r.error)
    .map((r) => `| \`${r.key}\` | ${f2(r.cpuMsPerS)} | ${f2(r.tickMsPerS)} | ${f2(r.serverMsPerS)} | ${f2(r.loadedCpuMsPerS)} | ${f2(r.clientMsPerS)} | ${f1(r.meanRoundMs)} | ${f1(r.checksPerRound)} |`)
  return [head, ...rows].join('\n')
}

const RECOMMENDED = 'cte-prep-15ms'

function meets(r: MechanismResult, scenarios: Scenario[] = ['stop', 'freeze', 'alive']): { cpu: boolean; conns: boolean; latency: boolean } {
  const lat = scenarios.flatMap((s) => r.latencies[s])
  return {
    cpu: r.cpuMsPerS <= TARGET_CPU_MS_PER_S,
    conns: mech(r.key).connections <= 1,
    latency: lat.length > 0 && r.missed === 0 && maxOf(lat) <= TARGET_NOTICE_MS,
  }
}

interface RunMeta {
  readonly text: string
  readonly platformUs: Array<number | null>
  readonly idleServerMsPerS: number
}

function report(results: MechanismResult[], checks: Checks | null, meta: RunMeta): string {
  const lines: string[] = []
  lines.push(`### Run ${new Date().toISOString()}`, '', meta.text, '')
  const floor = meta.platformUs.filter((x): x is number => x !== null)
  if (floor.length) {
    lines.push(
      `Platform floor: one bare 15 ms timer wakeup of a Python loop (no PostgreSQL) cost ${floor.map((x) => `${Math.round(x)} µs`).join(' (start), ')} (end) of CPU on this machine. ` +
        `At ${TARGET_NOTICE_MS} ms notice a periodic check needs ≥ ${1000 / TARGET_NOTICE_MS} wakeups/s, i.e. ≥ ${f2((floor[0]! * 1000) / TARGET_NOTICE_MS / 1000)} ms/s before PostgreSQL does anything.`,
      '',
    )
  }
  lines.push(table(results), '')
  const watching = results.filter((r) => !r.error && mech(r.key).watches)
  const all = watching.filter((r) => Object.values(meets(r)).every(Boolean)).map((r) => `\`${r.key}\``)
  const failoverOnly = watching.filter((r) => !all.includes(`\`${r.key}\``) && Object.values(meets(r, ['stop', 'freeze'])).every(Boolean)).map((r) => `\`${r.key}\``)
  const connsLatency = watching.filter((r) => meets(r).conns && meets(r).latency).map((r) => `\`${r.key}\` (${f2(r.cpuMsPerS)} ms/s)`)
  lines.push(
    `All three targets (1 connection, ≤ ${TARGET_CPU_MS_PER_S} ms/s, every notice ≤ ${TARGET_NOTICE_MS} ms) in this run: ${all.join(', ') || 'none'}.` +
      (failoverOnly.length ? ` In failovers only (not behind a running primary): ${failoverOnly.join(', ')}.` : '') +
      ` One connection and every notice ≤ ${TARGET_NOTICE_MS} ms: ${connsLatency.join(', ') || 'none'}.`,
    '',
  )
  const rec = results.find((r) => r.key === RECOMMENDED && !r.error)
  if (rec) {
    const ok = meets(rec)
    lines.push(
      `\`${RECOMMENDED}\` in this run: ${f2(rec.cpuMsPerS)} ms/s per instance (${ok.cpu ? 'meets' : 'misses'} ${TARGET_CPU_MS_PER_S} ms/s), ` +
        `notice p50 ${f1(quantile(allLatencies(rec), 0.5))} / max ${f1(maxOf(allLatencies(rec)))} ms (${ok.latency ? 'meets' : 'misses'} ${TARGET_NOTICE_MS} ms), one connection.`,
      '',
    )
  }
  lines.push('CPU cross-checks (per instance):', '', crossCheckTable(results), '')
  lines.push(`Idle standby (all its processes, no instance): ${f2(meta.idleServerMsPerS)} ms/s.`, '')
  const details = results
    .filter((r) => !r.error)
    .map((r) => {
      const m = mech(r.key)
      const parts = [`\`${r.key}\`: ${m.notes}`]
      if (r.promoteToEndMs.length) parts.push(`pg_promote(false) → recovery ended: ${r.promoteToEndMs.map((x) => Math.round(x)).join(', ')} ms`)
      if (r.resolutionMs.length) parts.push(`poller resolution: ${r.resolutionMs.map((x) => x.toFixed(1)).join(', ')} ms`)
      if (r.noticeRow) parts.push(`row at the promotion: in_recovery=${String(r.noticeRow['in_recovery'])}, read_only=${String(r.noticeRow['read_only'])}, timeline=${String(r.noticeRow['timeline'])}`)
      return `- ${parts.join('; ')}`
    })
  lines.push('<details><summary>Per-mechanism details</summary>', '', ...details, '', '</details>', '')
  if (checks) {
    lines.push(
      '<details><summary>Preflight (as the unprivileged role, on the standby)</summary>',
      '',
      `- Probe columns after the wait (window 300 ms, check 20 ms): checks=${String(checks.orderRow['checks'])}, ${String(checks.orderRow['ms_before_probe'])} ms passed before the probe columns were computed.`,
      `- DO with pg_sleep in the WHILE condition, window 300 ms, check 20 ms: returned after ${f1(checks.doConditionMs)} ms (it really sleeps).`,
      `- COMMIT inside a DO block on a standby: ${checks.commitInDo}.`,
      `- PROBE_SQL as the unprivileged role: \`${JSON.stringify(checks.probeAsWatcher)}\``,
      `- PROBE_SQL as superuser: \`${JSON.stringify(checks.probeAsSuperuser)}\``,
      '',
      'CPU without any wakeup (backend schedstat; loops use `pg_sleep(0)`, which returns without waiting):',
      '',
      '| what | µs |',
      '|---|---:|',
      ...Object.entries(checks.costs).map(([k, v]) => `| ${k} | ${f2(v)} |`),
      '',
      'Plan of the recommended statement:',
      '',
      '```',
      checks.plan,
      '```',
      '',
      '</details>',
      '',
    )
  }
  return lines.join('\n')
}

function sqlSection(): string {
  const out = ['## The SQL measured', '']
  for (const m of MECHANISMS) out.push(`### \`${m.key}\` — ${m.label}`, '', '```sql', m.sql, '```', '')
  return out.join('\n')
}

const RUN_LOG_BEGIN = '<!-- run log: newest first; the bench keeps up to four earlier runs -->'
const RUN_LOG_END = '<!-- end of run log -->'
const RECOMMENDATION_BEGIN = '<!-- recommendation: kept from the previous file -->'
const RECOMMENDATION_END = '<!-- end of recommendation -->'

function writeReport(run: string): void {
  let earlier: string[] = []
  let recommendation = `${RECOMMENDATION_BEGIN}\n## Recommendation\n\n(to be written from the runs below)\n${RECOMMENDATION_END}`
  if (existsSync(OUT)) {
    const text = readFileSync(OUT, 'utf8')
    const a = text.indexOf(RUN_LOG_BEGIN)
    const b = text.indexOf(RUN_LOG_END)
    if (a >= 0 && b > a) {
      earlier = text
        .slice(a + RUN_LOG_BEGIN.length, b)
        .split(/\n(?=### Run )/)
        .map((s) => s.trim())
        .filter((s) => s.startsWith('### Run '))
        .slice(0, 4)
    }
    const c = text.indexOf(RECOMMENDATION_BEGIN)
    const d = text.indexOf(RECOMMENDATION_END)
    if (c >= 0 && d > c) recommendation = text.slice(c, d + RECOMMENDATION_END.length)
  }
  const doc = [HEADER, recommendation, '', '## Runs', '', RUN_LOG_BEGIN, '', run.trim(), '', ...earlier.flatMap((e) => [e, '']), RUN_LOG_END, '', sqlSection()].join('\n')
  writeFileSync(OUT, doc)
}

const HEADER = `# Promotion watch: mechanisms measured

Generated by \`node --import tsx bench/watch-mechanisms.ts\` (PostgreSQL 15 on loopback; a 2-core VM shared
with other work). Each mechanism runs as ${INSTANCES} simulated application instances against one standby: the
watch **plus the health probe every 2 s** (PROBE_SQL), as an unprivileged LOGIN role, at random phases.
Targets: ≤ 1 monitoring connection per node per instance, ≤ ${TARGET_CPU_MS_PER_S} ms of standby CPU per second per
instance (0.05% of a core), an idle promotion noticed within ${TARGET_NOTICE_MS} ms.

*standby CPU / instance*: the instances' own standby backends, \`/proc/<pid>/schedstat\` (ns), over the CPU
window, divided by the number of instances, idle cluster. *wakeups/s*: timer or socket wakeups each instance
causes on the standby by construction (checks + round trips); *µs per wakeup* = CPU ÷ wakeups. *notice*: from
the server-side time at which a tight poller first saw \`pg_is_in_recovery() = false\` to the instance noticing
(ParameterStatus \`in_hot_standby=off\`, the probe row, or CopyDone), over all instances and failovers; negative
values mean the instance noticed before the poller did. *snapshot held for*: the longest time one session kept
the same \`backend_xmin\` while the primary committed every ~5 ms. Cross-checks: \`/proc/<pid>/stat\`
utime+stime (10 ms ticks, so ±0.1–0.2 ms/s of noise at this length), the whole standby minus an idle baseline,
the same backends under ~200 commits/s, and the bench process itself (the application side).
`

// ------------------------------------------------------------------------------------- main

async function main(): Promise<void> {
  process.noDeprecation = true // pg's own cancel() reads its deprecated Client.activeQuery
  const selected = ONLY.length ? MECHANISMS.filter((m) => ONLY.includes(m.key)) : MECHANISMS
  if (selected.length === 0) throw new Error(`no mechanism matches --only ${ONLY.join(',')}`)
  const startedAt = Date.now()
  const load0 = os.loadavg()
  const platformStart = platformWakeupUs(15)
  console.log(`platform: one bare 15 ms timer wakeup costs ${f1(platformStart)} µs of CPU here`)
  console.log(`starting a cluster (primary + 1 standby); ${selected.length} mechanisms, ${INSTANCES} instances, ${CPU_SECONDS} s CPU windows, ${PROMOTIONS} failovers each`)
  const cluster = await startCluster({ standbys: 1, settings: { max_wal_senders: INSTANCES + 10 } })
  const roles: Roles = { primary: cluster.nodes[0]!, standby: cluster.nodes[1]! }
  const results: MechanismResult[] = []
  let checks: Checks | null = null
  let idle = NaN
  try {
    await cluster.sql(roles.primary, `CREATE ROLE ${WATCHER.user} LOGIN PASSWORD '${WATCHER.password}'`)
    await cluster.sql(roles.primary, `CREATE ROLE ${REPLICATOR.user} LOGIN REPLICATION PASSWORD '${REPLICATOR.password}'`)
    await cluster.sql(roles.primary, 'CREATE TABLE pgfp_bench_load (id bigserial PRIMARY KEY, payload text)')
    await cluster.waitForReplication(roles.primary)
    checks = await preflight(roles.standby)
    console.log('preflight costs (µs):', JSON.stringify(Object.fromEntries(Object.entries(checks.costs).map(([k, v]) => [k, Math.round(v * 100) / 100]))))
    idle = await measureIdleServer(cluster, roles.standby)
    console.log(`idle standby: ${f2(idle)} ms/s of CPU (all its processes)`)
    for (const m of selected) {
      const t0 = Date.now()
      try {
        const r = await runMechanism(cluster, roles, m, idle)
        results.push(r)
        console.log(
          `${m.key.padEnd(20)} cpu ${f2(r.cpuMsPerS)} ms/s (ticks ${f2(r.tickMsPerS)}, server ${f2(r.serverMsPerS)}, loaded ${f2(r.loadedCpuMsPerS)}, client ${f2(r.clientMsPerS)})` +
            `  notice ${latencyCell(m, r).replace(/<br>/g, '; ')} (n=${allLatencies(r).length})  snapshot ${Math.round(r.snapshotMaxMs)} ms  [${((Date.now() - t0) / 1000).toFixed(0)} s]`,
        )
      } catch (err) {
        console.log(`${m.key}: ERROR ${(err as Error).stack ?? String(err)}`)
        results.push({
          key: m.key,
          cpuMsPerS: NaN,
          tickMsPerS: NaN,
          serverMsPerS: NaN,
          clientMsPerS: NaN,
          loadedCpuMsPerS: NaN,
          snapshotMaxMs: NaN,
          snapshotShare: NaN,
          latencies: { stop: [], freeze: [], alive: [] },
          missed: 0,
          promotions: 0,
          meanRoundMs: null,
          checksPerRound: null,
          noticeRow: null,
          promoteToEndMs: [],
          resolutionMs: [],
          error: (err as Error).message,
        })
        await recover(cluster, roles)
      }
    }
  } finally {
    await cluster.destroy()
  }
  const platformEnd = platformWakeupUs(15)
  const load1 = os.loadavg()
  const meta: RunMeta = {
    text:
      `${INSTANCES} instances, ${CPU_SECONDS} s CPU window, ${PROMOTIONS} failovers per mechanism (adaptive ones: ${Math.max(1, Math.ceil(PROMOTIONS / 2))} per scenario), ` +
      `${((Date.now() - startedAt) / 60000).toFixed(1)} min; load average ${load0.map((x) => x.toFixed(1)).join(' ')} at start, ${load1.map((x) => x.toFixed(1)).join(' ')} at end (${os.cpus().length} cores).`,
    platformUs: [platformStart, platformEnd],
    idleServerMsPerS: idle,
  }
  const run = report(results, checks, meta)
  console.log(`\n${run}`)
  writeReport(run)
  console.log(`wrote ${OUT}`)
}

/** After a failed mechanism: make sure there is one running primary and one streaming standby. */
async function recover(cluster: Cluster, roles: Roles): Promise<void> {
  try {
    await cluster.thaw(roles.primary).catch(() => undefined)
    await cluster.start(roles.primary)
    if (await cluster.isInRecovery(roles.primary)) {
      const t = roles.primary
      roles.primary = roles.standby
      roles.standby = t
    }
    await cluster.start(roles.standby).catch(() => undefined)
    if (!(await cluster.isInRecovery(roles.standby).catch(() => false))) await cluster.rejoinAsStandby(roles.standby, roles.primary)
    await cluster.waitForReplication(roles.primary)
  } catch (err) {
    console.log(`recovery failed: ${(err as Error).message}`)
  }
}

await main()
