export { FailoverPool } from './failover-pool.js'
export type {
  FailoverEvent,
  FailoverPoolEvents,
  PgPoolEvents,
  EndpointEvent,
  EndpointReachabilityEvent,
  RoleChangeEvent,
  BreakerStateChangeEvent,
  SplitBrainEvent,
  StateStoreErrorEvent,
  PromoteHookErrorEvent,
} from './events.js'
export { MemoryStateStore } from './state/memory-store.js'
export { FileStateStore, type FileStateStoreOptions } from './state/file-store.js'
export { RedisStateStore, type RedisStateStoreOptions, type RedisLike, type RedisSubscriberLike } from './state/redis-store.js'
export {
  StateStoreError,
  type StateStore,
  type StateRecord,
  type StateUpdate,
  type CompareAndSetResult,
  type StateStoreFailure,
} from './state/state-store.js'
export type { StateStoreHealth } from './state/state-keeper.js'
export { logicalMirrorHook, type PromoteHook, type PromotionContext, type LogicalMirrorHookOptions } from './topology/promotion-hook.js'
export type { BreakerStateName } from './endpoint/breaker.js'
export { RoutedPool } from './surface/routed-pool.js'
export type { RoutedQueryConfig } from './surface/pool-surface.js'
export type { ReadStrategy } from './routing/router.js'
export type { FailoverPoolOptions } from './options.js'
export type { EndpointConfig, EndpointsInput } from './endpoint/endpoint-config.js'
export type { FailoverPoolStatus, EndpointStatus, EndpointRole, HaManagerStatus } from './observe/status.js'
export { patroni, type PatroniOptions } from './ha/patroni.js'
export type { HaManager, HaMember, HaView } from './ha/ha-manager.js'
export type { Clock, TimerHandle } from './clock.js'
export { classifyError, type ErrorClass } from './error-policy.js'
export {
  FailoverPoolError,
  ConfigError,
  NoPrimaryError,
  OutcomeUnknownError,
  NoReplicaError,
  isNoReplicaError,
  AllEndpointsDownError,
  isAllEndpointsDownError,
  SplitBrainError,
  isSplitBrainError,
  SwitchoverRefusedError,
  isSwitchoverRefusedError,
  type EndpointBreakerReport,
  isFailoverPoolError,
  isConfigError,
  isNoPrimaryError,
  isOutcomeUnknownError,
  isSafeToRetryError,
  type FailoverPoolErrorCode,
  type EndpointAnswer,
} from './errors.js'
export { healthHandler, readiness, type HealthOptions, type Readiness, type StatusSource } from './observe/health.js'
export { registerMetrics, type MetricsOptions, type PromClientLike } from './observe/metrics.js'
