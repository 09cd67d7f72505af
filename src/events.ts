import type { PoolClient } from 'pg'
import type { BreakerStateName } from './endpoint/breaker.js'
import type { EndpointRole } from './observe/status.js'
import type { EndpointSourceError } from './errors.js'

/** Payload of the `failover` event. */
export interface FailoverEvent {
  /** The primary before the failover (null if none had been verified yet). */
  readonly from: string | null
  /** The newly verified primary. */
  readonly to: string
  /** Why the pool left the old primary, e.g. `connection failure: ECONNREFUSED`. */
  readonly reason: string
  /** From the first sign of trouble to the new primary being verified, in milliseconds. */
  readonly durationMs: number
  /** Topology epoch after the failover; grows by one with every change of primary. */
  readonly epoch: number
}

/** Payload shared by the per-endpoint events. */
export interface EndpointEvent<State extends string> {
  /** Endpoint name. */
  readonly endpoint: string
  readonly from: State
  readonly to: State
  /** Why, in words (password-free). */
  readonly reason: string
  /** When it happened (ISO 8601). */
  readonly at: string
}

/** `endpointDown` / `endpointUp`: reachability changed. */
export type EndpointReachabilityEvent = EndpointEvent<'up' | 'down'>
/** `roleChange`: a probe found the node in another role than before. */
export type RoleChangeEvent = EndpointEvent<EndpointRole>
/** `breakerStateChange`: the endpoint's circuit breaker moved. */
export type BreakerStateChangeEvent = EndpointEvent<BreakerStateName>

/** `splitBrain`: more than one node is writable. */
export interface SplitBrainEvent {
  /** Every writable node involved. */
  readonly endpoints: readonly string[]
  /** The node the pool writes to, or null when it refuses writes (ambiguous evidence). */
  readonly chosen: string | null
  /** Nodes that are writable but will never receive a write from this pool. */
  readonly fenced: readonly string[]
  readonly reason: string
  readonly at: string
}

/**
 * `stateStoreError`: the state store failed, or could not record the pool's decision; the pool
 * keeps serving from its own probes, and `status().stateStore` shows it (`degraded` while the
 * decision is not recorded).
 */
export interface StateStoreErrorEvent {
  /** `load`: reading the store (at start, or before a heal); `save`: recording a decision. */
  readonly operation: 'load' | 'save'
  /**
   * `unavailable` (refused or failed), `corrupt` (held something that is not a record; it was set
   * aside or replaced), `timeout` (past `stateStoreTimeoutMs`), `conflict` (compare-and-set lost
   * three times in a row to other writers).
   */
  readonly failure: 'unavailable' | 'corrupt' | 'timeout' | 'conflict'
  /** What happened, in words (password-free). */
  readonly message: string
  /** When (ISO 8601). */
  readonly at: string
}

/** `promoteHookError`: the `onPromote` hook failed on a new primary. */
export interface PromoteHookErrorEvent {
  readonly endpoint: string
  readonly error: Error
  /** What the pool did about it (`onPromoteFailure`). */
  readonly decision: 'refuse' | 'proceed'
  readonly at: string
}

/** `endpointsChanged`: the endpoint list changed (`setEndpoints()`, or an endpoint provider's new answer). */
export interface EndpointsChangedEvent {
  /** The endpoints now, by name. */
  readonly endpoints: readonly string[]
  readonly added: readonly string[]
  readonly removed: readonly string[]
  /** `setEndpoints()`, or the provider's description. */
  readonly source: string
  readonly at: string
}

/** Events a FailoverPool emits beyond pg.Pool's, with their payloads. */
export interface FailoverPoolEvents {
  failover: (event: FailoverEvent) => void
  splitBrain: (event: SplitBrainEvent) => void
  stateStoreError: (event: StateStoreErrorEvent) => void
  promoteHookError: (event: PromoteHookErrorEvent) => void
  endpointDown: (event: EndpointReachabilityEvent) => void
  endpointUp: (event: EndpointReachabilityEvent) => void
  roleChange: (event: RoleChangeEvent) => void
  breakerStateChange: (event: BreakerStateChangeEvent) => void
  endpointsChanged: (event: EndpointsChangedEvent) => void
  /** An endpoint provider's answer was not applied (the last good list stays); see EndpointSourceError. */
  endpointsRejected: (error: EndpointSourceError) => void
}

/** pg.Pool's own events and their listener shapes. */
export interface PgPoolEvents {
  connect: (client: PoolClient) => void
  acquire: (client: PoolClient) => void
  remove: (client: PoolClient) => void
  release: (err: Error | undefined, client: PoolClient) => void
  error: (err: Error, client: PoolClient) => void
}

/** Where the topology's events go: the FailoverPool (a Node EventEmitter) in production. */
export interface EventSink {
  emit(event: string, payload: unknown): boolean
  listenerCount(event: string): number
}
