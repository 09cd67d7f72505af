/**
 * pg-failover-pool's stable public API (semver): the pool and its views, options, status and
 * events, the error classes (`instanceof` works across copies of the library) with the two outcome
 * questions ORMs' wrappers need answered, the state stores, and the health, metrics, Patroni and
 * promotion-hook helpers. Extension points and every other public type are in
 * `pg-failover-pool/advanced`; the integrations are `pg-failover-pool/typeorm`, `/sequelize`,
 * `/pg-boss` and `/otel`. Anything else (a deep import into dist/) is internal.
 */
export { FailoverPool } from './failover-pool.js'
export type { RoutedPool } from './surface/routed-pool.js'
export type { FailoverPoolOptions } from './options.js'
export type { EndpointConfig } from './endpoint/endpoint-config.js'
export type { FailoverPoolStatus, EndpointStatus } from './observe/status.js'
export type { FailoverPoolEvents, FailoverEvent } from './events.js'
export {
  FailoverPoolError,
  ConfigError,
  NoPrimaryError,
  OutcomeUnknownError,
  NoReplicaError,
  AllEndpointsDownError,
  SplitBrainError,
  SwitchoverRefusedError,
  EndpointSourceError,
  isOutcomeUnknownError,
  isSafeToRetryError,
  type FailoverPoolErrorCode,
} from './errors.js'
export { MemoryStateStore } from './state/memory-store.js'
export { FileStateStore } from './state/file-store.js'
export { RedisStateStore } from './state/redis-store.js'
export { StateStoreError, type StateStore, type StateRecord } from './state/state-store.js'
export { logicalMirrorHook, type PromoteHook } from './topology/promotion-hook.js'
export { patroni } from './ha/patroni.js'
export { endpointsFrom } from './membership/endpoint-provider.js'
export { dnsSrv } from './membership/dns-srv.js'
export { patroniMembers } from './membership/patroni-members.js'
export { healthHandler, readiness } from './observe/health.js'
export { registerMetrics } from './observe/metrics.js'
