/**
 * The in-memory ledger of every write (and read) the workload made: when it was issued, how it
 * ended, which server port acknowledged it and the server's clock_timestamp() at the INSERT.
 * Write ids are 1, 2, 3, ... in issue order (the id is the index + 1), so "ids issued after t" is
 * a binary search. Columns are typed arrays: they live outside the JS heap, so the heap samples
 * taken for the memory check measure the pool, not the ledger.
 */

export const OUTCOME = { pending: 0, acked: 1, clean: 2, unknown: 3, other: 4 } as const
export type Outcome = Exclude<keyof typeof OUTCOME, 'pending'>
export type OutcomeCounts = Record<Outcome | 'pending', number>

type Typed = Float64Array | Uint8Array | Uint16Array | Uint32Array

/** A growable typed array addressed by index. */
class Column<T extends Typed> {
  array: T
  constructor(private readonly make: (n: number) => T) {
    this.array = make(1024)
  }
  ensure(n: number): void {
    if (n <= this.array.length) return
    let size = this.array.length
    while (size < n) size *= 2
    const next = this.make(size)
    next.set(this.array as never)
    this.array = next
  }
}

/** An append-only series of (time, value) pairs, times non-decreasing. */
export class Series {
  readonly #t = new Column((n) => new Float64Array(n))
  readonly #v = new Column((n) => new Uint16Array(n))
  length = 0

  push(t: number, v: number): void {
    this.#t.ensure(this.length + 1)
    this.#v.ensure(this.length + 1)
    this.#t.array[this.length] = t
    this.#v.array[this.length] = v
    this.length++
  }
  time(i: number): number {
    return this.#t.array[i]!
  }
  value(i: number): number {
    return this.#v.array[i]!
  }
  /** Index of the first entry at or after `t` (length when none). */
  firstAtOrAfter(t: number): number {
    let lo = 0
    let hi = this.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.#t.array[mid]! < t) lo = mid + 1
      else hi = mid
    }
    return lo
  }
}

/** Interns short strings (error reasons) as small integers. */
class Interner {
  readonly #ids = new Map<string, number>()
  readonly names: string[] = ['']
  id(text: string): number {
    let id = this.#ids.get(text)
    if (id === undefined) {
      id = this.names.length
      this.names.push(text)
      this.#ids.set(text, id)
    }
    return id
  }
}

export class WriteLedger {
  #count = 0
  readonly #writer = new Column((n) => new Uint8Array(n))
  readonly #issuedAt = new Column((n) => new Float64Array(n))
  readonly #doneAt = new Column((n) => new Float64Array(n))
  readonly #outcome = new Column((n) => new Uint8Array(n))
  readonly #port = new Column((n) => new Uint16Array(n))
  readonly #serverAt = new Column((n) => new Float64Array(n))
  readonly #reason = new Column((n) => new Uint16Array(n))
  readonly #reasons = new Interner()
  /** Acknowledgements in completion order: (time, port). */
  readonly acks = new Series()
  /** Failures in completion order: (time, outcome code). */
  readonly failures = new Series()
  readonly totals: OutcomeCounts = { acked: 0, clean: 0, unknown: 0, other: 0, pending: 0 }

  /** Number of writes issued; valid ids are 1..count. */
  get count(): number {
    return this.#count
  }

  /** Registers a new write issued at `at` by `writer`; returns its id. */
  begin(writer: number, at: number): number {
    const i = this.#count++
    for (const c of [this.#writer, this.#issuedAt, this.#doneAt, this.#outcome, this.#port, this.#serverAt, this.#reason]) c.ensure(this.#count)
    this.#writer.array[i] = writer
    this.#issuedAt.array[i] = at
    this.totals.pending++
    return i + 1
  }

  ack(id: number, at: number, port: number, serverAt: number): void {
    this.#settle(id, at, OUTCOME.acked, port, '')
    this.#serverAt.array[id - 1] = serverAt
    this.acks.push(at, port)
  }

  /** A failed write; `port` is the node it was sent to when known (0 otherwise). */
  fail(id: number, at: number, outcome: Exclude<Outcome, 'acked'>, reason: string, port = 0): void {
    this.#settle(id, at, OUTCOME[outcome], port, reason)
    this.failures.push(at, OUTCOME[outcome])
  }

  writer(id: number): number {
    return this.#writer.array[id - 1]!
  }
  issuedAt(id: number): number {
    return this.#issuedAt.array[id - 1]!
  }
  doneAt(id: number): number {
    return this.#doneAt.array[id - 1]!
  }
  outcomeCode(id: number): number {
    return this.#outcome.array[id - 1]!
  }
  outcome(id: number): Outcome | 'pending' {
    return OUTCOME_NAMES[this.#outcome.array[id - 1]!]!
  }
  port(id: number): number {
    return this.#port.array[id - 1]!
  }
  serverAt(id: number): number {
    return this.#serverAt.array[id - 1]!
  }
  reason(id: number): string {
    return this.#reasons.names[this.#reason.array[id - 1]!] ?? ''
  }

  /** The first id issued at or after `t` (count + 1 when none yet). */
  firstIdIssuedAtOrAfter(t: number): number {
    let lo = 0
    let hi = this.#count
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      if (this.#issuedAt.array[mid]! < t) lo = mid + 1
      else hi = mid
    }
    return lo + 1
  }

  /** Outcome counts of the ids in [fromId, toId). */
  countRange(fromId: number, toId: number): OutcomeCounts {
    const counts: OutcomeCounts = { acked: 0, clean: 0, unknown: 0, other: 0, pending: 0 }
    for (let id = Math.max(1, fromId); id < Math.min(toId, this.#count + 1); id++) counts[this.outcome(id)]++
    return counts
  }

  /** Distinct failure reasons of one outcome with their counts, most frequent first. */
  reasonsOf(outcome: Exclude<Outcome, 'acked'>, fromId = 1, toId = this.#count + 1): Array<[string, number]> {
    const counts = new Map<string, number>()
    const code = OUTCOME[outcome]
    for (let id = Math.max(1, fromId); id < Math.min(toId, this.#count + 1); id++) {
      if (this.#outcome.array[id - 1] !== code) continue
      const r = this.reason(id)
      counts.set(r, (counts.get(r) ?? 0) + 1)
    }
    return [...counts].sort((a, b) => b[1] - a[1])
  }

  #settle(id: number, at: number, code: number, port: number, reason: string): void {
    const i = id - 1
    if (this.#outcome.array[i] !== OUTCOME.pending) throw new Error(`write ${id} settled twice`)
    this.#outcome.array[i] = code
    this.#doneAt.array[i] = at
    this.#port.array[i] = port
    this.#reason.array[i] = reason === '' ? 0 : this.#reasons.id(reason)
    this.totals.pending--
    this.totals[OUTCOME_NAMES[code] as Outcome]++
  }
}

const OUTCOME_NAMES = ['pending', 'acked', 'clean', 'unknown', 'other'] as const

/** Reads: completion time and the port that served them (0 when the read failed). */
export class ReadLedger {
  readonly ok = new Series()
  readonly failed = new Series()
  readonly #reasons = new Map<string, number>()
  /** Successful reads by serving port. */
  readonly byPort = new Map<number, number>()

  success(at: number, port: number): void {
    this.ok.push(at, port)
    this.byPort.set(port, (this.byPort.get(port) ?? 0) + 1)
  }
  failure(at: number, reason: string): void {
    this.failed.push(at, 0)
    this.#reasons.set(reason, (this.#reasons.get(reason) ?? 0) + 1)
  }
  reasons(): Array<[string, number]> {
    return [...this.#reasons].sort((a, b) => b[1] - a[1])
  }
}
