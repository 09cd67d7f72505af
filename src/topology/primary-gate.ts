import type { Endpoint } from '../endpoint/endpoint.js'
import { AllEndpointsDownError, type EndpointAnswer, NoPrimaryError, SplitBrainError, maskPassword } from '../errors.js'
import type { RoundSchedule } from './round-schedule.js'
import type { ResolvedOptions } from '../options.js'
import { classifyError } from '../error-policy.js'
import type { FailureReport, Target } from '../surface/routing-host.js'
import { type EndpointHealth, nodeErrorOf } from './endpoint-health.js'
import { Waiters } from './waiters.js'
import { type WriterState, lossOf } from './writer-state.js'

/** What the gate reads of the coordinator. */
export interface GateHost {
  readonly endpoints: readonly Endpoint[]
  readonly state: WriterState
  /** True once the pool verified a primary (fail-fast waits only for the first). */
  readonly everVerified: boolean
  health(endpoint: Endpoint): EndpointHealth
  /** What each endpoint last answered, for NoPrimaryError. */
  answers(): EndpointAnswer[]
  /** True while some endpoint has not answered since the last topology change. */
  evidencePending(): boolean
  /** Discovery rounds: one for a waiting request (forWaiter), fail-fast's fresh look (lookAgain). */
  readonly rounds: Pick<RoundSchedule, 'forWaiter' | 'lookAgain'>
  transition(change: () => void): void
  /** A failure seen of `endpoint` in era `era` (inside a transition): a doubt that a probe confirms. */
  raiseDoubt(endpoint: Endpoint, reason: string, era: number): void
}

/**
 * Where requests meet the topology. They ask for the primary: each is answered at once when one is
 * verified, told at once why none can come (every breaker open, fail-fast, too many waiting), or
 * queued with its own deadline until {@link settle} — called by the coordinator after every
 * transition — answers it. And they report what failed, which only ever raises a doubt.
 */
export class PrimaryGate {
  readonly #waiters: Waiters<Target>

  constructor(
    private readonly host: GateHost,
    private readonly opts: ResolvedOptions,
  ) {
    this.#waiters = new Waiters(opts.clock)
  }

  /** Requests waiting for a primary. */
  get size(): number {
    return this.#waiters.size
  }

  /** The verified primary's shared target, or null: the synchronous hot path of every write. */
  readyWriteTarget(): Target | null {
    const s = this.host.state
    return s.kind === 'verified' ? s.target : null
  }

  /** True while `target` is the current generation's primary target (or its read lane's twin). */
  isCurrentPrimary(target: Target): boolean {
    const s = this.host.state
    return s.kind === 'verified' && s.target.generation === target.generation
  }

  /**
   * A request's failure, classified where it happened and reported once. It only raises a doubt:
   * one lost session (a terminated backend, an idle-session timeout) or a 25006 from the caller's
   * own read-only transaction says nothing about the node, so a probe confirms first — writes keep
   * flowing meanwhile, retries wait for the verdict — and only the probe's verdict changes anything.
   */
  report({ target, error, errorClass, era }: FailureReport): void {
    if (this.host.state.kind === 'ended') return
    if (errorClass !== 'connection' && errorClass !== 'read-only') return
    const endpoint = target.endpoint
    const reason =
      errorClass === 'read-only'
        ? `${endpoint.name} answered 25006 read_only_sql_transaction`
        : `connection failure on ${endpoint.name}: ${maskPassword(error.message)}`
    this.host.transition(() => this.host.raiseDoubt(endpoint, reason, era))
  }

  /** An idle client's error (no request saw it): a doubt when it is connection-class. */
  idleError(endpoint: Endpoint, error: Error): void {
    if (this.host.state.kind === 'ended' || classifyError(error) !== 'connection') return
    this.host.transition(() => this.host.raiseDoubt(endpoint, `idle connection to ${endpoint.name} failed: ${maskPassword(error.message)}`, this.host.health(endpoint).era))
  }

  /**
   * Calls back with the primary's target now, when one is verified, or with why there will be none.
   * `retryOf`: a retry after an attempt failed there waits while that primary is in doubt.
   */
  whenPrimary(since: number, callback: (err: Error | undefined, target?: Target) => void, retryOf: Target | null = null): void {
    const { host, opts } = this
    const s = host.state
    if (s.kind === 'verified' && !(retryOf !== null && retryOf.endpoint === s.primary && host.health(s.primary).doubt !== null)) return callback(undefined, s.target)
    const clock = opts.clock
    // Every breaker open (and no store read pending): no node can answer before its wait ends; say so now.
    if (s.kind !== 'booting' && s.kind !== 'ended' && s.kind !== 'verified' && host.endpoints.every((e) => host.health(e).breaker.state.kind === 'open')) {
      const report = host.endpoints.map((e) => ({ endpoint: e.name, breaker: host.health(e).breaker.state.kind, lastError: this.#errorText(e) }))
      return callback(new AllEndpointsDownError(report))
    }
    if (opts.failoverTimeoutMs === 0 && s.kind !== 'ended') return this.#failFast(since, callback)
    const remaining = since + opts.failoverTimeoutMs - clock.now()
    if (s.kind !== 'ended' && (remaining <= 0 || this.#waiters.size >= opts.maxQueuedRequests)) {
      const why = remaining <= 0 ? undefined : new Error(`${this.#waiters.size} requests already wait for a primary (maxQueuedRequests)`)
      return callback(new NoPrimaryError(host.answers(), Math.round(clock.now() - since), why ? { cause: why } : undefined))
    }
    this.#waiters.add(callback, Math.max(remaining, 0), () => new NoPrimaryError(host.answers(), Math.round(clock.now() - since)))
    // A transition (even one that changes nothing) settles the new waiter if the state already answers it.
    host.rounds.forWaiter()
  }

  /**
   * Settles waiting requests from the current state — the one place that does (besides each
   * request's own deadline).
   */
  settle(): void {
    if (this.#waiters.size === 0) return
    const { host } = this
    const s = host.state
    if (s.kind === 'verified') {
      if (host.health(s.primary).doubt === null) this.#waiters.settleAll(undefined, s.target)
    } else if (s.kind === 'split-brain') this.#waiters.settleAll(new SplitBrainError(s.candidates, s.reason))
    else if (s.kind === 'discovering' && s.refusal !== null) this.#waiters.settleAll(s.refusal)
    // Fail-fast: the round the waiters wait for has answered everywhere without a primary; nobody waits longer.
    else if (this.opts.failoverTimeoutMs === 0 && s.kind === 'discovering' && !host.evidencePending()) this.#waiters.settleAll(this.#nodeError())
    else if (s.kind === 'ended') this.#waiters.settleAll(new Error('Cannot use a pool after calling end on the pool'))
  }

  /**
   * Fail-fast mode (`failoverTimeoutMs: 0`, pg.Pool's semantics): no waiting for a failover. While
   * no primary is verified a request waits for one round of probes — the first discovery, the one
   * under way, or a fresh one it starts — within `connectionTimeoutMillis` (else `probeTimeoutMs`);
   * then the caller gets the error the node itself gave.
   */
  #failFast(since: number, callback: (err: Error | undefined, target?: Target) => void): void {
    const { host, opts } = this
    const s = host.state
    if (s.kind === 'split-brain') return callback(new SplitBrainError(s.candidates, s.reason))
    const first = !host.everVerified && (s.kind === 'booting' || host.evidencePending())
    // Every node has answered without a primary: as pg.Pool connects afresh for every request, this
    // one waits for a fresh look (one round for every request that arrives meanwhile) rather than
    // get the answers of an earlier one. While a round is under way, the node's error comes at once.
    const looking = !first && s.kind === 'discovering' && !host.evidencePending() && host.rounds.lookAgain()
    if (!first && !looking) return callback(this.#nodeError())
    const waitMs = (opts.poolConfig.connectionTimeoutMillis || opts.probeTimeoutMs) - (opts.clock.now() - since)
    this.#waiters.add(callback, Math.max(waitMs, 0), () => new Error('Connection terminated due to connection timeout', { cause: this.#nodeError() }))
  }

  /** The error pg.Pool would have given (see {@link nodeErrorOf}), else NoPrimaryError. */
  #nodeError(): Error {
    const { host } = this
    return nodeErrorOf(host.endpoints, (e) => host.health(e), lossOf(host.state)?.from ?? null) ?? new NoPrimaryError(host.answers(), 0)
  }

  #errorText(e: Endpoint): string | null {
    const error = this.host.health(e).lastError
    return error ? maskPassword(error.message) : null
  }
}
