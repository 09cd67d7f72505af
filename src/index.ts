export { FailoverPool } from './failover-pool.js'
export type {
  FailoverEvent,
  FailoverPoolEvents,
  PgPoolEvents,
  EndpointEvent,
  EndpointReachabilityEvent,
  RoleChangeEvent,
  BreakerStateChangeEvent,
} from './events.js'
export type { BreakerStateName } from './breaker.js'
export { RoutedPool } from './routed-pool.js'
export type { ReadStrategy } from './router.js'
export type { FailoverPoolOptions } from './options.js'
export type { EndpointConfig, EndpointsInput } from './endpoint-config.js'
export type { FailoverPoolStatus, EndpointStatus, EndpointRole } from './status.js'
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
  type EndpointBreakerReport,
  isFailoverPoolError,
  isConfigError,
  isNoPrimaryError,
  isOutcomeUnknownError,
  type FailoverPoolErrorCode,
  type EndpointAnswer,
} from './errors.js'
export { healthHandler, readiness, type HealthOptions, type Readiness, type StatusSource } from './health.js'
export { registerMetrics, type MetricsOptions, type PromClientLike } from './metrics.js'
