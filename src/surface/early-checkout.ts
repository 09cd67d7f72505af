import { holdClient } from '../endpoint/client-cut.js'
import { type AcquireCallback, type Lane, LaneRetiredError } from '../endpoint/lane.js'

type Outcome = Parameters<AcquireCallback>

/**
 * A checkout started before its request knows its target: with one endpoint, before the pool first
 * verified it, that node can only become the primary, so the connection opens while it is being
 * verified instead of after (as pg.Pool opens it at once, and counts it at once). The request
 * {@link use}s it when the target turns out to be this lane, or {@link discard}s it; either way
 * the send-time check still decides whether anything runs on it.
 */
export class EarlyCheckout {
  #outcome: Outcome | null = null
  #unhold: (() => void) | null = null
  #waiting: AcquireCallback | null = null
  #discarded = false

  /**
   * @param failedEarly called instead of parking the outcome when the node fails the connect before
   *   the target is known, or null to park it like a success. Fail-fast mode passes one: pg.Pool
   *   answers a checkout whose connect failed with that error at once, and so does the request. (A
   *   lane replaced under the checkout is the pool's own doing, not the node's answer: parked.)
   */
  constructor(
    readonly lane: Lane,
    failedEarly: ((err: Error) => void) | null = null,
  ) {
    lane.acquire((err, client, release) => {
      if (this.#discarded) return release?.(err)
      if (err && failedEarly !== null && this.#waiting === null && !(err instanceof LaneRetiredError)) {
        this.#discarded = true
        release?.(err)
        return failedEarly(err)
      }
      // Parked until used: its socket dying meanwhile must not crash the process.
      if (client) this.#unhold = holdClient(client)
      this.#outcome = [err, client, release]
      if (this.#waiting) this.#deliver(this.#waiting)
    })
  }

  /** Hands the checkout's outcome to `callback`, now or when the connection is made. */
  use(callback: AcquireCallback): void {
    if (this.#outcome) this.#deliver(callback)
    else this.#waiting = callback
  }

  /** Gives the connection back (now, or when it is made): the request goes elsewhere or fails. */
  discard(): void {
    this.#discarded = true
    this.#waiting = null
    const outcome = this.#outcome
    this.#outcome = null
    if (!outcome) return
    this.#unhold?.()
    outcome[2]?.(outcome[0])
  }

  #deliver(callback: AcquireCallback): void {
    const [err, client, release] = this.#outcome!
    this.#outcome = null
    this.#waiting = null
    this.#unhold?.()
    callback(err, client, release)
  }
}
