import type { PoolClient } from 'pg'
import { escapeIdentifier } from 'pg'
import type { Clock } from '../clock.js'
import { cutClient, holdClient } from '../endpoint/client-cut.js'
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

/** A promotion hook on its way: its outcome, and how to stop waiting for it. */
export interface RunningHook {
  /** Resolves when the hook succeeded; rejects when it failed, timed out or was aborted. */
  readonly done: Promise<void>
  /** Stops waiting (the pool is ending): its client is cut and `done` rejects. */
  abort(): void
}

/**
 * Runs `hook` on a client of the new primary's write lane, within `timeoutMs` (checkout included).
 * The client listens for `'error'` while the hook holds it (a node dying under the hook must not
 * crash the process). On success it goes back to the pool; otherwise — failure, deadline, abort —
 * it is cut: the hook may have left its session mid-transaction, or still be running there.
 */
export function runPromoteHook(lane: Lane, hook: PromoteHook, context: PromotionContext, timeoutMs: number, clock: Clock): RunningHook {
  let finish!: (err?: Error) => void
  const done = new Promise<void>((resolve, reject) => {
    let settled = false
    let held: { client: PoolClient; release: (err?: Error | boolean) => void; unhold: () => void } | null = null
    const timer = clock.setTimeout(() => finish(new Error(`onPromote on ${context.to} did not finish within ${timeoutMs} ms (onPromoteTimeoutMs)`)), timeoutMs)
    finish = (err) => {
      if (settled) return
      settled = true
      clock.clearTimeout(timer)
      if (held) {
        held.unhold()
        if (err) cutClient(held.client)
        held.release(err ? true : undefined)
      }
      if (err) reject(err)
      else resolve()
    }
    lane.acquire((err, client, release) => {
      if (settled) {
        // Timed out or aborted while waiting for a connection: give it straight back.
        if (client && release) release()
        return
      }
      if (err || !client || !release) return finish(err ?? new Error('no client for the promotion hook'))
      held = { client, release, unhold: holdClient(client) }
      Promise.resolve()
        .then(() => hook(client, context))
        .then(
          () => finish(),
          (hookErr: unknown) => finish(hookErr instanceof Error ? hookErr : new Error(String(hookErr))),
        )
    })
  })
  return { done, abort: () => finish(new Error('the pool ended while onPromote ran')) }
}
