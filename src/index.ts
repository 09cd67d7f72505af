export { FailoverPool, type FailoverEvent, type FailoverPoolEvents } from './failover-pool.js'
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
  isFailoverPoolError,
  isConfigError,
  isNoPrimaryError,
  isOutcomeUnknownError,
  type FailoverPoolErrorCode,
  type EndpointAnswer,
} from './errors.js'
