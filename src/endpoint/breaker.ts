import type { Clock } from '../clock.js'

/** A breaker's state, as a discriminated union (see {@link CircuitBreaker}). */
export type BreakerState =
  | { readonly kind: 'closed'; readonly failures: number }
  | { readonly kind: 'open'; readonly since: number; readonly retryAt: number; readonly openings: number }
  | { readonly kind: 'half-open'; readonly trialInFlight: boolean; readonly openings: number }

/** The names of {@link BreakerState} kinds. */
export type BreakerStateName = BreakerState['kind']

/** A change of breaker state, returned by the method that caused it (the breaker never emits). */
export interface BreakerTransition {
  readonly from: BreakerStateName
  readonly to: BreakerStateName
}

/** Breaker settings, in milliseconds where timed. */
export interface BreakerSettings {
  /** Consecutive endpoint failures that open the breaker. Default 3. */
  readonly failureThreshold: number
  /** Wait before the first half-open trial after opening. Default 10000 ms. */
  readonly halfOpenAfterMs: number
  /** Cap of the wait, which doubles (±20% jitter) each time a trial fails. Default 60000 ms. */
  readonly maxHalfOpenAfterMs: number
}

/** Default breaker settings. */
export const DEFAULT_BREAKER: BreakerSettings = { failureThreshold: 3, halfOpenAfterMs: 10_000, maxHalfOpenAfterMs: 60_000 }

/**
 * One endpoint's circuit breaker: closed → open after `failureThreshold` consecutive endpoint
 * failures; open → half-open once its wait has passed (read lazily from the clock: no timers);
 * half-open allows exactly one trial (the health probe, not user traffic); the trial's success
 * closes it, its failure opens it again with a longer wait, and whatever else ends the trial (an
 * answer that proves nothing either way: a refused login, say) releases it for the next probe.
 *
 * Only endpoint failures count (connection-class errors, timeouts), and only current ones: the
 * endpoint's health record drops late results from before a change before they reach here.
 */
export class CircuitBreaker {
  #state: BreakerState = { kind: 'closed', failures: 0 }

  constructor(
    private readonly settings: BreakerSettings,
    private readonly clock: Clock,
    private readonly random: () => number = Math.random,
  ) {}

  /** The current state, with an expired open wait turned into half-open. */
  get state(): BreakerState {
    this.refresh()
    return this.#state
  }

  /** Applies the lazy open → half-open move if its time has come; returns it so it can be reported. */
  refresh(): BreakerTransition | null {
    const s = this.#state
    if (s.kind === 'open' && this.clock.now() >= s.retryAt) {
      return this.#set({ kind: 'half-open', trialInFlight: false, openings: s.openings })
    }
    return null
  }

  /** True while user traffic may use the endpoint (closed only). */
  get allowsTraffic(): boolean {
    return this.state.kind === 'closed'
  }

  /**
   * Claims the single half-open trial; true when the caller may run it. Also true when closed
   * (probes always run then); false while open or while another trial is in flight.
   */
  tryTrial(): boolean {
    const s = this.state
    if (s.kind === 'closed') return true
    if (s.kind === 'open' || s.trialInFlight) return false
    this.#state = { ...s, trialInFlight: true }
    return true
  }

  /** The trial's probe ended without a verdict on the endpoint: the next probe may try again. */
  endTrial(): void {
    const s = this.#state
    if (s.kind === 'half-open' && s.trialInFlight) this.#state = { ...s, trialInFlight: false }
  }

  /** An endpoint failure. */
  recordFailure(): BreakerTransition | null {
    const s = this.state
    switch (s.kind) {
      case 'closed': {
        const failures = s.failures + 1
        if (failures < this.settings.failureThreshold) {
          this.#state = { kind: 'closed', failures }
          return null
        }
        return this.#open(0)
      }
      case 'half-open':
        return this.#open(s.openings)
      case 'open':
        return null
    }
  }

  /**
   * A success (a probe that reached the server). It closes the breaker from half-open (the trial)
   * and also from open: user traffic never reaches an open endpoint, so a current success while
   * open can only be a discovery probe, which runs whatever the breaker says while no primary is
   * verified — and proves the node is back.
   */
  recordSuccess(): BreakerTransition | null {
    const s = this.state
    if (s.kind === 'closed') {
      if (s.failures > 0) this.#state = { kind: 'closed', failures: 0 }
      return null
    }
    return this.#set({ kind: 'closed', failures: 0 })
  }

  #open(previousOpenings: number): BreakerTransition {
    const { halfOpenAfterMs, maxHalfOpenAfterMs } = this.settings
    const base = Math.min(maxHalfOpenAfterMs, halfOpenAfterMs * 2 ** previousOpenings)
    const wait = Math.min(maxHalfOpenAfterMs, base * (0.8 + 0.4 * this.random()))
    const now = this.clock.now()
    return this.#set({ kind: 'open', since: now, retryAt: now + wait, openings: previousOpenings + 1 })
  }

  #set(next: BreakerState): BreakerTransition {
    const from = this.#state.kind
    this.#state = next
    return { from, to: next.kind }
  }
}
