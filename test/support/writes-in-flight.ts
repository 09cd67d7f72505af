/**
 * Writes in flight when a connection is lost, for the tests that prove what an application sees of
 * a write whose outcome is unknown (through the pool, an ORM or a driver adapter) and that it is
 * never replayed.
 *
 * A held write waits for advisory lock {@link HOLD_LOCK}, which a session of the test holds on the
 * primary ({@link holdLock}): it is certainly running, and not committed, when its connection is
 * lost, however slow the machine, and a replay anywhere else would take the lock and commit at
 * once. {@link createHoldTriggers} makes a table's rows wait in their INSERT or at COMMIT, chosen by
 * their `note`; {@link heldStatements} waits until they do. {@link holdTable} holds reads as well.
 */
import pg from 'pg'
import { expect } from 'vitest'
import type { Cluster, ClusterNode } from './cluster.js'
import type { Resources } from './pools.js'

/** The advisory lock held writes wait for. */
export const HOLD_LOCK = 7

/**
 * Creates `hold()` and, on `table` (which has a text column `note`), through `db` (a pool, or an
 * ORM's raw query), the triggers that make a row
 * wait for {@link HOLD_LOCK}: in its INSERT when its note starts with 'held in insert', at COMMIT
 * (a deferred constraint trigger runs then) when it starts with 'held at commit'.
 */
export async function createHoldTriggers(db: { query(sql: string): Promise<unknown> }, table: string): Promise<void> {
  await db.query(`CREATE FUNCTION hold() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN PERFORM pg_advisory_xact_lock(${HOLD_LOCK}); RETURN NEW; END $$`)
  await db.query(`CREATE TRIGGER hold_insert BEFORE INSERT ON ${table} FOR EACH ROW WHEN (NEW.note LIKE 'held in insert%') EXECUTE FUNCTION hold()`)
  await db.query(
    `CREATE CONSTRAINT TRIGGER hold_commit AFTER INSERT ON ${table} DEFERRABLE INITIALLY DEFERRED FOR EACH ROW WHEN (NEW.note LIKE 'held at commit%') EXECUTE FUNCTION hold()`,
  )
}

/** A session on `node` holding {@link HOLD_LOCK}, closed at `res`'s teardown. */
export async function holdLock(res: Pick<Resources, 'track'>, node: ClusterNode): Promise<pg.Client> {
  const holder = res.track(new pg.Client(node.config))
  holder.on('error', () => undefined) // the node may be killed under it
  await holder.connect()
  await holder.query(`SELECT pg_advisory_lock(${HOLD_LOCK})`)
  return holder
}

/**
 * A session on `node` holding `table` in ACCESS EXCLUSIVE mode (an open transaction), closed at
 * `res`'s teardown: every statement on the table waits, reads included. For reads the pool must be
 * free to re-run, which {@link HOLD_LOCK} would not do: a statement that calls an advisory-lock
 * function is not certainly read-only. The lock is WAL-logged, so a standby's reads of the table
 * wait too until it is promoted or the lock is released.
 */
export async function holdTable(res: Pick<Resources, 'track'>, node: ClusterNode, table: string): Promise<pg.Client> {
  const holder = res.track(new pg.Client(node.config))
  holder.on('error', () => undefined) // the node may be stopped under it
  await holder.connect()
  await holder.query('BEGIN')
  await holder.query(`LOCK TABLE ${table} IN ACCESS EXCLUSIVE MODE`)
  return holder
}

/** The sessions of pg_stat_activity that wait for a lock in a statement `statements` (a condition on `query`) matches. */
const waitingIn = (statements: string): string => `wait_event_type = 'Lock' AND (${statements})`

/** Waits (polling, up to `timeoutMs`) until exactly `n` statements that `statements` matches wait for a lock on `node`. */
export async function heldStatements(cluster: Cluster, node: ClusterNode, statements: string, n: number, timeoutMs = 10_000): Promise<void> {
  const sql = `SELECT count(*)::int AS n FROM pg_stat_activity WHERE ${waitingIn(statements)}`
  await expect.poll(async () => (await cluster.sql<{ n: number }>(node, sql))[0]!.n, { timeout: timeoutMs, interval: 20 }).toBe(n)
}

/** Terminates (FATAL 57P01) the backends on `node` of the statements that `statements` matches and that wait for a lock. */
export async function terminateHeld(cluster: Cluster, node: ClusterNode, statements: string): Promise<void> {
  await cluster.sql(node, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE ${waitingIn(statements)}`)
}

/** The outcome of an operation: its value or its error. */
export type Settled<T> = { ok: true; value: T } | { ok: false; error: unknown }

/** Settles `p` into its value or its error (never an unhandled rejection). */
export const settle = <T>(p: Promise<T>): Promise<Settled<T>> => p.then((value) => ({ ok: true as const, value }), (error: unknown) => ({ ok: false as const, error }))

/** The error of an operation that had to fail (an Error saying so if it succeeded instead). */
export const errorOf = (s: Settled<unknown>): unknown => (s.ok ? new Error('expected a failure, got a result') : s.error)

/** True when the pool's outcome-unknown mark is an own property of `err`: the error object the pool marked, or a copy of its properties. */
export const carriesMark = (err: unknown): boolean => Object.getOwnPropertyDescriptor(err, 'pgFailoverPoolOutcome')?.value === 'unknown'

/** A loop issuing one write at a time (notes 'loop 0', 'loop 1', ...), each as soon as the previous one ended. */
export interface WriteLoop<T> {
  /** What each acknowledged write resolved with, in order. */
  readonly acknowledged: T[]
  /** The writes that failed, with their notes. */
  readonly failed: Array<{ note: string; error: unknown }>
  /** Stops issuing and waits for the write in flight to end. */
  stop(): Promise<void>
}

/**
 * Starts a {@link WriteLoop} of `write`, called with the write's note and its number (0, 1, ...:
 * the number in the note, for a table keyed by it). A failed write is recorded and the loop goes
 * on, as an application would: the test then judges each failure against what the table holds.
 */
export function writeLoop<T>(write: (note: string, i: number) => Promise<T>): WriteLoop<T> {
  const acknowledged: T[] = []
  const failed: Array<{ note: string; error: unknown }> = []
  let stopped = false
  const loop = (async () => {
    for (let i = 0; !stopped; i++) {
      const note = `loop ${i}`
      try {
        acknowledged.push(await write(note, i))
      } catch (error) {
        failed.push({ note, error })
      }
    }
  })()
  return {
    acknowledged,
    failed,
    async stop() {
      stopped = true
      await loop
    },
  }
}
