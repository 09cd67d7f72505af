import type { BreakerTransition } from '../endpoint/breaker.js'
import type { Clock } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { maskPassword } from '../errors.js'
import type { EventSink } from '../events.js'
import { topologyLog } from '../log.js'
import type { Standing } from './standing.js'

/** What one failure report meant for the endpoint's reachability. */
export type FailureVerdict =
  /** The attempt began before the endpoint last came back: it belongs to an earlier event. */
  | 'stale'
  /** The endpoint is already down and the attempt began before that: the same event, counted once. */
  | 'same-event'
  /** The endpoint was up: this failure marks it down (counted by its breaker, `endpointDown` emitted). */
  | 'down'
  /** The endpoint was down and an attempt made since then failed too (counted again). */
  | 'still-down'

/**
 * Keeps each endpoint's reachability (down since / up since / last error) and its breaker in step
 * with failure and success reports, so that one event counts once however many connections it
 * broke, and a result from before a state change never moves anything.
 */
export class Reachability {
  constructor(
    private readonly standingOf: (endpoint: Endpoint) => Standing,
    private readonly clock: Clock,
    private readonly events: EventSink,
  ) {}

  /**
   * A connection-class failure on `endpoint` of an attempt that began at `startedAt` (clock ms), or
   * `'idle'` for an idle client's error (no attempt: it belongs to whatever event is current).
   */
  failed(endpoint: Endpoint, error: Error, startedAt: number | 'idle'): FailureVerdict {
    const s = this.standingOf(endpoint)
    const now = this.clock.now()
    const began = startedAt === 'idle' ? (s.downSince ?? now) : startedAt
    if (s.upSince !== null && began < s.upSince) return 'stale'
    if (s.downSince !== null && began <= s.downSince) return 'same-event'
    this.breakerMoved(endpoint, endpoint.breaker.recordFailure(began), error.message)
    s.lastError = error
    if (s.downSince !== null) return 'still-down'
    s.downSince = now
    this.emitEndpoint('endpointDown', endpoint, 'up', 'down', error.message)
    return 'down'
  }

  /** A non-connection error from a probe (authentication, unknown database): shown, never a failure. */
  refused(endpoint: Endpoint, error: Error): void {
    this.standingOf(endpoint).lastError = error
  }

  /**
   * A probe that began at `startedAt` got an answer. Returns false when it is a late answer from
   * before the endpoint went down (it proves nothing about now).
   */
  answered(endpoint: Endpoint, startedAt: number): boolean {
    const s = this.standingOf(endpoint)
    if (s.downSince !== null && startedAt < s.downSince) return false
    this.breakerMoved(endpoint, endpoint.breaker.recordSuccess(startedAt), 'probe succeeded')
    s.lastError = null
    if (s.downSince !== null) {
      s.downSince = null
      s.upSince = startedAt
      this.emitEndpoint('endpointUp', endpoint, 'down', 'up', 'probe succeeded')
    }
    return true
  }

  /** Applies the breaker's lazy open → half-open move, announcing it. */
  refreshBreaker(endpoint: Endpoint): void {
    this.breakerMoved(endpoint, endpoint.breaker.refresh(), 'open wait over: one trial probe')
  }

  /** Emits a per-endpoint event (when someone listens) with a password-free reason. */
  emitEndpoint(event: 'endpointDown' | 'endpointUp' | 'roleChange' | 'breakerStateChange', endpoint: Endpoint, from: string, to: string, reason: string): void {
    topologyLog('%s %s: %s -> %s (%s)', event, endpoint.name, from, to, maskPassword(reason))
    if (this.events.listenerCount(event) === 0) return
    this.events.emit(event, { endpoint: endpoint.name, from, to, reason: maskPassword(reason), at: new Date().toISOString() })
  }

  private breakerMoved(endpoint: Endpoint, transition: BreakerTransition | null, reason: string): void {
    if (transition) this.emitEndpoint('breakerStateChange', endpoint, transition.from, transition.to, reason)
  }
}
