import type { Clock } from '../../src/advanced.js'

/** A clock whose time moves only when a test says so; timers fire in order as time passes. */
export class FakeClock implements Clock {
  #now = 0
  #timers: Array<{ at: number; fn: () => void; id: number }> = []
  #nextId = 1

  now(): number {
    return this.#now
  }

  setTimeout(fn: () => void, ms: number): object {
    const timer = { at: this.#now + ms, fn, id: this.#nextId++ }
    this.#timers.push(timer)
    return timer
  }

  clearTimeout(handle: object): void {
    this.#timers = this.#timers.filter((t) => t !== handle)
  }

  /** Timers set and not yet fired or cleared. */
  get pendingTimers(): number {
    return this.#timers.length
  }

  /** Moves time forward by `ms`, firing due timers in order. */
  advance(ms: number): void {
    const target = this.#now + ms
    for (;;) {
      const due = this.#timers.filter((t) => t.at <= target).sort((a, b) => a.at - b.at || a.id - b.id)[0]
      if (!due) break
      this.#timers = this.#timers.filter((t) => t !== due)
      this.#now = due.at
      due.fn()
    }
    this.#now = target
  }
}
