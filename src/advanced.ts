/**
 * `pg-failover-pool/advanced`: public, but not needed to use the pool. Extension points (an HA
 * manager of your own, a clock for deterministic tests, the error classifier the pool applies) and
 * the types of option objects, event payloads and status details, for code that wants to name
 * them. Stable under the same semver rules as the root entry.
 */
export type {
  PgPoolEvents,
  EndpointEvent,
  EndpointReachabilityEvent,
  RoleChangeEvent,
  BreakerStateChangeEvent,
  SplitBrainEvent,
  StateStoreErrorEvent,
  PromoteHookErrorEvent,
} from './events.js'
export type { FileStateStoreOptions } from './state/file-store.js'
export type { RedisStateStoreOptions } from './state/redis-store.js'
export type { RedisLike, RedisSubscriberLike } from './state/redis-client.js'
export type { StateStoreFailure } from './state/state-store.js'
export type { StateStoreHealth } from './state/state-keeper.js'
export type { LogicalMirrorHookOptions } from './topology/promotion-hook.js'
export type { BreakerStateName } from './endpoint/breaker.js'
export type { ReadStrategy } from './routing/router.js'
export type { EndpointsInput } from './endpoint/endpoint-config.js'
export type { EndpointRole, HaManagerStatus } from './observe/status.js'
export type { PatroniOptions } from './ha/patroni.js'
export type { HaManager, HaMember, HaView } from './ha/ha-manager.js'
export type { Clock, TimerHandle } from './clock.js'
export { classifyError, type ErrorClass } from './error-policy.js'
export type { EndpointBreakerReport, EndpointAnswer } from './errors.js'
export type { HealthOptions, Readiness, StatusSource } from './observe/health.js'
export type { MetricsOptions, PromClientLike } from './observe/metrics.js'
export type { RoutedQueryConfig } from './surface/pool-surface.js'
export type { StateUpdate, CompareAndSetResult } from './state/state-store.js'
export type { EndpointProvider, EndpointList, EndpointsFromOptions } from './membership/endpoint-provider.js'
export type { DnsSrvOptions } from './membership/dns-srv.js'
export type { PatroniMembersOptions } from './membership/patroni-members.js'
export type { EndpointsChangedEvent } from './events.js'
export type { EndpointSourceStatus } from './observe/status.js'
export type { PromotionContext } from './topology/promotion-hook.js'
