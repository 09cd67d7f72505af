import type { FailoverPool } from '../../src/failover-pool.js'
import { isFailoverPoolError, isOutcomeUnknownError } from '../../src/errors.js'
import { ListenerError, type World } from './world.js'

/** One request of a simulated application, from its call to its answer. */
export interface InFlight {
  readonly label: string
  readonly startedAt: number
}

/** The simulated applications sharing one pool, and what they are waiting for. */
export class Apps {
  readonly inFlight = new Set<InFlight>()
  /** No new requests once set (before `end()`). */
  stopping = false
  readonly #loops: Array<Promise<void>> = []
  #ids = 0
  /** Requests answered, by outcome. */
  readonly counts = { acked: 0, unknown: 0, failed: 0, reads: 0 }

  constructor(
    private readonly world: World,
    private readonly pool: FailoverPool,
  ) {}

  /** Runs `request`, tracking it as in flight (bounded); an unexpected error (a library bug) is a violation. */
  async track<T>(label: string, request: () => Promise<T>): Promise<T | Error> {
    const entry: InFlight = { label, startedAt: this.world.clock.now() }
    this.inFlight.add(entry)
    try {
      return await request()
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      if (!expected(error)) this.world.fail('unexpected-error', `${label}: ${error.name}: ${error.message}`)
      return error
    } finally {
      this.inFlight.delete(entry)
    }
  }

  #think(lo: number, hi: number): Promise<void> {
    return this.world.clock.sleep(this.world.clock.between(lo, hi))
  }

  /** `count` pool.query writers. */
  writers(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.#write())
  }

  /** Writers that check a client out and write in a transaction. */
  txWriters(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.#txWrite())
  }

  /** Readers through `pool.reader`. */
  readers(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.#read())
  }

  /** An application that declares its own transaction read-only and writes in it: its 25006 is its own. */
  readOnlyTransactions(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.#readOnlyTx())
  }

  /** Callers that write then read inside `withReadYourWrites`. */
  readYourWrites(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.pool.withReadYourWrites(async () => {
      await this.#write()
      await this.#read()
    }))
  }

  /**
   * Callers that set session state on a checked-out client (a tenant, as row-level-security apps
   * do per request) and read it back: the answer must be their own setting, or an error — never a
   * read answered on another session.
   */
  sessions(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.#sessionRead())
  }

  /**
   * Callers that check a replica client out (`pool.reader.connect()`) and hold it a while, querying
   * now and then: what a removed node's drain must let finish, and cut once `drainTimeoutMs` is over.
   */
  readerCheckouts(count: number): void {
    for (let i = 0; i < count; i++) this.#loop(() => this.#heldRead())
  }

  /** Listeners that throw on the given events. */
  throwingListeners(events: readonly string[]): void {
    for (const event of events) {
      this.pool.on(event as 'failover', () => {
        throw new ListenerError(event)
      })
    }
  }

  /** Resolves once every loop has stopped (after `stopping`). */
  async drained(): Promise<void> {
    await Promise.all(this.#loops)
  }

  #loop(body: () => Promise<unknown>): void {
    const run = async (): Promise<void> => {
      await this.#think(0, 20)
      while (!this.stopping && !this.pool.ending) {
        await body()
        await this.#think(1, 30)
      }
    }
    this.#loops.push(run())
  }

  async #write(): Promise<void> {
    const id = `w${++this.#ids}`
    const record = this.world.newWrite(id, 'query')
    const result = await this.track(`write ${id}`, () => this.pool.query('INSERT INTO ledger (id) VALUES ($1)', [id]))
    if (!(result instanceof Error)) {
      this.counts.acked++
      return this.world.acked(record)
    }
    record.outcome = isOutcomeUnknownError(result) ? 'unknown' : 'failed'
    this.counts[record.outcome]++
  }

  async #txWrite(): Promise<void> {
    const id = `t${++this.#ids}`
    const record = this.world.newWrite(id, 'tx')
    const client = await this.track(`checkout for ${id}`, () => this.pool.connect())
    if (client instanceof Error) {
      record.outcome = 'failed'
      return
    }
    let failure: Error | null = null
    for (const [sql, values] of [['BEGIN', []], ['INSERT INTO ledger (id) VALUES ($1)', [id]], ['COMMIT', []]] as const) {
      const result = await this.track(`${sql.split(' ')[0]} ${id}`, () => client.query(sql, [...values]))
      if (result instanceof Error) {
        failure = result
        break
      }
    }
    client.release(failure ?? undefined)
    if (failure === null) {
      this.counts.acked++
      return this.world.acked(record)
    }
    record.outcome = isOutcomeUnknownError(failure) ? 'unknown' : 'failed'
    this.counts[record.outcome]++
  }

  async #read(): Promise<void> {
    const result = await this.track('read', () => this.pool.reader.query('SELECT count(*)::int AS n FROM ledger'))
    if (result instanceof Error) return
    this.counts.reads++
    const stale = result.rows[0]?.stale as { invariant: string; detail: string } | null | undefined
    if (stale) this.world.fail(stale.invariant, stale.detail)
  }

  async #sessionRead(): Promise<void> {
    const tenant = `tenant${++this.#ids}`
    const client = await this.track(`checkout for ${tenant}`, () => this.pool.connect())
    if (client instanceof Error) return
    let failure: Error | undefined
    const set = await this.track(`SET ${tenant}`, () => client.query(`SET app.tenant = '${tenant}'`))
    if (set instanceof Error) failure = set
    else {
      const read = await this.track(`read as ${tenant}`, () => client.query("SELECT current_setting('app.tenant', true) AS tenant"))
      if (read instanceof Error) failure = read
      else if (read.rows[0]?.tenant !== tenant) this.world.fail('read-without-session', `a read on ${tenant}'s checked-out client answered as '${read.rows[0]?.tenant}'`)
    }
    client.release(failure)
  }

  async #heldRead(): Promise<void> {
    const client = await this.track('reader checkout', () => this.pool.reader.connect())
    if (client instanceof Error) return
    let failure: Error | undefined
    const until = this.world.clock.now() + this.world.clock.between(50, 1_500)
    while (failure === undefined && this.world.clock.now() < until) {
      const result = await this.track('read on a held replica client', () => client.query('SELECT 1'))
      if (result instanceof Error) failure = result
      else await this.#think(20, 200)
    }
    client.release(failure)
  }

  async #readOnlyTx(): Promise<void> {
    const id = `r${++this.#ids}`
    const client = await this.track(`checkout for read-only ${id}`, () => this.pool.connect())
    if (client instanceof Error) return
    let failure: Error | undefined
    let readOnly: Error | undefined
    for (const sql of ['BEGIN READ ONLY', 'INSERT INTO ledger (id) VALUES ($1)', 'ROLLBACK']) {
      const result = await this.track(`${sql} (${id})`, () => client.query(sql, sql.startsWith('INSERT') ? [id] : []))
      if (!(result instanceof Error)) continue
      if ((result as { code?: string }).code === '25006') readOnly = result
      else {
        failure = result
        break
      }
    }
    // Some ORMs hand the last error back on release: the pool then hears of the 25006 too.
    client.release(failure ?? (this.world.clock.chance(0.5) ? readOnly : undefined))
  }
}

/** Errors an application may legitimately get during faults; anything else is a library bug. */
function expected(err: Error): boolean {
  if (err instanceof ListenerError) return false
  if (isFailoverPoolError(err) || isOutcomeUnknownError(err)) return true
  if ((err as Error) instanceof TypeError || (err as Error) instanceof RangeError || (err as Error) instanceof ReferenceError) return false
  if ((err as Error).name === 'LaneRetiredError') return false
  if (/Release called on client which has already been released/.test((err as Error).message)) return false
  return true
}
