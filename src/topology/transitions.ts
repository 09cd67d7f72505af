import type { EventSink } from '../events.js'

/**
 * How every topology change is written: a transition assigns the complete new state first, and
 * queues its effects — cutting lanes, settling waiters, persisting, scheduling probes, announcing
 * events — which run in order once the outermost transition has assigned everything. An effect
 * never runs inside a transition, so no effect can observe (or act on) a half-changed state.
 *
 * What leaves the pool — an event for the application's listeners, a waiting request's callback, a
 * checkout aborted by a cut — is deferred beyond the effects too (a microtask, as pg-pool defers its
 * callbacks), so user code never runs inside a transition, and a listener that throws or never
 * returns cannot leave the pool half-changed or stalled.
 */
export class Transitions {
  /** Effects, and transitions asked for while effects ran, in order. */
  readonly #queue: Array<{ readonly transition: boolean; readonly fn: () => void }> = []
  #depth = 0
  #flushing = false

  constructor(
    private readonly events: EventSink,
    /** Runs after every outermost transition's effects (the coordinator settles its waiters here). */
    private readonly afterEach: () => void,
  ) {}

  /**
   * Runs `change` — which assigns state and queues effects — then, if outermost, every queued
   * effect. A change asked for while effects run (a client an effect cut reports its failure at
   * once, say) is queued behind them and runs as a transition of its own: never inside an effect.
   */
  run(change: () => void): void {
    if (this.#flushing) {
      this.#queue.push({ transition: true, fn: change })
      return
    }
    this.#depth++
    try {
      change()
    } finally {
      this.#depth--
    }
    if (this.#depth === 0) this.#flush()
  }

  /** Queues an effect of the current transition. */
  effect(fn: () => void): void {
    this.#queue.push({ transition: false, fn })
    if (this.#depth === 0 && !this.#flushing) this.#flush()
  }

  /**
   * Announces `event` to the application's listeners after the transition, each in a microtask of
   * its own: a listener that throws reaches the application as any EventEmitter listener's
   * exception would (an uncaught exception), and the pool's state never depends on it.
   */
  announce(event: string, payload: () => unknown): void {
    this.effect(() => {
      if (this.events.listenerCount(event) === 0) return
      const value = payload()
      queueMicrotask(() => {
        if (this.events.listenerCount(event) > 0) this.events.emit(event, value)
      })
    })
  }

  #flush(): void {
    for (;;) {
      const item = this.#queue.shift()
      if (item === undefined) break
      // A queued transition assigns its state (its effects join the queue); an effect runs flagged.
      const flag = item.transition ? 'depth' : 'flushing'
      if (flag === 'depth') this.#depth++
      else this.#flushing = true
      try {
        item.fn()
      } finally {
        if (flag === 'depth') this.#depth--
        else this.#flushing = false
      }
    }
    this.afterEach()
  }
}
