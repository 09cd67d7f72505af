import type { Clock, TimerHandle } from '../clock.js'

/** A request waiting for a verified primary. */
type Waiting<T> = { readonly callback: (err: Error | undefined, value?: T) => void; timer: TimerHandle | null }

/**
 * Requests waiting for a verified primary, bounded in time (each has its own deadline) and in
 * count. Every waiter is settled exactly once: by the deadline, or by whoever settles them all —
 * and then called back in a microtask, never from inside the transition that settled it (the
 * request it resumes may route again and must see the state fully assigned).
 * Deadline timers are ref'd: a waiting request is user work and keeps the process alive, as
 * pg-pool's pending connects do.
 */
export class Waiters<T> {
  readonly #waiting = new Set<Waiting<T>>()

  constructor(private readonly clock: Clock) {}

  /** Requests waiting now. */
  get size(): number {
    return this.#waiting.size
  }

  /** Queues `callback` until it is settled or `timeoutMs` passes (then it gets `onTimeout()`). */
  add(callback: (err: Error | undefined, value?: T) => void, timeoutMs: number, onTimeout: () => Error): void {
    const waiting: Waiting<T> = { callback, timer: null }
    waiting.timer = this.clock.setTimeout(() => {
      waiting.timer = null
      this.#settle(waiting, onTimeout())
    }, timeoutMs)
    ;(waiting.timer as { ref?: () => void }).ref?.()
    this.#waiting.add(waiting)
  }

  /** Settles every waiter with `err`, or with `value` when `err` is undefined. */
  settleAll(err: Error | undefined, value?: T): void {
    for (const waiting of [...this.#waiting]) this.#settle(waiting, err, value)
  }

  #settle(waiting: Waiting<T>, err: Error | undefined, value?: T): void {
    if (!this.#waiting.delete(waiting)) return
    if (waiting.timer !== null) this.clock.clearTimeout(waiting.timer)
    queueMicrotask(() => waiting.callback(err, value))
  }
}
