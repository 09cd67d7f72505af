import type { ClientBase } from 'pg'

/** What one probe learned about a node, in one round trip. */
export interface ProbeResult {
  /** `pg_is_in_recovery()`: true on a standby. */
  readonly inRecovery: boolean
  /** `transaction_read_only` for a new transaction on this session (e.g. `default_transaction_read_only`). */
  readonly readOnly: boolean
  /** `pg_control_system().system_identifier` as a decimal string: equal for a primary and its physical standbys. */
  readonly systemId: string | null
  /**
   * The node's timeline: from the current WAL file on a primary. On a standby, the newest of its
   * last restartpoint's, its minimum recovery point's (pg_rewind sets it to the source's) and, where
   * the pool's role may read it (superuser or pg_read_all_stats), its WAL receiver's.
   */
  readonly timeline: number | null
  /**
   * On a standby: whether a WAL receiver runs and is streaming (its status, where the role may read
   * it; else its presence). False means nothing can arrive: its lag grows from now on. Always true on
   * a primary.
   */
  readonly receiving: boolean
  /**
   * On a streaming standby, where the pool's role may read `pg_stat_wal_receiver` (superuser,
   * pg_read_all_stats or pg_monitor): the timeline its WAL receiver receives. A standby that streams
   * an older timeline than the cluster's primary follows a node the cluster left (a promotion by hand
   * that nobody repointed it after). Null otherwise (not streaming, a primary, or not readable).
   */
  readonly receivedTimeline: number | null
  /** Current WAL insert position on a primary, last replayed position on a standby (`X/Y`). */
  readonly lsn: string | null
  /**
   * Replay lag in milliseconds on a standby: since the last transaction it replayed was committed,
   * when it has received WAL it has not replayed yet or its WAL receiver does not stream (nothing
   * can arrive: how stale its data may be is all it can tell, even to a pool that has just met
   * it); 0 when streaming and caught up, or on a primary.
   */
  readonly lagMs: number
  /** `server_version_num`, e.g. 150004. */
  readonly serverVersion: number
  /** Round-trip time of the probe statement, in milliseconds. */
  readonly latencyMs: number
  /**
   * Clock ms at which the row was evaluated when that is later than the probe was asked for: a
   * probe answered by a watch window's row, evaluated at the window's end (absent otherwise).
   */
  readonly evaluatedAt?: number
}

/** The role a probe result implies. Only `primary` may receive writes. */
export type VerifiedRole = 'primary' | 'standby' | 'read-only'

/** A node counts as primary only when it is out of recovery and a new transaction would be writable. */
export function roleOf(probe: ProbeResult): VerifiedRole {
  if (probe.inRecovery) return 'standby'
  return probe.readOnly ? 'read-only' : 'primary'
}

/**
 * What a probe reads, one column each. Every branch that only works on one kind of node sits behind
 * a CASE on `pg_is_in_recovery()`, which PostgreSQL evaluates lazily for volatile functions.
 */
const PROBE_COLUMNS = `pg_is_in_recovery() AS in_recovery,
  current_setting('transaction_read_only') = 'on' AS read_only,
  (SELECT system_identifier::text FROM pg_control_system()) AS system_id,
  CASE WHEN pg_is_in_recovery()
    THEN GREATEST((SELECT timeline_id FROM pg_control_checkpoint()), (SELECT min_recovery_end_timeline FROM pg_control_recovery()),
      (SELECT received_tli FROM pg_stat_wal_receiver))
    ELSE ('x' || substr(pg_walfile_name(pg_current_wal_lsn()), 1, 8))::bit(32)::int END AS timeline,
  CASE WHEN pg_is_in_recovery()
    THEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status IS NULL OR status = 'streaming')
    ELSE true END AS receiving,
  CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli FROM pg_stat_wal_receiver WHERE status = 'streaming') END AS received_timeline,
  CASE WHEN pg_is_in_recovery() THEN pg_last_wal_replay_lsn() ELSE pg_current_wal_lsn() END::text AS lsn,
  CASE WHEN NOT pg_is_in_recovery() THEN 0
    WHEN EXISTS (SELECT 1 FROM pg_stat_wal_receiver WHERE status IS NULL OR status = 'streaming')
      AND pg_last_wal_receive_lsn() <= pg_last_wal_replay_lsn() THEN 0
    ELSE COALESCE(EXTRACT(EPOCH FROM clock_timestamp() - pg_last_xact_replay_timestamp()) * 1000, 0) END::float8 AS lag_ms,
  current_setting('server_version_num')::int AS server_version`

/** One statement, one round trip: the role probe. */
export const PROBE_SQL = `SELECT ${PROBE_COLUMNS}`

interface ProbeRow {
  in_recovery: boolean
  read_only: boolean
  system_id: string | null
  timeline: number | null
  receiving: boolean
  received_timeline: number | null
  lsn: string | null
  lag_ms: number
  server_version: number
}

/**
 * Runs a probe statement on an open client and returns what it found: PROBE_SQL by default, or a
 * watch window (see {@link watchWindowSql}), whose round trip is not the node's latency.
 * Prepared under a name, so repeating it costs the server no parsing or planning.
 */
export async function probeRole(client: ClientBase, now: () => number = () => performance.now(), window: { sql: string; name: string } | null = null): Promise<ProbeResult> {
  const started = now()
  const result = await client.query<ProbeRow>(window === null ? { text: PROBE_SQL, name: 'pgfp_probe' } : { text: window.sql, name: window.name })
  const latencyMs = window === null ? now() - started : Number.NaN
  const row = result.rows[0]
  if (!row) throw new Error('role probe returned no row')
  return {
    inRecovery: row.in_recovery,
    readOnly: row.read_only,
    systemId: row.system_id,
    timeline: row.timeline,
    receiving: row.receiving !== false,
    receivedTimeline: row.received_timeline ?? null,
    lsn: row.lsn,
    lagMs: Math.max(0, Number(row.lag_ms) || 0),
    serverVersion: row.server_version,
    latencyMs,
  }
}

/**
 * The statement of a watch window on a standby: it waits server-side, checking `pg_is_in_recovery()`
 * every `checkMs`, and returns as soon as the node leaves recovery or after `windowMs` — with the
 * probe's row, evaluated after the wait. So one session serves both the promotion watch and the
 * health probe (one connection per node), and a promotion costs no client round trip to notice.
 * One SELECT, no PL/pgSQL: the recursive term sleeps and checks in one expression (measured in
 * bench/WATCH.md: the cheapest of the server-side waits per check). The outer target list is
 * computed only once its FROM item, the aggregate over the whole wait, has its row: after the wait.
 * The window bounds how long the statement holds a snapshot (hot_standby_feedback, vacuum).
 */
export function watchWindowSql(windowMs: number, checkMs: number): string {
  const checks = Math.max(1, Math.round(windowMs / Math.max(1, checkMs)))
  const check = Math.max(0.001, checkMs / 1000).toFixed(3)
  return `WITH RECURSIVE promotion_wait(n, standby) AS (
    SELECT 0, pg_is_in_recovery()
  UNION ALL
    SELECT n + 1, pg_sleep(${check}) IS NOT NULL AND pg_is_in_recovery() FROM promotion_wait WHERE standby AND n < ${checks}
)
SELECT w.checks, ${PROBE_COLUMNS}
FROM (SELECT max(n) AS checks FROM promotion_wait) AS w`
}
