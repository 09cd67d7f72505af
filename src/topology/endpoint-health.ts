import type { Clock } from '../clock.js'
import { randomOf } from '../clock.js'
import { type BreakerSettings, type BreakerTransition, CircuitBreaker } from '../endpoint/breaker.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { roleOf } from '../endpoint/role-probe.js'
import { classifyError, isTimeout } from '../error-policy.js'
import type { EndpointRole } from '../observe/status.js'

/** What a probe outcome did to an endpoint's reachability. */
export type ReachabilityChange =
  /** The probe began before the endpoint's last change: it says nothing about now. */
  | 'stale'
  /** The endpoint was up (or unknown) and is down now. */
  | 'down'
  /** The endpoint was down and answered: up again. */
  | 'up'
  /** Nothing changed. */
  | 'same'

/** A change worth announcing: the breaker moved, or the endpoint went down or came back. */
export interface HealthNews {
  readonly reachability: 'down' | 'up' | null
  readonly breaker: BreakerTransition | null
}

/**
 * Everything the coordinator holds about one endpoint beyond what its probes measured: its
 * reachability, circuit breaker, the doubt a failed request raised, and what the pool has decided
 * about it (fenced, another cluster, refused by its hook, drained, left). One record per endpoint,
 * written only by the coordinator.
 *
 * **One staleness token**, {@link era}: it moves whenever what the pool knows or does about the
 * node changes (a doubt is raised, it goes down, comes back, is promoted or is left). A probe or a
 * request attempt carries the era it began in; a result from an older era says nothing about now
 * — so one crash that breaks many connections counts once, and a late answer from before a change
 * never moves anything.
 */
export class EndpointHealth {
  readonly breaker: CircuitBreaker
  #era = 0
  #eraSince = Number.NEGATIVE_INFINITY
  /** The staleness token (see the class comment). */
  get era(): number {
    return this.#era
  }
  set era(next: number) {
    this.#era = next
    this.#eraSince = this.clock.now()
  }
  /**
   * The era a probe evaluated at `startedAt` (clock ms) belongs to: the current one when it began
   * after the last change, else an older one (its answer is stale). For observations made elsewhere
   * (shared monitoring), whose era this pool never stamped.
   */
  /**
   * The current era began at `at` (clock ms, in the past) rather than now: the change was seen
   * elsewhere first (a fleet's leader noticed a promotion then), and what was probed since is current.
   */
  backdateEra(at: number): void {
    this.#eraSince = Math.min(this.#eraSince, at)
  }

  eraAt(startedAt: number): number {
    return startedAt >= this.#eraSince ? this.#era : this.#era - 1
  }
  /** The era in which the pool last left (cut) this node; attempts that began before it ran on a node left meanwhile. */
  leftEra = -1
  reachability: 'unknown' | 'up' | 'down' = 'unknown'
  /** The last error it gave us (connection or configuration), cleared by a successful probe. */
  lastError: Error | null = null
  /**
   * A request saw this node fail (a lost session, a 25006): a probe is confirming before anything
   * else changes. Writes keep flowing; only retries of failed attempts wait for the verdict.
   */
  doubt: { readonly reason: string; readonly era: number } | null = null
  /** Writable but stale (older timeline) or disputed: never written to (nor read from). */
  fenced = false
  /**
   * Why this standby may not serve reads although it answers (null: it may): it is on an older
   * timeline than the primary and no WAL receiver streams — it cannot follow the cluster (a
   * diverged old primary restarted as a standby without pg_rewind, say).
   */
  readFence: string | null = null
  /**
   * It answered as a writable primary since it was last seen streaming as a standby: back as a
   * standby, it may hold writes the cluster lost until it streams from the new primary again.
   */
  formerPrimary = false
  /** Reports another cluster's system identifier: never used. */
  otherCluster = false
  /** Its promotion was noticed; no reads until a later probe says what it is now. */
  promoted = false
  /** Its `onPromote` hook failed under `onPromoteFailure: 'refuse'`: never used until `switchTo()`. */
  refusedByHook = false
  /** Taken out of service by `drain()` until `undrain()`. */
  drained = false
  /**
   * The node has said it takes no writes (a probe found it read-only or in recovery) since it was
   * last found writable. Leaving such a node lets its running statements answer (see Endpoint#leave).
   */
  saidReadOnly = false

  constructor(
    settings: BreakerSettings,
    private readonly clock: Clock,
  ) {
    this.breaker = new CircuitBreaker(settings, clock, randomOf(clock))
  }

  /**
   * A request's attempt that began in era `era` failed: true when this raises a new doubt (the
   * caller confirms it with a probe). An attempt from an older era belongs to an event already
   * seen; a node already down or in doubt needs nothing more.
   */
  doubted(reason: string, era: number): boolean {
    if (era < this.era || this.doubt !== null || this.reachability === 'down') return false
    this.doubt = { reason, era: ++this.era }
    return true
  }

  /**
   * A probe that began in era `era` failed with a connection-class error. One from an older era is
   * stale, except a timeout whose only later change is the doubt being confirmed: it says the node
   * has not answered for probeTimeoutMs up to now, which is the verdict the doubt waits for. (The
   * confirming probe queues behind it on the node's one monitor session; waiting for that one too
   * would leave a primary that froze just then unnoticed for twice the probe timeout.)
   */
  probeFailed(error: Error, era: number): { change: ReachabilityChange; news: HealthNews } {
    if (era < this.era && !this.#confirmsDoubt(error, era)) return { change: 'stale', news: NO_NEWS }
    this.doubt = null
    this.lastError = error
    const breaker = this.breaker.recordFailure()
    if (this.reachability === 'down') return { change: 'same', news: { reachability: null, breaker } }
    this.reachability = 'down'
    this.era++
    return { change: 'down', news: { reachability: 'down', breaker } }
  }

  /** True when a probe of era `era` that failed with `error` is the doubt's confirmation (see {@link probeFailed}). */
  #confirmsDoubt(error: Error, era: number): boolean {
    return this.doubt !== null && this.doubt.era === this.era && era === this.era - 1 && isTimeout(error)
  }

  /** A probe that began in era `era` got an answer. */
  probeAnswered(era: number): { change: ReachabilityChange; news: HealthNews } {
    if (era < this.era) return { change: 'stale', news: NO_NEWS }
    this.doubt = null
    this.lastError = null
    this.promoted = false
    const breaker = this.breaker.recordSuccess()
    if (this.reachability === 'up') return { change: 'same', news: { reachability: null, breaker } }
    const wasDown = this.reachability === 'down'
    this.reachability = 'up'
    this.era++
    return { change: 'up', news: { reachability: wasDown ? 'up' : null, breaker } }
  }

  /** A probe that began in era `era` was refused for a configuration reason (authentication, database, too many clients): shown, never a failure. */
  probeRefused(error: Error, era: number): void {
    if (era < this.era) return
    this.doubt = null
    this.lastError = error
  }

  /** The pool leaves the node: everything running there is cut. */
  left(): void {
    this.doubt = null
    this.leftEra = ++this.era
  }

  /** A standby's promotion was noticed: what it said before means nothing now. */
  promotionNoticed(): void {
    this.promoted = true
    this.era++
  }
}

const NO_NEWS: HealthNews = { reachability: null, breaker: null }

/** The role `status()` and `roleChange` show for an endpoint. */
export function endpointRole(endpoint: Endpoint, health: EndpointHealth, isPrimary: boolean): EndpointRole {
  if (health.otherCluster) return 'mismatched-system'
  if (health.fenced) return 'fenced'
  if (isPrimary) return 'primary'
  const error = health.lastError
  if (error !== null && (endpoint.lastProbe === null || classifyError(error) === 'connection')) return 'unreachable'
  if (endpoint.lastProbe === null) return 'unknown'
  const role = roleOf(endpoint.lastProbe)
  return role === 'primary' ? 'unverified-primary' : role
}

/** True when the endpoint may serve reads as a replica (the primary is checked by the caller). */
export function servesReads(endpoint: Endpoint, health: EndpointHealth): boolean {
  return (
    health.lastError === null &&
    health.doubt === null &&
    health.readFence === null &&
    !health.promoted &&
    !health.drained &&
    !health.otherCluster &&
    !health.fenced &&
    endpoint.lastProbe !== null &&
    endpoint.lastProbe.inRecovery &&
    health.breaker.allowsTraffic
  )
}

/**
 * The error pg.Pool would have given a caller, for fail-fast mode: the last connection or
 * configuration error of the node the pool lost (`preferred`), else of the first endpoint that has
 * one — the driver's own error object, unchanged. Null when none has.
 */
export function nodeErrorOf(endpoints: readonly Endpoint[], healthOf: (e: Endpoint) => EndpointHealth, preferred: string | null): Error | null {
  const ordered = [...endpoints].sort((a, b) => Number(b.name === preferred) - Number(a.name === preferred))
  for (const e of ordered) {
    const error = healthOf(e).lastError
    if (error !== null && classifyError(error) !== 'statement') return error
  }
  return null
}
