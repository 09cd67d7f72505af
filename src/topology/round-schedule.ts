import { jitter, randomOf } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { Discovery, type RoundListener, type SharedProbes } from '../health/discovery.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import type { EndpointHealth } from './endpoint-health.js'
import type { EndpointEvents } from './endpoint-events.js'
import type { Evidence } from './evidence.js'
import type { WriterState } from './writer-state.js'

/** What the schedule reads of the coordinator. */
export interface ScheduleHost {
  readonly endpoints: readonly Endpoint[]
  readonly state: WriterState
  readonly events: EndpointEvents
  health(endpoint: Endpoint): EndpointHealth
  transition(change: () => void): void
  effect(fn: () => void): void
  /** A probe's outcome, the HA manager's answer: the verdicts (inside a transition). */
  readonly verdicts: Pick<RoundListener, 'probed' | 'viewed'>
  /** A round settled (inside a transition) on a verified `primary`, or with none. */
  roundSettled(primary: Endpoint | null): void
}

/**
 * When discovery rounds run: one now when something changed, one every `discoveryIntervalMs`
 * while no primary is verified, a health check every `healthCheckIntervalMs` while one is (both
 * whether or not the last settled), and single confirming probes.
 * Everything here runs as effects of the coordinator's transitions.
 */
export class RoundSchedule {
  readonly #discovery: Discovery

  constructor(
    private readonly host: ScheduleHost,
    private readonly evidence: Evidence,
    private readonly opts: ResolvedOptions,
    shared: SharedProbes | null,
  ) {
    this.#discovery = new Discovery(() => host.endpoints, opts.probeTimeoutMs, opts.clock, {
      mayProbe: (e) => this.#mayProbe(e),
      probed: (e, outcome, sent) => host.transition(() => host.verdicts.probed(e, outcome, sent)),
      settled: () => host.transition(() => this.#settled()),
      viewed: (result, startedAt) => host.transition(() => host.verdicts.viewed(result, startedAt)),
    }, (e) => host.health(e).era, opts.haManager, shared)
  }

  /** True while a discovery round is probing. */
  get running(): boolean {
    return this.#discovery.running
  }

  /** Starts a round (after the transition); probes sent before the last topology event are sent again. */
  start(reason: string): void {
    this.host.effect(() => {
      if (this.host.state.kind === 'ended') return
      this.#discovery.start(reason, this.evidence.changedAt)
      topologyLog('discovery: %s', reason)
      this.#probeJoining()
      this.scheduleNext()
    })
  }

  /** A request waits: a round now unless one runs or is scheduled (a transition, which settles waiters). */
  forWaiter(): void {
    this.host.transition(() => {
      if (this.host.state.kind === 'discovering' && !this.#discovery.running && !this.#discovery.scheduled) this.start('a request is waiting for a primary')
    })
  }

  /**
   * Fail-fast mode: pg.Pool tries a connection for every request, so a request that finds no
   * primary and no round probing has every endpoint probed afresh (answers from before it stop
   * counting). True when that round started; false while one runs anyway (the request waits for
   * it) or the pool is not discovering.
   */
  lookAgain(): boolean {
    if (this.host.state.kind !== 'discovering' || this.#discovery.running) return false
    this.host.transition(() => {
      this.evidence.invalidate(this.opts.clock.now())
      this.start('a request asks again (fail-fast)')
    })
    return true
  }

  /** While no primary is verified, a round every `discoveryIntervalMs` whether or not the last one settled. */
  scheduleNext(): void {
    this.host.effect(() => {
      const s = this.host.state
      if (s.kind === 'verified' || s.kind === 'ended' || s.kind === 'booting') return
      this.#discovery.schedule(jitter(this.opts.discoveryIntervalMs, 0.2, randomOf(this.opts.clock)), 'no primary yet: probing again', () => this.evidence.changedAt, () =>
        this.host.transition(() => this.scheduleNext()),
      )
    })
  }

  /** Probes `endpoint` now, outside any round (after the transition), for a verdict of its current era. */
  confirm(endpoint: Endpoint): void {
    const freshSince = this.opts.clock.now()
    this.host.effect(() => this.#discovery.confirm(endpoint, freshSince))
  }

  /**
   * A primary was adopted: the fast cadence ends (an effect), and {@link keepChecking} starts the
   * health checks from now, after the transition, whether or not the round that found it settled.
   */
  adopted(): void {
    this.host.effect(() => {
      this.#discovery.cancelSchedule()
      if (!this.#discovery.running) this.#settled()
    })
  }

  /**
   * The one rule of the health checks, run after every transition: while a primary is verified, a
   * check is always scheduled — `healthCheckIntervalMs` (±20 %) after the last one started, or after
   * whatever replaced it (an adoption, a round started while verified). Never after a round
   * settles: a round may wait for a standby answering at the end of its watch window or a frozen
   * one's probe deadline, and a primary that fails meanwhile would go unchecked past the documented
   * detection bound (probeTimeoutMs + 1.2 × healthCheckIntervalMs).
   */
  keepChecking(): void {
    if (this.host.state.kind === 'verified' && !this.#discovery.scheduled) this.#scheduleHealthCheck()
  }

  /** Stops scheduling and reporting (an effect of ending). */
  stop(): void {
    this.#discovery.stop()
  }

  #settled(): void {
    const s = this.host.state
    if (s.kind === 'ended') return
    this.host.roundSettled(s.kind === 'verified' ? s.primary : null)
    if (s.kind !== 'verified') this.scheduleNext()
  }

  /**
   * The next health check (see {@link keepChecking}), whether or not the last settled. A node whose
   * probe is still out (frozen, a partition) is left out of the checks until that probe ends, so it
   * delays neither the next check nor the others' (a frozen standby used to hold the primary's
   * next check for a probe deadline).
   */
  #scheduleHealthCheck(): void {
    this.#discovery.schedule(
      jitter(this.opts.healthCheckIntervalMs, 0.2, randomOf(this.opts.clock)),
      'health check',
      () => this.evidence.changedAt,
      // A transition of its own: keepChecking schedules the next check after it.
      () => this.host.transition(() => this.#probeJoining()),
      true,
    )
  }

  /**
   * Nodes that have never answered — added at runtime while still being built, or down since the
   * pool started — are probed on their own once per round, outside it and whatever their breaker
   * says (one probe each at a time): a new replica serves reads within a health interval of first
   * answering, not after the breaker's backoff (10 s, doubling to 60 s, by default), and one that
   * never answers never holds up the health of the others. (Until a primary is verified every round
   * probes every node anyway.)
   */
  #probeJoining(): void {
    if (this.host.state.kind !== 'verified') return
    const now = this.opts.clock.now()
    for (const e of this.host.endpoints) {
      if (e.lastProbe === null) this.host.effect(() => !this.#discovery.probing(e) && this.#discovery.confirm(e, now))
    }
  }

  /**
   * Breakers protect user traffic, never discovery: while no primary is verified every endpoint is
   * probed. Otherwise an open breaker skips the endpoint and a half-open one lets one trial probe
   * through (released by whatever ends that probe).
   */
  #mayProbe(endpoint: Endpoint): boolean {
    const health = this.host.health(endpoint)
    this.host.events.breaker(endpoint, health.breaker.refresh(), 'open wait over: one trial probe')
    const s = this.host.state
    if (s.kind !== 'verified') return true
    // The verified primary is checked every time whatever its breaker says: the check is how its
    // failure is noticed, and an open breaker would hide a frozen primary until the trial.
    if (endpoint === s.primary) return true
    // Never answered: probed on its own (#probeJoining), so a silent one never holds up a round.
    if (endpoint.lastProbe === null) return false
    return health.breaker.tryTrial()
  }
}
