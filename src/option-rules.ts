import { ConfigError } from './errors.js'

/*
 * Which option names FailoverPool accepts and the values each may take: the rules resolveOptions
 * (options.ts) checks every input against before applying defaults.
 */

/** Option names node-postgres's Pool and Client understand; anything else is a typo. */
export const PG_OPTION_NAMES = new Set([
  // pg.Client / ConnectionParameters
  'user', 'database', 'password', 'port', 'host', 'connectionString', 'keepAlive', 'stream',
  'statement_timeout', 'ssl', 'sslnegotiation', 'sslNegotiation', 'enableChannelBinding', 'query_timeout', 'lock_timeout',
  'keepAliveInitialDelayMillis', 'idle_in_transaction_session_timeout', 'application_name',
  'fallback_application_name', 'connectionTimeoutMillis', 'types', 'options', 'client_encoding',
  'binary', 'replication', 'Promise', 'pipeline', 'scramMaxIterations',
  // pg-pool
  'max', 'min', 'idleTimeoutMillis', 'log', 'allowExitOnIdle', 'maxUses', 'maxLifetimeSeconds',
  'Client', 'onConnect', 'verify', 'poolSize',
])

export const OWN_OPTION_NAMES = new Set([
  'endpoints', 'failoverTimeoutMs', 'maxQueuedRequests', 'probeTimeoutMs', 'drainTimeoutMs', 'discoveryIntervalMs',
  'promotionWatch', 'promotionWatchWindowMs', 'promotionWatchCheckMs', 'clock', 'healthCheckIntervalMs',
  'routeReads', 'readStrategy', 'maxReplicaLagMs', 'maxReplicaLagBytes', 'readFallback', 'readYourWritesTimeoutMs',
  'failureThreshold', 'halfOpenAfterMs', 'maxHalfOpenAfterMs', 'retryBudget',
  'stateStore', 'stateStoreTimeoutMs', 'topology', 'onPromote', 'onPromoteFailure', 'onPromoteTimeoutMs', 'haManager',
  'monitor', 'monitorLeaseTtlMs', 'warmStandbys',
])

/** Options that take one of a fixed set of strings. */
export const CHOICE_OPTIONS: Record<string, readonly string[]> = {
  routeReads: ['off', 'auto'],
  readStrategy: ['round-robin', 'random', 'least-busy', 'lowest-latency'],
  readFallback: ['primary', 'replicas-only'],
  topology: ['physical', 'logical'],
  onPromoteFailure: ['refuse', 'proceed'],
  monitor: ['local', 'shared'],
}

/** Options that take a non-negative number of some unit; `Infinity` allowed where listed. */
export const NUMERIC_OPTIONS: Record<string, { min: number; infinite?: boolean; integer?: boolean; allowFalse?: boolean; allowNull?: boolean }> = {
  max: { min: 1, integer: true },
  min: { min: 0, integer: true },
  poolSize: { min: 1, integer: true },
  idleTimeoutMillis: { min: 0, allowNull: true },
  connectionTimeoutMillis: { min: 0 },
  maxUses: { min: 1, infinite: true },
  maxLifetimeSeconds: { min: 0 },
  statement_timeout: { min: 0, allowFalse: true },
  query_timeout: { min: 0 },
  lock_timeout: { min: 0 },
  idle_in_transaction_session_timeout: { min: 0 },
  keepAliveInitialDelayMillis: { min: 0 },
  failoverTimeoutMs: { min: 0 },
  maxQueuedRequests: { min: 0, integer: true },
  probeTimeoutMs: { min: 1 },
  drainTimeoutMs: { min: 0 },
  discoveryIntervalMs: { min: 1 },
  promotionWatchWindowMs: { min: 10 },
  promotionWatchCheckMs: { min: 1 },
  healthCheckIntervalMs: { min: 10 },
  maxReplicaLagMs: { min: 0, infinite: true },
  maxReplicaLagBytes: { min: 0, integer: true },
  readYourWritesTimeoutMs: { min: 0 },
  failureThreshold: { min: 1, integer: true },
  halfOpenAfterMs: { min: 0 },
  maxHalfOpenAfterMs: { min: 0 },
  stateStoreTimeoutMs: { min: 1 },
  onPromoteTimeoutMs: { min: 1 },
  monitorLeaseTtlMs: { min: 50 },
}

/** Host-level keys that belong on an endpoint, not on the shared options. */
export const ENDPOINT_ONLY = new Set(['host', 'port', 'connectionString'])

/** Throws a ConfigError naming `field` when `value` breaks the numeric rule of option `key`. */
export function checkNumeric(field: string, value: unknown, key = field): void {
  const rule = NUMERIC_OPTIONS[key]
  if (!rule || value === undefined) return
  if (rule.allowFalse && value === false) return
  if (rule.allowNull && value === null) return
  if (typeof value !== 'number' || Number.isNaN(value)) {
    throw new ConfigError(field, value, 'expected a number')
  }
  if (value === Infinity && rule.infinite) return
  if (!Number.isFinite(value)) throw new ConfigError(field, value, 'expected a finite number')
  if (value < rule.min) throw new ConfigError(field, value, `expected a number >= ${rule.min}`)
  if (rule.integer && !Number.isInteger(value)) throw new ConfigError(field, value, 'expected a whole number')
}
