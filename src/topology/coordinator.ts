import { jitter, randomOf } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { classifyError, isTimeout } from '../error-policy.js'
import { AllEndpointsDownError, type EndpointAnswer, NoPrimaryError, SplitBrainError, maskPassword } from '../errors.js'
import type { EventSink, FailoverEvent } from '../events.js'
import { Discovery } from '../health/discovery.js'
import type { FleetHost, FleetMonitor, FleetRole } from '../health/fleet-monitor.js'
import { type WatchFactory, Watches } from '../health/watches.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import { StateSync } from '../state/state-sync.js'
import type { StateRecord } from '../state/state-store.js'
import type { FailureReport, Target } from '../surface/routing-host.js'
import type { HaManager } from '../ha/ha-manager.js'
import { ClusterKnowledge } from './cluster-knowledge.js'
import { type ElectionHost, Elector } from './elector.js'
import { EndpointHealth, type HealthNews, endpointRole, nodeErrorOf } from './endpoint-health.js'
import type { ProbeOutcome } from './election.js'
import { Evidence, type HaReport } from './evidence.js'
import { ProbeVerdicts, type VerdictHost } from './probe-verdicts.js'
import { Transitions } from './transitions.js'
import { Waiters } from './waiters.js'
import { type Loss, type WriterState, lossOf, shownPrimary, writingTo } from './writer-state.js'

/** How often, at most, a verified pool checks that the state store still holds its decision (ms). */
const STATE_HEAL_INTERVAL_MS = 30_000

/** What the coordinator is built from; endpoints and watches are injected so its rules run on a fake clock. */
export interface CoordinatorDeps {
  readonly endpoints: readonly Endpoint[]
  readonly options: ResolvedOptions
  readonly events: EventSink
  /** Promotion watches (null: none). */
  readonly watches: WatchFactory | null
  /** The fleet's shared monitoring (`monitor: 'shared'`), or null. */
  readonly fleet?: FleetMonitor | null
}

/**
 * The only place topology changes. It owns the writer's state ({@link WriterState}), each
 * endpoint's {@link EndpointHealth}, the requests waiting for a primary and the evidence of the
 * latest probes. Requests, probes and watches report outcomes here; this class alone decides, one
 * decision at a time (JavaScript's single thread is the lock: every decision is synchronous).
 *
 * Every change is a transition ({@link Transitions}): it assigns the complete new state first —
 * generation, writer state, health — and queues its effects, which run after, in order; waiting
 * requests are settled from the state by one function once the effects ran, and everything that
 * reaches user code (events, request callbacks) is deferred beyond that.
 */
export class Coordinator implements ElectionHost, VerdictHost, FleetHost {
  readonly endpoints: readonly Endpoint[]
  #state: WriterState = { kind: 'booting' }
  /** Bumped on every change of where writes go; reports and connections from an older generation move nothing. */
  #generation = 0
  /** True once this pool has verified a primary (fail-fast waits only for the first). */
  #everVerified = false
  readonly #health = new Map<Endpoint, EndpointHealth>()
  readonly #evidence = new Evidence()
  readonly #elector: Elector
  readonly #waiters: Waiters<Target>
  readonly #discovery: Discovery
  readonly #watches: Watches
  readonly #opts: ResolvedOptions
  readonly #tx: Transitions
  readonly #fleet: FleetMonitor | null
  readonly #verdicts: ProbeVerdicts
  /** Aborts the promotion hook running now, if any (end() calls it). */
  #abortHook: (() => void) | null = null
  /** When the store was last written or checked for our decision (clock ms), and why we decided it. */
  #lastHealAt = Number.NEGATIVE_INFINITY
  #decisionReason = 'primary verified'
  /** System identifier, minimum timeline, epoch, failovers, stored hint. */
  readonly cluster: ClusterKnowledge
  readonly sync: StateSync

  constructor(deps: CoordinatorDeps) {
    const { endpoints, options, events } = deps
    this.endpoints = endpoints
    this.#opts = options
    for (const e of endpoints) this.#health.set(e, new EndpointHealth(options.breaker, options.clock))
    this.#tx = new Transitions(events, () => this.#afterTransition())
    this.cluster = new ClusterKnowledge(options.topology)
    this.sync = new StateSync(options.stateStore, options.clock, options.stateStoreTimeoutMs, (event, payload) => this.#tx.announce(event, payload))
    this.#waiters = new Waiters(options.clock)
    this.#fleet = deps.fleet ?? null
    const noticed = (e: Endpoint): void => {
      this.#fleet?.promotionNoticedLocally(e)
      this.promotionNoticed(e)
    }
    this.#watches = new Watches(deps.watches, noticed, options.promotionWatch === 'always')
    this.#elector = new Elector(this, this.#evidence, options)
    const verdicts = new ProbeVerdicts(this, this.#evidence, this.#watches, this.#elector)
    this.#verdicts = verdicts
    const shared = this.#fleet
      ? { probes: this.#fleet, eraAt: (e: Endpoint, at: number) => this.health(e).eraAt(at), takesFailureOf: (e: Endpoint) => writingTo(this.#state) !== e }
      : null
    this.#discovery = new Discovery(endpoints, options.probeTimeoutMs, options.clock, {
      mayProbe: (e) => this.#mayProbe(e),
      probed: (e, outcome, sent) => this.#tx.run(() => verdicts.probed(e, outcome, sent)),
      settled: () => this.#tx.run(() => this.#roundSettled()),
      viewed: (result, startedAt) => this.#tx.run(() => verdicts.viewed(result, startedAt)),
    }, (e) => this.health(e).era, options.haManager, shared)
  }

  /** Reads the state store (bounded), then starts the first discovery with its record as a hint. */
  async start(): Promise<void> {
    const record = await this.sync.load()
    this.#tx.run(() => {
      if (this.#state.kind !== 'booting') return
      if (record) this.cluster.learnFromStore(record)
      this.#state = { kind: 'discovering', loss: null, suspect: null, refusal: null }
      // The stored primary is tried first: nobody else wins before it has answered.
      this.#evidence.mustHear = this.endpoints.find((e) => e.name === record?.primary) ?? null
      this.effect(() => this.sync.watch((r) => this.storedElsewhere(r)))
      this.effect(() => this.#fleet?.start(this, this.endpoints))
      this.startRound(record ? `start (state store says ${record.primary}, epoch ${record.epoch})` : 'start')
    })
  }

  get state(): WriterState {
    return this.#state
  }
  /** @internal Only transitions (the elector's, inside {@link transition}) assign it from outside. */
  set state(next: WriterState) {
    this.#state = next
  }
  /** The HA manager asked for a second opinion, if any. */
  get haManager(): HaManager | null {
    return this.#opts.haManager
  }
  /** The HA manager's last answer (null without one or before it answered). */
  get haReport(): HaReport | null {
    return this.#evidence.ha
  }
  /** The last record the state store held. */
  get storedRecord(): StateRecord | null {
    return this.sync.record
  }
  get generation(): number {
    return this.#generation
  }
  /** The latest election's outcome in words. */
  get lastElection(): string {
    return this.#elector.lastElection
  }
  /** True while a discovery round is probing. */
  get discovering(): boolean {
    return this.#discovery.running
  }
  /** Requests waiting for a primary. */
  get waiting(): number {
    return this.#waiters.size
  }
  health(endpoint: Endpoint): EndpointHealth {
    return this.#health.get(endpoint)!
  }
  /** The role `status()` shows for an endpoint. */
  roleOf(endpoint: Endpoint): ReturnType<typeof endpointRole> {
    return endpointRole(endpoint, this.health(endpoint), endpoint === shownPrimary(this.#state))
  }

  /** Runs `change` as a transition (see {@link Transitions.run}). */
  transition(change: () => void): void {
    this.#tx.run(change)
  }

  /** Queues an effect of the current transition. */
  effect(fn: () => void): void {
    this.#tx.effect(fn)
  }

  /** Announces an event to the application after the transition (see {@link Transitions.announce}). */
  announce(event: string, payload: () => unknown): void {
    this.#tx.announce(event, payload)
  }

  // ------------------------------------------------------------------ what requests ask and report

  /** The verified primary's shared target, or null: the synchronous hot path of every write. */
  readyWriteTarget(): Target | null {
    const s = this.#state
    return s.kind === 'verified' ? s.target : null
  }

  /** True while `target` is the current generation's primary target (or its read lane's twin). */
  isCurrentPrimary(target: Target): boolean {
    const s = this.#state
    return s.kind === 'verified' && s.target.generation === target.generation
  }

  /**
   * Calls back with the primary's target now, when one is verified, or with why there will be none.
   * `retryOf`: a retry after an attempt failed there waits while that primary is in doubt.
   */
  whenPrimary(since: number, callback: (err: Error | undefined, target?: Target) => void, retryOf: Target | null = null): void {
    const s = this.#state
    if (s.kind === 'verified' && !(retryOf !== null && retryOf.endpoint === s.primary && this.health(s.primary).doubt !== null)) return callback(undefined, s.target)
    const clock = this.#opts.clock
    // Every breaker open (and no store read pending): no node can answer before its wait ends; say so now.
    if (s.kind !== 'booting' && s.kind !== 'ended' && s.kind !== 'verified' && this.endpoints.every((e) => this.health(e).breaker.state.kind === 'open')) {
      const report = this.endpoints.map((e) => ({ endpoint: e.name, breaker: this.health(e).breaker.state.kind, lastError: this.#errorText(e) }))
      return callback(new AllEndpointsDownError(report))
    }
    if (this.#opts.failoverTimeoutMs === 0 && s.kind !== 'ended') return this.#failFast(since, callback)
    const remaining = since + this.#opts.failoverTimeoutMs - clock.now()
    if (s.kind !== 'ended' && (remaining <= 0 || this.#waiters.size >= this.#opts.maxQueuedRequests)) {
      const why = remaining <= 0 ? undefined : new Error(`${this.#waiters.size} requests already wait for a primary (maxQueuedRequests)`)
      return callback(new NoPrimaryError(this.answers(), Math.round(clock.now() - since), why ? { cause: why } : undefined))
    }
    this.#waiters.add(callback, Math.max(remaining, 0), () => new NoPrimaryError(this.answers(), Math.round(clock.now() - since)))
    this.#tx.run(() => {
      if (s.kind === 'discovering' && !this.#discovery.running && !this.#discovery.scheduled) this.startRound('a request is waiting for a primary')
    })
  }

  /**
   * Fail-fast mode (`failoverTimeoutMs: 0`, pg.Pool's semantics): no waiting for a failover. Only
   * the first discovery is awaited, within `connectionTimeoutMillis` (else `probeTimeoutMs`); then,
   * or at once when a primary was known before, the caller gets the error the node itself gave.
   */
  #failFast(since: number, callback: (err: Error | undefined, target?: Target) => void): void {
    const s = this.#state
    if (s.kind === 'split-brain') return callback(new SplitBrainError(s.candidates, s.reason))
    const first = !this.#everVerified && (s.kind === 'booting' || this.#evidencePending())
    if (!first) return callback(this.#nodeError())
    const waitMs = (this.#opts.poolConfig.connectionTimeoutMillis || this.#opts.probeTimeoutMs) - (this.#opts.clock.now() - since)
    this.#waiters.add(callback, Math.max(waitMs, 0), () => new Error('Connection terminated due to connection timeout', { cause: this.#nodeError() }))
  }

  #evidencePending(): boolean {
    return this.#evidence.anyPending(this.endpoints, (e) => this.health(e))
  }

  /** The error pg.Pool would have given (see {@link nodeErrorOf}), else NoPrimaryError. */
  #nodeError(): Error {
    return nodeErrorOf(this.endpoints, (e) => this.health(e), lossOf(this.#state)?.from ?? null) ?? new NoPrimaryError(this.answers(), 0)
  }

  /**
   * A request's failure, classified where it happened and reported once. It only raises a doubt:
   * one lost session (a terminated backend, an idle-session timeout) or a 25006 from the caller's
   * own read-only transaction says nothing about the node, so a probe confirms first — writes keep
   * flowing meanwhile, retries wait for the verdict — and only the probe's verdict changes anything.
   */
  report({ target, error, errorClass, era }: FailureReport): void {
    if (this.#state.kind === 'ended') return
    if (errorClass !== 'connection' && errorClass !== 'read-only') return
    const endpoint = target.endpoint
    const reason =
      errorClass === 'read-only'
        ? `${endpoint.name} answered 25006 read_only_sql_transaction`
        : `connection failure on ${endpoint.name}: ${maskPassword(error.message)}`
    this.#tx.run(() => this.#doubt(endpoint, reason, era))
  }

  /** An idle client's error (no request saw it): a doubt when it is connection-class. */
  idleError(endpoint: Endpoint, error: Error): void {
    if (this.#state.kind === 'ended' || classifyError(error) !== 'connection') return
    this.#tx.run(() => this.#doubt(endpoint, `idle connection to ${endpoint.name} failed: ${maskPassword(error.message)}`, this.health(endpoint).era))
  }

  #doubt(endpoint: Endpoint, reason: string, era: number): void {
    if (!this.health(endpoint).doubted(reason, era)) return
    topologyLog('%s in doubt: %s', endpoint.name, reason)
    this.confirm(endpoint)
    this.effect(() => this.#fleet?.doubtedLocally(endpoint))
  }

  // ------------------------------------------------------------------ a fleet's shared monitoring

  /** This instance's part in shared monitoring, or null when the pool monitors on its own (`monitor: 'local'`). */
  get fleetRole(): FleetRole | null {
    return this.#fleet?.role ?? null
  }

  /** True once this pool verified a primary. */
  get everVerified(): boolean {
    return this.#everVerified
  }

  /** True while a primary is verified and in no doubt. */
  get calm(): boolean {
    const s = this.#state
    return s.kind === 'verified' && this.health(s.primary).doubt === null
  }

  /**
   * The fleet's leader published a probe outcome: weighed like one of ours, in the era it began —
   * except that the leader failing to reach the node we write to only raises a doubt, which our own
   * probe confirms: a leader cut off from the primary must not take the whole fleet off it.
   */
  observedElsewhere(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void {
    if (this.#state.kind === 'ended' || this.#state.kind === 'booting') return
    if (outcome.kind === 'failed' && writingTo(this.#state) === endpoint) {
      const reason = `the shared monitor's leader could not reach ${endpoint.name}: ${maskPassword(outcome.error.message)}`
      this.#tx.run(() => this.#doubt(endpoint, reason, this.health(endpoint).eraAt(startedAt)))
      return
    }
    this.#tx.run(() => this.#verdicts.probed(endpoint, outcome, { startedAt, era: this.health(endpoint).eraAt(startedAt), skipped: false }))
  }

  /** A follower saw `endpoint` fail: the leader confirms it with a probe of its own. */
  confirmForFleet(endpoint: Endpoint): void {
    if (this.#state.kind === 'ended') return
    this.#tx.run(() => this.confirm(endpoint))
  }

  /**
   * This instance's part in the fleet changed: a follower watches nothing and holds no monitor
   * session; a leader watches every standby continuously; alone, the pool monitors as configured.
   * Leading or alone, a round probes every node now (and arms the watches it needs).
   */
  fleetRoleChanged(role: FleetRole): void {
    if (this.#state.kind === 'ended') return
    this.#tx.run(() => {
      this.#watches.setFleetRole(role === 'alone' ? null : role)
      this.effect(() => {
        for (const e of this.endpoints) e.holdMonitorSession(role !== 'follower')
      })
      if (role !== 'follower' && this.#state.kind !== 'booting') this.startRound(`shared monitor: ${role}`)
    })
  }

  /** Probes `endpoint` now, outside any round (after the transition), for a verdict of its current era. */
  confirm(endpoint: Endpoint): void {
    const freshSince = this.#opts.clock.now()
    this.effect(() => this.#discovery.confirm(endpoint, freshSince))
  }

  /**
   * A standby's promotion was noticed: stop writing to the old primary at once and verify the new
   * one first. `noticedAt` (clock ms): when a fleet's leader noticed it — its probes since then are
   * current here too, so a follower takes them instead of probing on its own.
   */
  promotionNoticed(endpoint: Endpoint, noticedAt?: number): void {
    if (this.#state.kind === 'ended') return
    this.#tx.run(() => {
      const now = this.#opts.clock.now()
      const since = Math.max(this.#evidence.changedAt, Math.min(now, noticedAt ?? now))
      const reason = `promotion of ${endpoint.name} noticed`
      topologyLog(reason)
      this.health(endpoint).promotionNoticed()
      this.#evidence.mustHear = endpoint
      const old = writingTo(this.#state)
      // The cluster has moved on: anything still running on the old primary may be lost, so cut it.
      if (old !== null && old !== endpoint) this.leave(old, reason)
      this.#evidence.invalidate(since)
      if (since < now) for (const e of [endpoint, old]) if (e !== null) this.health(e).backdateEra(since)
      this.startRound(reason)
    })
  }

  /** Another instance recorded a decision in the shared store: follow it if it is newer, after verifying. */
  storedElsewhere(record: StateRecord): void {
    this.#tx.run(() => {
      const s = this.#state
      if (s.kind === 'ended' || s.kind === 'booting' || record.epoch < this.cluster.epoch) return
      if (record.primary === shownPrimary(s)?.name) {
        this.cluster.epoch = Math.max(this.cluster.epoch, record.epoch)
        return
      }
      topologyLog('state store: %s chosen elsewhere (epoch %d)', record.primary, record.epoch)
      this.cluster.learnFromStore(record)
      if (s.kind === 'verified') this.#suspect(s.primary, `state store: ${record.primary} chosen by another instance (epoch ${record.epoch})`)
      else this.startRound('state store changed')
    })
  }

  // ------------------------------------------------------------------ transitions

  /** After every transition's effects: waiting requests are settled, and the watches told how urgent a promotion notice is. */
  #afterTransition(): void {
    const s = this.#state
    // No verified primary, or one in doubt: a standby's promotion is likely now, so watch for it continuously.
    this.#watches.setUrgent(s.kind !== 'ended' && (s.kind !== 'verified' || this.health(s.primary).doubt !== null))
    this.#settle()
  }

  /**
   * Settles waiting requests from the current state — the one place that does (besides each
   * request's own deadline).
   */
  #settle(): void {
    if (this.#waiters.size === 0) return
    const s = this.#state
    if (s.kind === 'verified') {
      if (this.health(s.primary).doubt === null) this.#waiters.settleAll(undefined, s.target)
    } else if (s.kind === 'split-brain') this.#waiters.settleAll(new SplitBrainError(s.candidates, s.reason))
    else if (s.kind === 'discovering' && s.refusal !== null) this.#waiters.settleAll(s.refusal)
    // Fail-fast: the first discovery has answered everywhere without a primary; nobody waits longer.
    else if (this.#opts.failoverTimeoutMs === 0 && s.kind === 'discovering' && (this.#everVerified || !this.#evidencePending())) this.#waiters.settleAll(this.#nodeError())
    else if (s.kind === 'ended') this.#waiters.settleAll(new Error('Cannot use a pool after calling end on the pool'))
  }

  /**
   * Stop writing to the primary (new requests wait), give it fresh pools, and verify it again.
   * Statements still running there go on: if it verifies, nothing was lost.
   */
  #suspect(primary: Endpoint, reason: string): void {
    topologyLog('primary %s suspect: %s', primary.name, reason)
    this.#generation++
    const now = this.#opts.clock.now()
    this.#evidence.invalidate(now)
    this.#state = { kind: 'discovering', loss: { from: primary.name, reason, since: now }, suspect: primary, refusal: null }
    this.effect(() => primary.refreshPools())
    this.startRound(reason)
  }

  /**
   * The pool leaves a node it wrote to: the writer state moves on first (no request can be routed
   * there any more), then everything still running there is cut (its outcome is unknown), so a
   * node the pool has left can never acknowledge a write afterwards. A node that said it takes no
   * writes is alive and its running statements are failing on their own (25006, then retried on the
   * new primary): they get up to `probeTimeoutMs` to answer before the cut.
   */
  leave(endpoint: Endpoint, reason: string): void {
    this.#tx.run(() => {
      topologyLog('leaving %s: %s', endpoint.name, reason)
      const s = this.#state
      const now = this.#opts.clock.now()
      if (s.kind === 'verified' && s.primary === endpoint) {
        this.#generation++
        this.#evidence.invalidate(now)
        this.#state = { kind: 'discovering', loss: { from: endpoint.name, reason, since: now }, suspect: null, refusal: null }
      } else if (s.kind === 'discovering' && s.suspect === endpoint) {
        this.#state = { ...s, suspect: null }
      } else if (s.kind === 'paused' && s.primary === endpoint) {
        this.#state = { ...s, primary: null, loss: s.loss ?? { from: endpoint.name, reason, since: now } }
      }
      const health = this.health(endpoint)
      const graceMs = health.saidReadOnly ? this.#opts.probeTimeoutMs : 0
      health.left()
      this.effect(() => endpoint.leave(graceMs))
    })
  }

  /** Makes `next` the primary: a new generation and target, the epoch, the failover event, the store, the waiters. */
  adopt(next: Endpoint, from: string | null, loss: Loss | null, paused = false): void {
    this.#tx.run(() => {
      this.#generation++
      this.#everVerified = true
      this.#evidence.mustHear = null
      const health = this.health(next)
      health.fenced = false
      // Verified writable just now (switchTo verifies with its own probe, not through the verdicts).
      health.saidReadOnly = false
      const target: Target = { endpoint: next, lane: next.write, generation: this.#generation, role: 'primary', caughtUp: true }
      this.#state = paused ? { kind: 'paused', primary: next, loss: null } : { kind: 'verified', primary: next, target }
      const changed = from !== null && from !== next.name
      const epoch = this.cluster.adopt(next.name, changed, this.sync.record)
      const now = this.#opts.clock.now()
      // The fast cadence of discovery ends here; the health check is scheduled when the round settles.
      this.effect(() => {
        this.#discovery.cancelSchedule()
        if (!this.#discovery.running) this.#roundSettled()
        this.#watches.stop(next)
      })
      if (changed) {
        const event: FailoverEvent = {
          from,
          to: next.name,
          reason: loss?.reason ?? `promotion of ${next.name}`,
          durationMs: Math.round(loss ? now - loss.since : 0),
          epoch,
        }
        topologyLog('failover %s -> %s (%s) in %d ms', event.from, event.to, event.reason, event.durationMs)
        this.announce('failover', () => event)
      } else {
        topologyLog('primary %s verified (epoch %d)', next.name, epoch)
      }
      const { systemId, minTimeline } = this.cluster
      const why = changed ? `failover from ${from}: ${loss?.reason ?? 'promotion'}` : 'primary verified'
      this.#decisionReason = why
      this.#lastHealAt = now // saved now; the next check that the store still holds it is due later
      this.effect(() => this.sync.persist({ primary: next.name, systemId, timeline: minTimeline, epoch, reason: why }, (r) => this.storedElsewhere(r)))
    })
  }

  /**
   * Replaces the writer state (maintenance operations). Entering `discovering` starts a round whose
   * probes must all be newer than this change.
   */
  replaceState(next: WriterState, reason: string): void {
    this.#tx.run(() => {
      this.#state = next
      if (next.kind !== 'discovering') return
      this.#evidence.invalidate(this.#opts.clock.now())
      this.startRound(reason)
    })
  }

  /** Registers how to abort the promotion hook running now (null when it finished). */
  hookRunning(abort: (() => void) | null): void {
    this.#abortHook = abort
  }

  /**
   * Stops every timer and watch, aborts a promotion hook still running (its client is cut), fails
   * whatever still waits, and closes the endpoints (clients still connecting are cut) and the store.
   */
  async end(): Promise<void> {
    this.#tx.run(() => {
      this.#state = { kind: 'ended' }
      this.effect(() => {
        this.#discovery.stop()
        this.#watches.stopAll()
        this.#abortHook?.()
      })
    })
    await Promise.all([...this.endpoints.map((e) => e.end()), this.sync.close(), this.#fleet?.stop()])
  }

  // ------------------------------------------------------------------ discovery: evidence and elections

  /** Starts a discovery round (after the transition); probes sent before the last topology event are sent again. */
  startRound(reason: string): void {
    this.effect(() => {
      if (this.#state.kind === 'ended') return
      this.#discovery.start(reason, this.#evidence.changedAt)
      topologyLog('discovery: %s', reason)
      this.scheduleNext()
    })
  }

  /** While no primary is verified, a round every `discoveryIntervalMs` whether or not the last one settled. */
  scheduleNext(): void {
    this.effect(() => {
      const s = this.#state
      if (s.kind === 'verified' || s.kind === 'ended' || s.kind === 'booting') return
      this.#discovery.schedule(jitter(this.#opts.discoveryIntervalMs, 0.2, randomOf(this.#opts.clock)), 'no primary yet: probing again', () => this.#evidence.changedAt, () =>
        this.#tx.run(() => this.scheduleNext()),
      )
    })
  }

  #roundSettled(): void {
    const s = this.#state
    if (s.kind === 'ended') return
    // The health monitor: rounds while a primary is known never overlap.
    const known = s.kind === 'verified'
    // A store that lost our decision (a Redis restart, a deleted file) gets it back.
    const now = this.#opts.clock.now()
    if (s.kind === 'verified' && now - this.#lastHealAt >= STATE_HEAL_INTERVAL_MS && this.cluster.epochPrimary === s.primary.name) {
      this.#lastHealAt = now
      const { systemId, minTimeline, epoch } = this.cluster
      const decision = { primary: s.primary.name, systemId, timeline: minTimeline, epoch, reason: this.#decisionReason }
      this.effect(() => this.sync.heal(decision, (r) => this.storedElsewhere(r)))
    }
    if (!known) return this.scheduleNext()
    this.#discovery.schedule(jitter(this.#opts.healthCheckIntervalMs, 0.2, randomOf(this.#opts.clock)), 'health check', () => this.#evidence.changedAt)
  }

  /**
   * Breakers protect user traffic, never discovery: while no primary is verified every endpoint is
   * probed. Otherwise an open breaker skips the endpoint and a half-open one lets one trial probe
   * through (released by whatever ends that probe).
   */
  #mayProbe(endpoint: Endpoint): boolean {
    const health = this.health(endpoint)
    this.announceBreaker(endpoint, health.breaker.refresh(), 'open wait over: one trial probe')
    if (this.#state.kind !== 'verified') return true
    return health.breaker.tryTrial()
  }

  /** Announces what a health change means: endpointDown/Up, breakerStateChange. */
  announceHealth(endpoint: Endpoint, news: HealthNews, reason: string): void {
    if (news.reachability === 'down') this.announceEndpoint('endpointDown', endpoint, 'up', 'down', reason)
    if (news.reachability === 'up') this.announceEndpoint('endpointUp', endpoint, 'down', 'up', reason)
    this.announceBreaker(endpoint, news.breaker, reason)
  }

  announceBreaker(endpoint: Endpoint, transition: { from: string; to: string } | null, reason: string): void {
    if (transition) this.announceEndpoint('breakerStateChange', endpoint, transition.from, transition.to, reason)
  }

  /** Announces a per-endpoint event with a password-free reason. */
  announceEndpoint(event: 'endpointDown' | 'endpointUp' | 'roleChange' | 'breakerStateChange', endpoint: Endpoint, from: string, to: string, reason: string): void {
    const masked = maskPassword(reason)
    topologyLog('%s %s: %s -> %s (%s)', event, endpoint.name, from, to, masked)
    this.announce(event, () => ({ endpoint: endpoint.name, from, to, reason: masked, at: new Date().toISOString() }))
  }

  /** Cuts or refreshes a replica that stopped answering (a timeout: what hangs there is cut). */
  replicaDown(endpoint: Endpoint, error: Error): void {
    const stalled = isTimeout(error)
    this.effect(() => (stalled ? endpoint.cutStalled() : endpoint.refreshPools()))
  }

  /** What each endpoint last answered, for NoPrimaryError. */
  answers(): EndpointAnswer[] {
    return this.#evidence.answers(this.endpoints, (e) => this.health(e))
  }

  #errorText(e: Endpoint): string | null {
    const error = this.health(e).lastError
    return error ? maskPassword(error.message) : null
  }
}
