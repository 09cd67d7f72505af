import type { PoolClient, QueryResult } from 'pg'
import { holdClient } from '../endpoint/client-cut.js'
import { parseLsn } from '../endpoint/lsn.js'
import { requestLog } from '../log.js'
import { type ConsistencyContext, requireLsn } from './consistency.js'
import type { RoutingHost, Target } from './routing-host.js'

const CAPTURE_LSN_SQL = 'SELECT pg_current_wal_insert_lsn()::text AS lsn'
const REPLAYED_LSN_SQL = 'SELECT pg_last_wal_replay_lsn()::text AS lsn'

/** Records the primary's WAL position after a write (same session), so this caller's later reads see it. */
export function captureLsn(client: PoolClient, release: (err?: Error | boolean) => void, context: ConsistencyContext, done: () => void): void {
  client.query(CAPTURE_LSN_SQL, (err: Error | undefined, res: QueryResult<{ lsn: string }>) => {
    release(err)
    const lsn = res?.rows[0]?.lsn
    if (err || !lsn) context.pendingWrite = true
    else requireLsn(context, parseLsn(lsn))
    done()
  })
}

/**
 * The position a read must see. If a checked-out primary client may have written since the last
 * capture, the primary's position is learned first (one round trip on the primary).
 */
export function resolveMinLsn(host: RoutingHost, context: ConsistencyContext, since: number, run: (minLsn: bigint | null) => void): void {
  if (!context.pendingWrite) return run(context.minLsn)
  host.target('write', since, null, (err, target) => {
    if (err || !target) return run(null) // the read proceeds and surfaces the same outage itself
    target.lane.acquire((acquireErr, client, release) => {
      if (acquireErr || !client || !release) return run(context.minLsn)
      // The library's own checkout: its socket dying during the read must not crash the process.
      const unhold = holdClient(client)
      captureLsn(client, release, context, () => {
        unhold()
        if (context.minLsn !== null) context.pendingWrite = false
        run(context.minLsn)
      })
    })
  })
}

/**
 * Makes sure a replica has replayed `minLsn` before a read runs there: one round trip when it
 * has; otherwise a server-side wait bounded by `waitMs`, then one more check.
 */
export function ensureReplayed(target: Target, client: PoolClient, minLsn: bigint, waitMs: number, done: (ok: boolean) => void): void {
  const check = (then: (ok: boolean) => void): void => {
    client.query(REPLAYED_LSN_SQL, (err: Error | undefined, res: QueryResult<{ lsn: string | null }>) => {
      const lsn = res?.rows[0]?.lsn
      if (err || !lsn) return then(false)
      const replayed = parseLsn(lsn)
      requestLog('%s has replayed %s, needs %s', target.endpoint.name, lsn, minLsn)
      target.endpoint.noteReplayed(replayed)
      then(replayed >= minLsn)
    })
  }
  check((ok) => {
    requestLog('read-your-writes on %s: %s', target.endpoint.name, ok ? 'caught up' : 'behind, waiting')
    if (ok || waitMs <= 0) return done(ok)
    client.query(replayWaitSql(minLsn, waitMs), (err: Error | undefined) => {
      if (err) return done(false)
      check(done)
    })
  })
}

/** A server-side wait (no client polling) until this standby has replayed `lsn`, at most `waitMs`. */
function replayWaitSql(lsn: bigint, waitMs: number): string {
  const target = `${(lsn >> 32n).toString(16)}/${(lsn & 0xffffffffn).toString(16)}`
  return `DO $pgfp$ DECLARE deadline timestamptz := clock_timestamp() + interval '${(waitMs / 1000).toFixed(3)} seconds';
BEGIN
  WHILE pg_last_wal_replay_lsn() < '${target}'::pg_lsn AND clock_timestamp() < deadline LOOP PERFORM pg_sleep(0.001); END LOOP;
END $pgfp$`
}
