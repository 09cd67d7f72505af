import type { PoolClient } from 'pg'
import { escapeIdentifier } from 'pg'
import type { Lane } from '../endpoint/lane.js'

/** What an `onPromote` hook is told about the change it runs for. */
export interface PromotionContext {
  /** The previous primary (null when none was known). */
  readonly from: string | null
  /** The node about to take writes; the hook's client is connected to it. */
  readonly to: string
  /** The epoch the new primary will have. */
  readonly epoch: number
  /** Why the pool is changing primary. */
  readonly reason: string
}

/**
 * Runs on the new primary before it takes writes; writes wait for it. Throw to report a failure
 * (then `onPromoteFailure` decides: refuse the node, or proceed anyway).
 */
export type PromoteHook = (client: PoolClient, context: PromotionContext) => Promise<void>

/** Options of {@link logicalMirrorHook}. */
export interface LogicalMirrorHookOptions {
  /** Subscriptions to disable: names, or `'all'` of this database's (default `'all'`). */
  subscriptions?: readonly string[] | 'all'
  /**
   * How far past the highest value in use each sequence is moved, to leave room for rows still
   * in flight from the old primary. Default 1000.
   */
  sequenceMargin?: number
}

/**
 * A ready `onPromote` hook for a logical-replication mirror taking over: disables the mirror's
 * subscriptions (so the old primary, if it comes back, cannot overwrite new rows), then moves every
 * sequence owned by a table column past the highest value in use plus a margin (logical
 * replication copies rows, not sequence positions, so the mirror's sequences lag behind and would
 * hand out duplicate keys). All identifiers are quoted with `escapeIdentifier`; values are bound
 * as parameters. Runs in one transaction.
 */
export function logicalMirrorHook(options: LogicalMirrorHookOptions = {}): PromoteHook {
  const margin = options.sequenceMargin ?? 1000
  if (!Number.isInteger(margin) || margin < 0) throw new RangeError(`sequenceMargin must be a whole number >= 0, got ${margin}`)
  return async (client) => {
    const subscriptions =
      options.subscriptions === undefined || options.subscriptions === 'all'
        ? (await client.query<{ name: string }>('SELECT subname AS name FROM pg_subscription WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())')).rows.map((r) => r.name)
        : options.subscriptions
    // Disable first: once no replicated row can arrive, the highest values in use stop moving.
    for (const name of subscriptions) await client.query(`ALTER SUBSCRIPTION ${escapeIdentifier(name)} DISABLE`)
    const { rows } = await client.query<{ seq_schema: string; seq_name: string; tbl_schema: string; tbl_name: string; col_name: string }>(`
      SELECT sn.nspname AS seq_schema, s.relname AS seq_name, tn.nspname AS tbl_schema, t.relname AS tbl_name, a.attname AS col_name
      FROM pg_depend d
      JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S'
      JOIN pg_namespace sn ON sn.oid = s.relnamespace
      JOIN pg_class t ON t.oid = d.refobjid
      JOIN pg_namespace tn ON tn.oid = t.relnamespace
      JOIN pg_attribute a ON a.attrelid = t.oid AND a.attnum = d.refobjsubid
      WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass AND d.deptype IN ('a', 'i')`)
    await client.query('BEGIN')
    try {
      for (const r of rows) {
        const seq = `${escapeIdentifier(r.seq_schema)}.${escapeIdentifier(r.seq_name)}`
        const table = `${escapeIdentifier(r.tbl_schema)}.${escapeIdentifier(r.tbl_name)}`
        const column = escapeIdentifier(r.col_name)
        // Never move a sequence backwards: GREATEST with its own last value.
        await client.query(
          `SELECT setval($1::regclass, GREATEST((SELECT COALESCE(max(${column}), 0) FROM ${table}) + $2::bigint, (SELECT last_value FROM ${seq})), true)`,
          [seq, margin],
        )
      }
      await client.query('COMMIT')
    } catch (err) {
      await client.query('ROLLBACK').catch(() => undefined)
      throw err
    }
  }
}

/** Runs `hook` on a client of the new primary's write lane, releasing it whatever the outcome. */
export function runPromoteHook(lane: Lane, hook: PromoteHook, context: PromotionContext): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    lane.acquire((err, client, release) => {
      if (err || !client || !release) return reject(err ?? new Error('no client for the promotion hook'))
      hook(client, context).then(
        () => {
          release()
          resolve()
        },
        (hookErr: unknown) => {
          // The hook may have left the session mid-transaction: do not give it back to the pool.
          release(true)
          reject(hookErr)
        },
      )
    })
  })
}
