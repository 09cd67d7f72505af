import type { Clock, TimerHandle } from '../../src/clock.js'
import { mulberry32 } from '../chaos/prng.js'

/** One timer on the simulated clock. */
interface SimTimer {
  readonly at: number
  readonly seq: number
  readonly fn: () => void
}

/**
 * The simulation's only clock and only source of randomness: time moves when the scheduler fires
 * the earliest timer, and every random draw (the library's jitter included, through
 * {@link Clock.random}) comes from one seeded stream, so a seed replays exactly.
 */
export class SimClock implements Clock {
  #now = 0
  #seq = 0
  /** Sorted by (at, seq): equal times fire in the order they were set. */
  #timers: SimTimer[] = []
  readonly #random: () => number

  constructor(seed: number) {
    this.#random = mulberry32(seed)
  }

  now(): number {
    return this.#now
  }

  random(): number {
    return this.#random()
  }

  /** A float in [lo, hi). */
  between(lo: number, hi: number): number {
    return lo + this.#random() * (hi - lo)
  }

  /** True with probability `p`. */
  chance(p: number): boolean {
    return this.#random() < p
  }

  /** One element of `items`, uniformly. */
  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.#random() * items.length)]!
  }

  setTimeout(fn: () => void, ms: number): TimerHandle {
    const timer: SimTimer = { at: this.#now + Math.max(0, Number.isFinite(ms) ? ms : 0), seq: this.#seq++, fn }
    // Binary search for the insertion point keeps firing order by (at, seq).
    let lo = 0
    let hi = this.#timers.length
    while (lo < hi) {
      const mid = (lo + hi) >>> 1
      const t = this.#timers[mid]!
      if (t.at < timer.at || (t.at === timer.at && t.seq < timer.seq)) lo = mid + 1
      else hi = mid
    }
    this.#timers.splice(lo, 0, timer)
    return timer
  }

  clearTimeout(handle: TimerHandle): void {
    const i = this.#timers.indexOf(handle as SimTimer)
    if (i !== -1) this.#timers.splice(i, 1)
  }

  /** Timers set and not yet fired or cleared. */
  get pending(): number {
    return this.#timers.length
  }

  /** When the earliest timer fires, or null when none is set. */
  nextAt(): number | null {
    return this.#timers[0]?.at ?? null
  }

  /** Fires the earliest timer, moving time to it; false when no timer is set. */
  fireNext(): boolean {
    const timer = this.#timers.shift()
    if (!timer) return false
    this.#now = Math.max(this.#now, timer.at)
    timer.fn()
    return true
  }

  /** A promise resolved after `ms` of simulated time. */
  sleep(ms: number): Promise<void> {
    return new Promise((resolve) => this.setTimeout(resolve, ms))
  }
}
