/**
 * The steady traffic of a chaos run, through one FailoverPool: `pool.query` writer loops, a
 * transaction writer on `pool.connect()`, and reader loops on `pool.reader`. Every write carries a
 * unique id and lands in the ledger with its outcome; nothing here decides topology or prints.
 */
import type { PoolClient } from 'pg'
import type { FailoverPool } from '../../src/index.js'
import { classifyTxError, classifyWriteError, describeError, type TxStep } from './classify.js'
import { now, sleep } from './clock.js'
import type { ReadLedger, WriteLedger } from './ledger.js'

export interface WorkloadOptions {
  /** `pool.query` INSERT loops. */
  readonly writers: number
  /** BEGIN / INSERT / COMMIT loops on a client from `pool.connect()`. */
  readonly txWriters: number
  /** Loops reading through `pool.reader`. */
  readonly readers: number
  /**
   * Open-loop writes per second (0: none): issued on a timer whatever is still outstanding, as
   * independent app requests arrive, so a few requests hanging on a dead node do not stop the
   * traffic. At most `openLoopMax` outstanding.
   */
  readonly openLoopPerSec: number
  readonly openLoopMax: number
  /** Pause between two requests of one loop, ms. */
  readonly pauseMs: number
  /** Port of an endpoint by name (to place an OutcomeUnknownError). */
  readonly portOf: (endpoint: string) => number
}

/** No primary key on purpose: a replayed write shows up as a second row with the same id. */
export const TABLE_SQL = `CREATE TABLE chaos_writes (id bigint NOT NULL, writer int NOT NULL, port int NOT NULL, at float8 NOT NULL);
CREATE INDEX chaos_writes_id ON chaos_writes (id)`

const INSERT_SQL =
  'INSERT INTO chaos_writes (id, writer, port, at) VALUES ($1, $2, inet_server_port(), extract(epoch FROM clock_timestamp()) * 1000) RETURNING port, at'
const READ_SQL = 'SELECT inet_server_port() AS port, (SELECT count(*)::int FROM chaos_writes WHERE id = $1) AS n'

interface InsertRow {
  port: number
  at: number
}

export class Workload {
  inFlightWrites = 0
  inFlightReads = 0
  #stopping = false
  #loops: Promise<void> | null = null
  readonly #outstanding = new Set<Promise<void>>()
  #lastAcked = 0

  constructor(
    private readonly pool: FailoverPool,
    private readonly ledger: WriteLedger,
    private readonly reads: ReadLedger,
    private readonly options: WorkloadOptions,
  ) {}

  start(): void {
    if (this.#loops) return
    const loops: Promise<void>[] = []
    const { writers, txWriters, readers } = this.options
    for (let w = 1; w <= writers; w++) loops.push(this.#writer(w))
    for (let t = 1; t <= txWriters; t++) loops.push(this.#txWriter(writers + t))
    for (let r = 0; r < readers; r++) loops.push(this.#reader())
    if (this.options.openLoopPerSec > 0) loops.push(this.#openLoop(writers + txWriters + 1))
    this.#loops = Promise.all(loops).then(() => undefined)
  }

  /** Every loop stops after its current request. */
  stop(): void {
    this.#stopping = true
  }

  /** True once every loop has returned; false if some request is still hanging after `timeoutMs`. */
  async finished(timeoutMs: number): Promise<boolean> {
    if (!this.#loops) return true
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    const all = this.#loops.then(async () => {
      while (this.#outstanding.size > 0) await Promise.all([...this.#outstanding])
      return true as const
    })
    const done = await Promise.race([all, timeout])
    clearTimeout(timer)
    return done
  }

  async #writer(writer: number): Promise<void> {
    while (!this.#stopping) {
      await this.#writeOnce(writer)
      await sleep(this.options.pauseMs)
    }
  }

  async #openLoop(writer: number): Promise<void> {
    const interval = 1000 / this.options.openLoopPerSec
    let next = now()
    while (!this.#stopping) {
      if (this.#outstanding.size < this.options.openLoopMax) {
        const p: Promise<void> = this.#writeOnce(writer).finally(() => this.#outstanding.delete(p))
        this.#outstanding.add(p)
      }
      next += interval
      await sleep(next - now())
    }
  }

  /** One INSERT through pool.query, recorded in the ledger. */
  async #writeOnce(writer: number): Promise<void> {
    const id = this.ledger.begin(writer, now())
    this.inFlightWrites++
    try {
      const res = await this.pool.query<InsertRow>(INSERT_SQL, [id, writer])
      const row = res.rows[0]!
      this.ledger.ack(id, now(), row.port, row.at)
      this.#lastAcked = id
    } catch (err) {
      const c = classifyWriteError(err)
      this.ledger.fail(id, now(), c.outcome, c.reason, c.endpoint === null ? 0 : this.options.portOf(c.endpoint))
      // Never spin: an error that returns at once (no primary, split brain) must not flood the ledger.
      if (c.outcome !== 'unknown') await sleep(20)
    } finally {
      this.inFlightWrites--
    }
  }

  async #txWriter(writer: number): Promise<void> {
    const ignore = (): void => undefined
    while (!this.#stopping) {
      const id = this.ledger.begin(writer, now())
      this.inFlightWrites++
      let step: TxStep = 'connect'
      let client: PoolClient | undefined
      try {
        client = await this.pool.connect()
        // A checked-out client whose server dies emits 'error'; the caller must listen (as with pg.Pool).
        client.on('error', ignore)
        step = 'begin'
        await client.query('BEGIN')
        step = 'insert'
        const res = await client.query<InsertRow>(INSERT_SQL, [id, writer])
        step = 'commit'
        await client.query('COMMIT')
        const row = res.rows[0]!
        this.ledger.ack(id, now(), row.port, row.at)
        this.#lastAcked = id
        client.off('error', ignore)
        client.release()
      } catch (err) {
        const c = classifyTxError(step, err)
        const port = client ? Number((client as unknown as { port?: number }).port ?? 0) : 0
        this.ledger.fail(id, now(), c.outcome, c.reason, c.outcome === 'unknown' ? port : 0)
        // Released with the error: pg-pool destroys it (its 'error' listener stays: it may still fire).
        client?.release(err instanceof Error ? err : true)
        await sleep(20)
      } finally {
        this.inFlightWrites--
      }
      await sleep(this.options.pauseMs)
    }
  }

  async #reader(): Promise<void> {
    while (!this.#stopping) {
      this.inFlightReads++
      try {
        const res = await this.pool.reader.query<{ port: number; n: number }>(READ_SQL, [this.#lastAcked])
        this.reads.success(now(), res.rows[0]!.port)
      } catch (err) {
        this.reads.failure(now(), describeError(err))
        await sleep(20)
      } finally {
        this.inFlightReads--
      }
      await sleep(this.options.pauseMs)
    }
  }
}
