import type { Endpoint } from '../endpoint/endpoint.js'
import { maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import type { HealthNews } from './endpoint-health.js'

/** The per-endpoint events a FailoverPool emits. */
export type EndpointEventName = 'endpointDown' | 'endpointUp' | 'roleChange' | 'breakerStateChange'

/**
 * Announces what happened to one endpoint (after the transition, through the coordinator's
 * announce: never from inside one), with a password-free reason, and logs it.
 */
export class EndpointEvents {
  constructor(private readonly announce: (event: string, payload: () => unknown) => void) {}

  /** What a health change means: endpointDown/Up, breakerStateChange. */
  health(endpoint: Endpoint, news: HealthNews, reason: string): void {
    if (news.reachability === 'down') this.endpoint('endpointDown', endpoint, 'up', 'down', reason)
    if (news.reachability === 'up') this.endpoint('endpointUp', endpoint, 'down', 'up', reason)
    this.breaker(endpoint, news.breaker, reason)
  }

  /** A breaker transition, if any. */
  breaker(endpoint: Endpoint, transition: { from: string; to: string } | null, reason: string): void {
    if (transition) this.endpoint('breakerStateChange', endpoint, transition.from, transition.to, reason)
  }

  /** One per-endpoint event. */
  endpoint(event: EndpointEventName, endpoint: Endpoint, from: string, to: string, reason: string): void {
    const masked = maskPassword(reason)
    topologyLog('%s %s: %s -> %s (%s)', event, endpoint.name, from, to, masked)
    this.announce(event, () => ({ endpoint: endpoint.name, from, to, reason: masked, at: new Date().toISOString() }))
  }
}
