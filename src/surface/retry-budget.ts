import type { Clock } from '../clock.js'

/** Settings of a {@link RetryBudget}. */
export interface RetryBudgetSettings {
  /** Most retries that may happen back to back. Default 100. */
  readonly burst: number
  /** Retries earned back per second. Default 50. */
  readonly perSecond: number
}

/** Default retry budget: bursts of 100, 50 per second sustained. */
export const DEFAULT_RETRY_BUDGET: RetryBudgetSettings = { burst: 100, perSecond: 50 }

/**
 * A token bucket bounding retries (and failure-triggered re-discoveries), so a fleet of app
 * instances does not stampede a node that is just coming back. Refilled lazily from the clock.
 */
export class RetryBudget {
  #tokens: number
  #at: number

  constructor(
    private readonly settings: RetryBudgetSettings,
    private readonly clock: Clock,
  ) {
    this.#tokens = settings.burst
    this.#at = clock.now()
  }

  /** Takes one token; false when the budget is spent (the caller must not retry now). */
  trySpend(): boolean {
    const now = this.clock.now()
    this.#tokens = Math.min(this.settings.burst, this.#tokens + ((now - this.#at) / 1000) * this.settings.perSecond)
    this.#at = now
    if (this.#tokens < 1) return false
    this.#tokens -= 1
    return true
  }

  /** Tokens left now (fractional), for status and tests. */
  get available(): number {
    const elapsed = (this.clock.now() - this.#at) / 1000
    return Math.min(this.settings.burst, this.#tokens + elapsed * this.settings.perSecond)
  }
}
