import type { PoolConfig } from 'pg'
import type { Clock } from './clock.js'
import { systemClock } from './clock.js'
import { ConfigError } from './errors.js'
import { CHOICE_OPTIONS, ENDPOINT_ONLY, OWN_OPTION_NAMES, PG_OPTION_NAMES, checkNumeric } from './option-rules.js'
import type { ReadStrategy } from './routing/router.js'
import { type BreakerSettings, DEFAULT_BREAKER } from './endpoint/breaker.js'
import { DEFAULT_RETRY_BUDGET, type RetryBudgetSettings } from './surface/retry-budget.js'
import type { PromoteHook } from './topology/promotion-hook.js'
import type { HaManager } from './ha/ha-manager.js'
import { MemoryStateStore } from './state/memory-store.js'
import { type StateStore, supportsSharedMonitor } from './state/state-store.js'
import { type EndpointsInput, type ResolvedEndpoint, hidePassword, resolveEndpoints } from './endpoint/endpoint-config.js'
import { type EndpointProvider, isEndpointProvider } from './membership/endpoint-provider.js'

/**
 * Options for `new FailoverPool()`. Every `pg.Pool` option (`max`, `idleTimeoutMillis`,
 * `connectionTimeoutMillis`, `ssl`, `maxUses`, `allowExitOnIdle`, `application_name`, ...) applies
 * to each endpoint's own pool; the options below are the failover layer's own.
 */
export interface FailoverPoolOptions extends Omit<PoolConfig, 'host' | 'port' | 'connectionString'> {
  /**
   * The PostgreSQL nodes: a list of connection strings or pg client config objects (each may carry
   * a `name`, default `host:port`, IPv6 hosts in brackets), or one libpq-style multi-host URL
   * `postgres://user:pass@h1:5432,h2:5433/db`. Required unless `connectionString` or `host` is given.
   * Or a provider whose list may change while the pool runs: `patroniMembers({ urls })`,
   * `dnsSrv(name)`, `endpointsFrom(fn)` (the pool waits for its first good answer, as for a primary).
   */
  endpoints?: EndpointsInput | EndpointProvider
  /**
   * As for pg.Pool, when `endpoints` is not given: one connection string, or libpq's multi-host form
   * `postgres://u:p@h1:5432,h2:5433/db` (one endpoint per host). `target_session_attrs` may be `any`,
   * `read-write` or `primary`. Ignored when undefined.
   */
  connectionString?: string
  /** As for pg.Pool, when neither `endpoints` nor `connectionString` is given; libpq's `'h1,h2'` list allowed. Ignored when undefined. */
  host?: string
  /** With `host`: one port for every host, or libpq's `'5432,5433'` list. Default 5432. Ignored when undefined. */
  port?: number | string
  /**
   * How long a request waits for a verified primary while none is known (during a failover),
   * in milliseconds, before failing with `NoPrimaryError`. Default 30000.
   */
  failoverTimeoutMs?: number
  /** Upper bound on requests waiting for a primary at once; the next fails at once. Default 10000. */
  maxQueuedRequests?: number
  /** Deadline for one role probe (connect plus one round trip), in milliseconds. Default 3000. */
  probeTimeoutMs?: number
  /**
   * A node removed by `setEndpoints()` (or an endpoint provider): how long clients checked out
   * there may run on before they are cut, in milliseconds. Its idle connections close at once and
   * it gets no new checkout. Default 30000.
   */
  drainTimeoutMs?: number
  /**
   * While no primary is known, how often every endpoint is probed again, in milliseconds
   * (jittered by ±20%). Default 250.
   */
  discoveryIntervalMs?: number
  /**
   * How a standby's promotion is noticed without client polling, on the node's one monitor session:
   * - `true` (default): adaptively — while the pool has a verified primary in no doubt, standbys
   *   are only probed every `healthCheckIntervalMs` (next to no cost on them); as soon as the
   *   primary is in doubt or gone, each standby's session runs a server-side wait that returns the
   *   moment it leaves recovery (within `promotionWatchCheckMs`). A promotion while the old primary
   *   still answers normally is then noticed at the next health check.
   * - `'always'`: that server-side wait runs continuously (every promotion noticed within
   *   `promotionWatchCheckMs`, at a cost on each standby: see bench/WATCH.md).
   * - `false`: probes only.
   */
  promotionWatch?: boolean | 'always'
  /**
   * How long one promotion-watch statement waits before returning (with a probe row) and re-arming,
   * in milliseconds; at most half of `probeTimeoutMs` (a probe asked for meanwhile gets its row).
   * Default 1000.
   */
  promotionWatchWindowMs?: number
  /**
   * How often the server-side promotion watch checks `pg_is_in_recovery()`, in milliseconds.
   * Default 10; 15 with `monitor: 'shared'` (its leader watches continuously for the whole fleet).
   * A promotion is noticed within about that; bench/WATCH.md and bench/FLEET.md have the cost.
   */
  promotionWatchCheckMs?: number
  /**
   * Keep one idle session open in each healthy standby's write pool, so that the first writes after
   * its promotion run at once instead of waiting for a new connection — which, when a whole fleet
   * reconnects to the new primary in the same moment, takes hundreds of milliseconds (bench/FLEET.md).
   * It costs one connection slot per standby per pool and no work on the standby while idle. The
   * session is exempt from `idleTimeoutMillis`, counts in `totalCount`/`idleCount`, and gets the
   * pool's `'connect'` event (so session set-up runs on it); it is never handed to a caller while its
   * node is a standby. Default false.
   */
  warmStandbys?: boolean
  /**
   * How often every endpoint is probed while a primary is known (roles, lag, liveness), in
   * milliseconds, from the start of one check to the next (jittered by ±20%; one probe per node
   * at a time: a node whose probe is still out is left out of the next check). Default 2000.
   */
  healthCheckIntervalMs?: number
  /**
   * `'off'` (default): `pool.query` always goes to the primary. `'auto'`: statements that are
   * certainly read-only (a plain SELECT without locking clauses or writing functions) go to a
   * replica; anything uncertain stays on the primary. Override per query with `{ text, route:
   * 'primary' | 'replica' }`.
   */
  routeReads?: 'off' | 'auto'
  /** How reads are spread over replicas. Default `'round-robin'`. */
  readStrategy?: ReadStrategy
  /** Replicas lagging more than this many milliseconds get no reads. Default: no limit. */
  maxReplicaLagMs?: number
  /** Replicas more than this many bytes of WAL behind the primary get no reads. Default: no limit. */
  maxReplicaLagBytes?: number
  /**
   * When no replica can serve a read: `'primary'` (default) sends it to the primary;
   * `'replicas-only'` fails it with `NoReplicaError` (protects the primary).
   */
  readFallback?: 'primary' | 'replicas-only'
  /**
   * Read-your-writes: how long a read may wait on a replica for it to replay the caller's last
   * write before going elsewhere, in milliseconds. Default 200.
   */
  readYourWritesTimeoutMs?: number
  /** Consecutive endpoint failures (connection errors, timeouts) that open its circuit breaker. Default 3. */
  failureThreshold?: number
  /** How long an open breaker waits before one half-open trial probe, in milliseconds. Default 10000. */
  halfOpenAfterMs?: number
  /** Cap of the breaker wait, which doubles (±20% jitter) after each failed trial, in milliseconds. Default 60000. */
  maxHalfOpenAfterMs?: number
  /**
   * Token bucket bounding retries, so a fleet does not stampede a recovering node: `burst` retries
   * back to back, `perSecond` earned back. Past it, the error surfaces instead. Default
   * `{ burst: 100, perSecond: 50 }`.
   */
  retryBudget?: { burst?: number; perSecond?: number }
  /**
   * Where the active primary is recorded so a restarted process (or another instance) starts on
   * the right node: `MemoryStateStore` (default), `FileStateStore`, `RedisStateStore`, or your own.
   * Treated as a hint: the recorded node is tried first and verified before the first write.
   */
  stateStore?: StateStore
  /** Deadline of one state-store operation, in milliseconds; a slower store is skipped. Default 1000. */
  stateStoreTimeoutMs?: number
  /**
   * Who monitors the nodes. `'local'` (default): this pool, with one monitor session per node for
   * the whole process. `'shared'`: one instance of the fleet at a time (the holder of a lease in
   * `stateStore`, which must support it: `RedisStateStore`) probes and watches every node and
   * publishes what it sees; the others hold no monitoring connection and follow it, probing on their
   * own only when their own requests fail, when nothing is published in time, or while the store is
   * unreachable.
   */
  monitor?: 'local' | 'shared'
  /**
   * Shared monitoring: how long the leader's lease lasts without renewal, in milliseconds; a leader
   * that died is replaced within about this long (it renews every third of it; the others try every
   * quarter), and a follower whose failure report goes unanswered for a fifth of it probes on its
   * own. Default 1000.
   */
  monitorLeaseTtlMs?: number
  /**
   * `'physical'` (default): streaming replication; the primary is the node out of recovery.
   * `'logical'`: several nodes are writable by design (logical-replication mirrors); the active
   * node is chosen by endpoint order and the state store, and only it gets writes.
   */
  topology?: 'physical' | 'logical'
  /** Runs on a new primary before it takes writes (writes wait); see `logicalMirrorHook`. */
  onPromote?: PromoteHook
  /** When `onPromote` throws or times out: `'refuse'` (default) never uses that node; `'proceed'` uses it anyway. */
  onPromoteFailure?: 'refuse' | 'proceed'
  /**
   * Deadline of one `onPromote` run (its checkout included), in milliseconds. Past it the hook's
   * client is cut and `onPromoteFailure` applies, so a hook blocked on a lock can neither hold
   * writes nor `end()` forever. Default 10000.
   */
  onPromoteTimeoutMs?: number
  /**
   * An HA manager to ask for a second opinion, e.g. `patroni({ urls: ['http://db1:8008'] })`: its
   * leader is a hint for the first discovery and breaks a tie between two writable nodes on one
   * timeline (which would otherwise refuse writes). Never trusted alone: the node must still verify
   * as writable, and an unreachable API changes nothing. Default: none.
   */
  haManager?: HaManager
  /** Time source for timers and durations; tests inject a fake. Default: the real clock. */
  clock?: Clock
}

/** Options after validation, with defaults applied. */
export interface ResolvedOptions {
  /** The endpoints at start (empty with a provider: its first answer brings them). */
  readonly endpoints: readonly ResolvedEndpoint[]
  /** Where the endpoint list comes from while the pool runs, when `endpoints` is a provider. */
  readonly endpointProvider: EndpointProvider | null
  /** The pg.Pool options shared by every endpoint's pool (password hidden). */
  readonly poolConfig: PoolConfig
  readonly failoverTimeoutMs: number
  readonly maxQueuedRequests: number
  readonly probeTimeoutMs: number
  readonly drainTimeoutMs: number
  readonly discoveryIntervalMs: number
  readonly promotionWatch: boolean | 'always'
  readonly promotionWatchWindowMs: number
  readonly promotionWatchCheckMs: number
  readonly warmStandbys: boolean
  readonly healthCheckIntervalMs: number
  readonly routeReads: 'off' | 'auto'
  readonly readStrategy: ReadStrategy
  readonly maxReplicaLagMs: number
  readonly maxReplicaLagBytes: bigint | null
  readonly readFallback: 'primary' | 'replicas-only'
  readonly readYourWritesTimeoutMs: number
  readonly breaker: BreakerSettings
  readonly retryBudget: RetryBudgetSettings
  readonly stateStore: StateStore
  readonly stateStoreTimeoutMs: number
  readonly topology: 'physical' | 'logical'
  readonly onPromote: PromoteHook | null
  readonly onPromoteFailure: 'refuse' | 'proceed'
  readonly monitor: 'local' | 'shared'
  readonly monitorLeaseTtlMs: number
  readonly onPromoteTimeoutMs: number
  readonly haManager: HaManager | null
  readonly clock: Clock
}

/**
 * Validates `options` and applies defaults.
 * @throws ConfigError naming the field and value (never a password) for anything invalid.
 */
export function resolveOptions(options: unknown): ResolvedOptions {
  if (options === null || typeof options !== 'object' || Array.isArray(options)) {
    throw new ConfigError('options', options, 'expected an options object with an `endpoints` list')
  }
  const input = options as Record<string, unknown>
  for (const key of Object.keys(input)) {
    if (key === 'failback') {
      // Accepted and ignored until 0.2; no value can be honoured safely (see docs/state-and-fencing.md, Failback).
      throw new ConfigError(key, input[key], "not an option: the pool always follows the cluster's verified primary and never moves back on its own (with topology 'logical' neither); move writes back with switchTo(name)")
    }
    // Frameworks build pg.Pool options themselves and pass address keys that are not set (TypeORM
    // sends host: undefined); those say nothing. A set one stands for the endpoints (see below).
    if (ENDPOINT_ONLY.has(key)) {
      if (input[key] !== undefined && 'endpoints' in input && input.endpoints !== undefined) {
        throw new ConfigError(key, input[key], 'give the server addresses either in `endpoints` or as a pool-level connectionString/host, not both')
      }
      continue
    }
    if (!PG_OPTION_NAMES.has(key) && !OWN_OPTION_NAMES.has(key)) {
      throw new ConfigError(key, input[key], 'unknown option name')
    }
    checkNumeric(key, input[key])
    const choices = CHOICE_OPTIONS[key]
    if (choices && input[key] !== undefined && !choices.includes(input[key] as string)) {
      throw new ConfigError(key, input[key], `expected one of ${choices.map((c) => `'${c}'`).join(', ')}`)
    }
  }
  const retryBudget = resolveRetryBudget(input.retryBudget)
  const store = input.stateStore as StateStore | undefined
  if (store !== undefined && (store === null || typeof store.load !== 'function' || typeof store.compareAndSet !== 'function')) {
    throw new ConfigError('stateStore', '[object]', 'expected a StateStore with load() and compareAndSet()')
  }
  if (input.monitor === 'shared' && (store === undefined || !supportsSharedMonitor(store))) {
    throw new ConfigError('monitor', 'shared', 'needs a stateStore that supports it (acquireLease, releaseLease, publish, subscribe), e.g. new RedisStateStore({ client })')
  }
  if (input.onPromote !== undefined && typeof input.onPromote !== 'function') {
    throw new ConfigError('onPromote', input.onPromote, 'expected an async function (client, context) => void')
  }
  const ha = input.haManager as HaManager | undefined
  if (ha !== undefined && (ha === null || typeof ha !== 'object' || typeof ha.view !== 'function' || typeof ha.kind !== 'string')) {
    throw new ConfigError('haManager', '[object]', 'expected an HA manager such as patroni({ urls }) (an object with kind and view())')
  }
  const endpointProvider = isEndpointProvider(input.endpoints) ? input.endpoints : null
  const endpointsInput = input.endpoints !== undefined ? input.endpoints : addressAsEndpoints(input)
  if (input.promotionWatch !== undefined && typeof input.promotionWatch !== 'boolean' && input.promotionWatch !== 'always') {
    throw new ConfigError('promotionWatch', input.promotionWatch, "expected true, false or 'always'")
  }
  if (input.warmStandbys !== undefined && typeof input.warmStandbys !== 'boolean') {
    throw new ConfigError('warmStandbys', input.warmStandbys, 'expected true or false')
  }
  const clock = (input.clock as Clock | undefined) ?? systemClock
  if (typeof clock.now !== 'function' || typeof clock.setTimeout !== 'function' || typeof clock.clearTimeout !== 'function') {
    throw new ConfigError('clock', '[object]', 'expected an object with now(), setTimeout() and clearTimeout()')
  }

  const poolConfig: PoolConfig = {}
  for (const key of Object.keys(input)) {
    // An option set to undefined is not given (frameworks pass max: undefined): pg's defaults apply.
    if (PG_OPTION_NAMES.has(key) && key !== 'password' && !ENDPOINT_ONLY.has(key) && input[key] !== undefined) (poolConfig as Record<string, unknown>)[key] = input[key]
  }
  if ('password' in input) hidePassword(poolConfig, input.password)

  const endpoints = endpointProvider !== null ? [] : resolveEndpoints(endpointsInput, poolConfig, input.endpoints !== undefined ? 'endpoints' : input.connectionString !== undefined ? 'connectionString' : 'host')
  checkEndpointOptions(endpoints)

  return {
    endpoints,
    endpointProvider,
    poolConfig,
    failoverTimeoutMs: (input.failoverTimeoutMs as number | undefined) ?? 30_000,
    maxQueuedRequests: (input.maxQueuedRequests as number | undefined) ?? 10_000,
    probeTimeoutMs: (input.probeTimeoutMs as number | undefined) ?? 3_000,
    drainTimeoutMs: (input.drainTimeoutMs as number | undefined) ?? 30_000,
    discoveryIntervalMs: (input.discoveryIntervalMs as number | undefined) ?? 250,
    promotionWatch: (input.promotionWatch as boolean | 'always' | undefined) ?? true,
    promotionWatchWindowMs: (input.promotionWatchWindowMs as number | undefined) ?? 1_000,
    // 10 ms keeps an idle promotion noticed within 20 ms at half the standby CPU of 5 ms while
    // instances watch (the primary gone); the leader of a shared monitor watches continuously for
    // the whole fleet, so it checks every 15 ms (bench/WATCH.md, bench/FLEET.md).
    promotionWatchCheckMs: (input.promotionWatchCheckMs as number | undefined) ?? (input.monitor === 'shared' ? 15 : 10),
    warmStandbys: (input.warmStandbys as boolean | undefined) ?? false,
    healthCheckIntervalMs: (input.healthCheckIntervalMs as number | undefined) ?? 2_000,
    routeReads: (input.routeReads as 'off' | 'auto' | undefined) ?? 'off',
    readStrategy: (input.readStrategy as ReadStrategy | undefined) ?? 'round-robin',
    maxReplicaLagMs: (input.maxReplicaLagMs as number | undefined) ?? Infinity,
    maxReplicaLagBytes: input.maxReplicaLagBytes === undefined ? null : BigInt(input.maxReplicaLagBytes as number),
    readFallback: (input.readFallback as 'primary' | 'replicas-only' | undefined) ?? 'primary',
    readYourWritesTimeoutMs: (input.readYourWritesTimeoutMs as number | undefined) ?? 200,
    breaker: {
      failureThreshold: (input.failureThreshold as number | undefined) ?? DEFAULT_BREAKER.failureThreshold,
      halfOpenAfterMs: (input.halfOpenAfterMs as number | undefined) ?? DEFAULT_BREAKER.halfOpenAfterMs,
      maxHalfOpenAfterMs: Math.max(
        (input.maxHalfOpenAfterMs as number | undefined) ?? DEFAULT_BREAKER.maxHalfOpenAfterMs,
        (input.halfOpenAfterMs as number | undefined) ?? DEFAULT_BREAKER.halfOpenAfterMs,
      ),
    },
    retryBudget,
    stateStore: store ?? new MemoryStateStore(),
    stateStoreTimeoutMs: (input.stateStoreTimeoutMs as number | undefined) ?? 1_000,
    topology: (input.topology as 'physical' | 'logical' | undefined) ?? 'physical',
    onPromote: (input.onPromote as PromoteHook | undefined) ?? null,
    onPromoteFailure: (input.onPromoteFailure as 'refuse' | 'proceed' | undefined) ?? 'refuse',
    onPromoteTimeoutMs: (input.onPromoteTimeoutMs as number | undefined) ?? 10_000,
    monitor: (input.monitor as 'local' | 'shared' | undefined) ?? 'local',
    monitorLeaseTtlMs: (input.monitorLeaseTtlMs as number | undefined) ?? 1_000,
    haManager: ha ?? null,
    clock,
  }
}

/**
 * Without `endpoints`, the pg.Pool way of giving the address stands for them: a `connectionString`
 * (one host, or libpq's multi-host `postgres://u@h1:5432,h2:5433/db`), or `host` (libpq's comma
 * list allowed, e.g. `'h1,h2'`) with `port` (one for all, or one per host).
 * @throws ConfigError when neither is given, or host and port lists do not match.
 */
function addressAsEndpoints(input: Record<string, unknown>): unknown {
  if (input.connectionString !== undefined) return input.connectionString
  if (input.host === undefined) throw new ConfigError('endpoints', undefined, 'at least one endpoint is required (endpoints, or a connectionString or host as for pg.Pool)')
  if (typeof input.host !== 'string') throw new ConfigError('host', input.host, 'expected a host name or a comma-separated list of them')
  const hosts = input.host.split(',').map((h) => h.trim())
  const ports = input.port === undefined ? [] : String(input.port).split(',').map((p) => p.trim())
  if (ports.length > 1 && ports.length !== hosts.length) throw new ConfigError('port', input.port, `expected one port, or one per host (${hosts.length})`)
  return hosts.map((host, i) => ({ host, ...(ports.length > 0 ? { port: ports[ports.length === 1 ? 0 : i] } : {}) }))
}

function resolveRetryBudget(value: unknown): RetryBudgetSettings {
  if (value === undefined) return DEFAULT_RETRY_BUDGET
  if (value === null || typeof value !== 'object') throw new ConfigError('retryBudget', value, 'expected { burst?, perSecond? }')
  const { burst, perSecond, ...rest } = value as Record<string, unknown>
  const unknown = Object.keys(rest)[0]
  if (unknown !== undefined) throw new ConfigError(`retryBudget.${unknown}`, rest[unknown], 'unknown option name')
  for (const [field, v] of [['burst', burst], ['perSecond', perSecond]] as const) {
    if (v !== undefined && (typeof v !== 'number' || !Number.isFinite(v) || v < 0)) throw new ConfigError(`retryBudget.${field}`, v, 'expected a number >= 0')
  }
  return { burst: (burst as number | undefined) ?? DEFAULT_RETRY_BUDGET.burst, perSecond: (perSecond as number | undefined) ?? DEFAULT_RETRY_BUDGET.perSecond }
}

/**
 * Every endpoint's own client settings are pg options with valid values (the `endpoints` option,
 * `setEndpoints()`, a provider's answer). @throws ConfigError naming `endpoints[i].key`.
 */
export function checkEndpointOptions(endpoints: readonly ResolvedEndpoint[]): void {
  endpoints.forEach((e, i) => {
    for (const key of Object.keys(e.config)) {
      if (!PG_OPTION_NAMES.has(key)) throw new ConfigError(`endpoints[${i}].${key}`, (e.config as Record<string, unknown>)[key], 'unknown option name')
      checkNumeric(`endpoints[${i}].${key}`, (e.config as Record<string, unknown>)[key], key)
    }
  })
}
