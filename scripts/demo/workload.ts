/**
 * The demo's traffic: a few writer loops inserting unique ids and a few reader loops counting
 * rows, all through one FailoverPool. It records what happened (which ids were acknowledged and
 * when, which failed and how) and nothing else: no printing, no topology decisions.
 */
import type { FailoverPool } from '../../src/index.js'
import { NoPrimaryError, isOutcomeUnknownError } from '../../src/index.js'

/** How a failed request is counted. */
export type FailureClass = 'outcomeUnknown' | 'noPrimary' | 'other'

export interface FailureCounts {
  outcomeUnknown: number
  noPrimary: number
  other: number
}

export interface WorkloadOptions {
  writers: number
  readers: number
  /** performance.now() after which no loop starts another request. */
  deadline: number
}

const INSERT_SQL = 'INSERT INTO demo_ledger (id, writer) VALUES ($1, $2) RETURNING inet_server_port() AS port'
const READ_SQL = 'SELECT count(*)::bigint AS n FROM demo_ledger'

/** Counts events of a monotonic timestamp series inside a trailing window, in O(1) amortised. */
class TrailingCount {
  private head = 0
  constructor(private readonly times: readonly number[]) {}
  /** Events at or after `since`; `since` must never decrease between calls. */
  since(since: number): number {
    while (this.head < this.times.length && this.times[this.head]! < since) this.head++
    return this.times.length - this.head
  }
}

export class Workload {
  /** Acknowledged ids, in acknowledgement order. */
  readonly ackedIds: number[] = []
  /** performance.now() of each acknowledgement, parallel to {@link ackedIds} (non-decreasing). */
  readonly ackTimes: number[] = []
  /** Acknowledged writes per server port that acknowledged them. */
  readonly ackedByPort = new Map<number, number>()
  /** Ids whose insert failed, by class. */
  readonly failedIds: Record<FailureClass, number[]> = { outcomeUnknown: [], noPrimary: [], other: [] }
  /** Failed reads, by class. */
  readonly readFailures: FailureCounts = { outcomeUnknown: 0, noPrimary: 0, other: 0 }
  /** Distinct messages of 'other' failures (writes and reads) with their counts. */
  readonly otherMessages = new Map<string, number>()
  /** performance.now() of each successful read. */
  readonly readTimes: number[] = []
  inFlightWrites = 0
  inFlightReads = 0

  private nextId = 1
  private stopping = false
  private loops: Promise<void> | null = null
  private readonly writeWindow = new TrailingCount(this.ackTimes)
  private readonly readWindow = new TrailingCount(this.readTimes)

  constructor(
    private readonly pool: FailoverPool,
    private readonly options: WorkloadOptions,
  ) {}

  /** Launches every loop; they run until {@link stop} or the deadline. */
  start(): void {
    if (this.loops) return
    const loops: Promise<void>[] = []
    for (let w = 1; w <= this.options.writers; w++) loops.push(this.writer(w))
    for (let r = 1; r <= this.options.readers; r++) loops.push(this.reader())
    this.loops = Promise.all(loops).then(() => undefined)
  }

  /** Asks every loop to stop after its current request. */
  stop(): void {
    this.stopping = true
  }

  /** Resolves true once every loop has returned, or false after `timeoutMs`. */
  async finished(timeoutMs: number): Promise<boolean> {
    if (!this.loops) return true
    let timer: NodeJS.Timeout | undefined
    const timeout = new Promise<false>((resolve) => {
      timer = setTimeout(() => resolve(false), timeoutMs)
    })
    const done = await Promise.race([this.loops.then(() => true as const), timeout])
    clearTimeout(timer)
    return done
  }

  get acked(): number {
    return this.ackedIds.length
  }
  get reads(): number {
    return this.readTimes.length
  }
  /** Failed writes by class (counts). */
  get writeFailures(): FailureCounts {
    return {
      outcomeUnknown: this.failedIds.outcomeUnknown.length,
      noPrimary: this.failedIds.noPrimary.length,
      other: this.failedIds.other.length,
    }
  }

  /** Writes acknowledged / reads completed in the last `windowMs` before `now`. */
  rates(now: number, windowMs = 1000): { writes: number; reads: number } {
    return { writes: this.writeWindow.since(now - windowMs), reads: this.readWindow.since(now - windowMs) }
  }

  private running(): boolean {
    return !this.stopping && performance.now() < this.options.deadline
  }

  private async writer(writer: number): Promise<void> {
    while (this.running()) {
      const id = this.nextId++
      this.inFlightWrites++
      try {
        const res = await this.pool.query(INSERT_SQL, [id, writer])
        const at = performance.now()
        this.ackedIds.push(id)
        this.ackTimes.push(at)
        const port = Number((res.rows[0] as { port?: unknown } | undefined)?.port)
        this.ackedByPort.set(port, (this.ackedByPort.get(port) ?? 0) + 1)
      } catch (err) {
        const kind = this.classify(err)
        this.failedIds[kind].push(id)
        // An unexpected error must not turn the loop into a busy spin.
        if (kind === 'other') await sleep(50)
      } finally {
        this.inFlightWrites--
      }
    }
  }

  private async reader(): Promise<void> {
    while (this.running()) {
      this.inFlightReads++
      try {
        // Reads go to the replicas through pool.reader: a replica failing mid-read is retried elsewhere.
        await this.pool.reader.query(READ_SQL)
        this.readTimes.push(performance.now())
      } catch (err) {
        const kind = this.classify(err)
        this.readFailures[kind]++
        if (kind === 'other') await sleep(50)
      } finally {
        this.inFlightReads--
      }
    }
  }

  private classify(err: unknown): FailureClass {
    if (isOutcomeUnknownError(err)) return 'outcomeUnknown'
    if ((err instanceof NoPrimaryError)) return 'noPrimary'
    const message = err instanceof Error ? err.message : String(err)
    const code = (err as { code?: unknown } | null)?.code
    const key = `${typeof code === 'string' ? `${code}: ` : ''}${message}`.slice(0, 200)
    this.otherMessages.set(key, (this.otherMessages.get(key) ?? 0) + 1)
    return 'other'
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms))
}

/** Largest gap between consecutive timestamps of a sorted series, or null with fewer than two. */
export function longestGap(times: readonly number[]): { gapMs: number; from: number; to: number } | null {
  let best: { gapMs: number; from: number; to: number } | null = null
  for (let i = 1; i < times.length; i++) {
    const gap = times[i]! - times[i - 1]!
    if (best === null || gap > best.gapMs) best = { gapMs: gap, from: times[i - 1]!, to: times[i]! }
  }
  return best
}

/** First timestamp of a sorted series that is >= `after`, or null. */
export function firstAtOrAfter(times: readonly number[], after: number): number | null {
  let lo = 0
  let hi = times.length
  while (lo < hi) {
    const mid = (lo + hi) >>> 1
    if (times[mid]! < after) lo = mid + 1
    else hi = mid
  }
  return lo < times.length ? times[lo]! : null
}
