import type { PoolOptions } from 'pg'
import type { Clock } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import type { Lane } from '../endpoint/lane.js'
import type { ErrorClass } from '../error-policy.js'

/** Where one attempt of a request runs. */
export interface Target {
  readonly endpoint: Endpoint
  readonly lane: Lane
  /** Topology generation when the target was chosen; reports from an older one never move topology. */
  readonly generation: number
  /** Whether the node is the verified primary or a replica. */
  readonly role: 'primary' | 'replica'
  /** True when the node is known to satisfy the read-your-writes requirement. */
  readonly caughtUp: boolean
  /** A replica's read: its per-query staleness budget in ms (undefined: `maxReplicaLagMs`), held again at send time. */
  readonly maxStalenessMs?: number | undefined
}

/** Per-read requirements passed to the host. */
export interface ReadRequest {
  /** Replicas that already failed this read. */
  readonly exclude: ReadonlySet<string>
  /** Per-query staleness budget in ms, overriding `maxReplicaLagMs`. */
  readonly maxStalenessMs: number | undefined
  /** Read-your-writes: the replica must have replayed this position. */
  readonly minLsn: bigint | null
}

/**
 * One failure, reported once from where it happened and classified there: the endpoint, the
 * target's generation and the endpoint's era when the attempt started (so that late results from
 * before a change, and many connections broken by one event, count once).
 */
export interface FailureReport {
  readonly target: Target
  readonly error: Error
  readonly errorClass: ErrorClass
  /** The endpoint's era (see {@link RoutingHost.eraOf}) when the failed attempt started. */
  readonly era: number
}

/** Calls back with where to run, or with why nothing can run. */
export type TargetCallback = (err: Error | undefined, target?: Target) => void

/** What a surface needs from the topology: the FailoverPool wires this to its coordinator. */
export interface RoutingHost {
  readonly clock: Clock
  readonly readYourWritesTimeoutMs: number
  readonly ending: boolean
  /** The verified primary's write target when it is ready now (the synchronous hot path), else null. */
  readyWriteTarget(): Target | null
  /**
   * Calls back with where to run, waiting (bounded by `since + failoverTimeoutMs`) for a primary when
   * needed. `retryOf`: the target an attempt of this request just failed on; a retry on the primary
   * waits until the pool has confirmed or left it (never hammering a node that may be gone).
   */
  target(kind: 'write' | 'read', since: number, read: ReadRequest | null, callback: TargetCallback, retryOf?: Target | null): void
  /**
   * True while `target` is still where its kind of statement may go: the primary of the current
   * generation, or a replica that still serves reads. Checked right before a statement is sent (or
   * a client handed out): a connection handed out for an older generation is never used.
   */
  isCurrent(target: Target): boolean
  /** The endpoint's staleness token now: an attempt records it when it starts. */
  eraOf(endpoint: Endpoint): number
  /** True when the pool left `endpoint` after an attempt that began in era `era` (a success then may be lost). */
  leftSince(endpoint: Endpoint, era: number): boolean
  /** A connection-class or read-only failure seen by a request: reported exactly once per failed attempt. */
  report(failure: FailureReport): void
  /**
   * The write lane a request may check a client out of before its target is known (see
   * EarlyCheckout): the only endpoint's, until the pool first verified a primary; else null.
   */
  earlyWriteLane(): Lane | null
  /** The lanes of every endpoint for a kind of traffic. */
  lanes(kind: 'write' | 'read'): readonly Lane[]
  /** pg.Pool#options of the current primary (or the first endpoint). */
  primaryOptions(): PoolOptions
  /** Requests waiting for a primary to be verified (part of a write surface's waitingCount). */
  waitingForPrimary(): number
  /** Takes a token from the retry budget; false when retrying now would stampede a node. */
  spendRetry(): boolean
  /** `failoverTimeoutMs: 0`: no waiting for a failover and no retries; errors reach callers as pg.Pool reports them. */
  readonly failFast: boolean
  /** A request began (it is in flight until {@link requestFinished}): end() lets these complete. */
  requestStarted(): void
  /** A request answered its caller (a checkout: handed its client out). */
  requestFinished(): void
}
