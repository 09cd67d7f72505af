/**
 * A write ledger for failover scenarios: writers insert increasing ids through a pool and record
 * how each write ended, so a test can check afterwards that every acknowledged write is on the
 * final primary, that none is there twice, and when writes resumed after a fault.
 */
import pg from 'pg'
import { isOutcomeUnknownError } from '../../src/index.js'

/** The table a ledger writes to (created by {@link LedgerWriter.create}). */
export const LEDGER_TABLE = 'ledger_writes'

/** How one write ended. */
export type WriteOutcome = 'acked' | 'unknown' | 'failed'

/** One write and what happened to it. */
export interface LedgerEntry {
  readonly id: number
  /** performance.now() when the write was issued and when it ended. */
  readonly issuedAt: number
  endedAt: number
  outcome: WriteOutcome | 'pending'
  /** The server port that acknowledged it (inet_server_port()), for acked writes. */
  port: number | null
  /** The error of a write that did not succeed. */
  error: Error | null
}

/** What the final primary holds compared with the ledger. */
export interface LedgerCheck {
  /** Acknowledged writes that are not on the final primary. */
  readonly lost: number[]
  /** Ids present more than once (a write replayed). */
  readonly duplicated: number[]
  /** Ids present that the ledger never issued. */
  readonly unexpected: number[]
  /** Outcome-unknown writes that did commit (allowed: the truth is unknown to the client). */
  readonly unknownCommitted: number
}

/** Writers looping over `INSERT ... RETURNING inet_server_port()` through a pool, each write recorded. */
export class LedgerWriter {
  readonly entries: LedgerEntry[] = []
  #stopped = false
  #loops: Promise<void>[] = []

  constructor(
    private readonly pool: pg.Pool,
    /**
     * `concurrency` writers (default 2); `pauseMs` after a failed write (default 5); `intervalMs`
     * after each acknowledged one (default 0: back to back). With a pause, a fault usually strikes
     * when no write is in flight and the next write arrives after it, as with real traffic.
     */
    private readonly options: { concurrency?: number; pauseMs?: number; intervalMs?: number } = {},
  ) {}

  /** Creates the ledger table (through the pool, so on the primary). */
  static async create(pool: pg.Pool): Promise<void> {
    await pool.query(`CREATE TABLE IF NOT EXISTS ${LEDGER_TABLE} (id int NOT NULL, port int NOT NULL)`)
  }

  /** Starts the writers. */
  start(): this {
    for (let i = 0; i < (this.options.concurrency ?? 2); i++) this.#loops.push(this.#loop())
    return this
  }

  /** Stops issuing and waits for the writes in flight to end. */
  async stop(): Promise<void> {
    this.#stopped = true
    await Promise.all(this.#loops)
  }

  /** Acknowledged writes. */
  get acked(): LedgerEntry[] {
    return this.entries.filter((e) => e.outcome === 'acked')
  }

  /** Counts by outcome. */
  counts(): Record<WriteOutcome, number> {
    const counts = { acked: 0, unknown: 0, failed: 0 }
    for (const e of this.entries) if (e.outcome !== 'pending') counts[e.outcome]++
    return counts
  }

  /** The first acknowledgement that ended at or after `t` (performance.now()), or null. */
  firstAckAfter(t: number): LedgerEntry | null {
    let first: LedgerEntry | null = null
    for (const e of this.entries) if (e.outcome === 'acked' && e.endedAt >= t && (first === null || e.endedAt < first.endedAt)) first = e
    return first
  }

  /** Compares the ledger with the table on the final primary. */
  async check(primary: pg.ClientConfig): Promise<LedgerCheck> {
    const client = new pg.Client(primary)
    await client.connect()
    try {
      const { rows } = await client.query<{ id: number; n: number }>(`SELECT id, count(*)::int AS n FROM ${LEDGER_TABLE} GROUP BY id`)
      const present = new Map(rows.map((r) => [r.id, r.n]))
      const issued = new Map(this.entries.map((e) => [e.id, e]))
      return {
        lost: this.acked.filter((e) => !present.has(e.id)).map((e) => e.id),
        duplicated: rows.filter((r) => r.n > 1).map((r) => r.id),
        unexpected: rows.filter((r) => !issued.has(r.id)).map((r) => r.id),
        unknownCommitted: this.entries.filter((e) => e.outcome === 'unknown' && present.has(e.id)).length,
      }
    } finally {
      await client.end()
    }
  }

  async #loop(): Promise<void> {
    while (!this.#stopped) {
      const entry: LedgerEntry = { id: this.entries.length + 1, issuedAt: performance.now(), endedAt: 0, outcome: 'pending', port: null, error: null }
      this.entries.push(entry)
      try {
        const { rows } = await this.pool.query<{ port: number }>(`INSERT INTO ${LEDGER_TABLE} (id, port) VALUES ($1, inet_server_port()) RETURNING port`, [entry.id])
        entry.outcome = 'acked'
        entry.port = rows[0]!.port
        entry.endedAt = performance.now()
        if (this.options.intervalMs) await new Promise((resolve) => setTimeout(resolve, this.options.intervalMs))
      } catch (err) {
        entry.outcome = isOutcomeUnknownError(err) ? 'unknown' : 'failed'
        entry.error = err as Error
        // A failed write is retried as a new write (a new id) after a short pause, as an app would.
        await new Promise((resolve) => setTimeout(resolve, this.options.pauseMs ?? 5))
      } finally {
        if (entry.endedAt === 0) entry.endedAt = performance.now()
      }
    }
  }
}

/**
 * Resolves with performance.now() at the first moment a fresh connection to `config` finds the node
 * writable (out of recovery, not read-only), polling every `intervalMs` on new connections.
 */
export async function whenWritable(config: pg.ClientConfig, timeoutMs = 60_000, intervalMs = 2): Promise<number> {
  const deadline = performance.now() + timeoutMs
  for (;;) {
    const client = new pg.Client({ ...config, connectionTimeoutMillis: 1_000 })
    client.on('error', () => undefined)
    try {
      await client.connect()
      const { rows } = await client.query<{ writable: boolean }>("SELECT NOT pg_is_in_recovery() AND current_setting('transaction_read_only') = 'off' AS writable")
      if (rows[0]!.writable) return performance.now()
    } catch {
      // not up yet
    } finally {
      await client.end().catch(() => undefined)
    }
    if (performance.now() > deadline) throw new Error(`${config.host}:${config.port} did not become writable within ${timeoutMs} ms`)
    await new Promise((resolve) => setTimeout(resolve, intervalMs))
  }
}
