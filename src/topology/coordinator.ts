import type { Endpoint } from '../endpoint/endpoint.js'
import type { ProbeResult } from '../endpoint/role-probe.js'
import { isTimeout } from '../error-policy.js'
import type { EndpointAnswer } from '../errors.js'
import type { EventSink } from '../events.js'
import type { FleetMonitor, FleetRole } from '../health/fleet-monitor.js'
import { type WatchFactory, Watches } from '../health/watches.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import { StateSync } from '../state/state-sync.js'
import type { StateRecord } from '../state/state-store.js'
import type { HaManager } from '../ha/ha-manager.js'
import { ClusterKnowledge } from './cluster-knowledge.js'
import { type ElectionHost, Elector } from './elector.js'
import { type EndpointHealth, endpointRole } from './endpoint-health.js'
import { MemberSet, type RemovedPrimaryProbe } from './member-set.js'
import { Evidence, type HaReport } from './evidence.js'
import { ProbeVerdicts, type VerdictHost } from './probe-verdicts.js'
import { DecisionRecord } from './decision-record.js'
import { EndpointEvents } from './endpoint-events.js'
import { RoundSchedule } from './round-schedule.js'
import { Transitions } from './transitions.js'
import { type GateHost, PrimaryGate } from './primary-gate.js'
import { FleetBridge, type FleetBridgeHost } from './fleet-bridge.js'
import { type Loss, type WriterState, lossOf, shownPrimary, writingTo } from './writer-state.js'
import { WriterMachine } from './writer-machine.js'

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
 * The only place topology changes. It composes the writer's state and its transitions
 * ({@link WriterMachine}), each endpoint's {@link EndpointHealth} ({@link MemberSet}), the requests
 * waiting for a primary and the evidence of the latest probes, and takes the signals from outside
 * the probes (a promotion noticed, the state store, a membership change). Requests, probes and
 * watches report outcomes here; this class alone decides, one decision at a time (JavaScript's
 * single thread is the lock: every decision is synchronous).
 *
 * Every change is a transition ({@link Transitions}): it assigns the complete new state first —
 * generation, writer state, health — and queues its effects, which run after, in order; waiting
 * requests are settled from the state by one function once the effects ran, and everything that
 * reaches user code (events, request callbacks) is deferred beyond that.
 */
export class Coordinator implements ElectionHost, VerdictHost, GateHost, FleetBridgeHost {
  /** The endpoints and each one's health. */
  readonly #members: MemberSet
  /** Where writes go, and the transitions that move it. */
  readonly #writer: WriterMachine
  readonly #evidence = new Evidence()
  readonly #elector: Elector
  /** Where requests ask for the primary and report failures (see {@link PrimaryGate}). */
  readonly requests: PrimaryGate
  /** @internal What each probe outcome means (the round schedule hands outcomes to it). */
  readonly verdicts: ProbeVerdicts
  readonly #rounds: RoundSchedule
  readonly #watches: Watches
  readonly #opts: ResolvedOptions
  readonly #tx: Transitions
  readonly #fleet: FleetBridge | null
  /** Aborts the promotion hook running now, if any (end() calls it). */
  #abortHook: (() => void) | null = null
  readonly #record: DecisionRecord
  /** Announces endpointDown/Up, roleChange, breakerStateChange. */
  readonly events: EndpointEvents
  /** System identifier, minimum timeline, epoch, failovers, stored hint. */
  readonly cluster: ClusterKnowledge
  readonly sync: StateSync

  constructor(deps: CoordinatorDeps) {
    const { endpoints, options, events } = deps
    this.#members = new MemberSet(endpoints, options.breaker, options.clock)
    this.#opts = options
    this.#tx = new Transitions(events, () => this.#afterTransition())
    this.cluster = new ClusterKnowledge(options.topology, () => this.verdicts.timelineRaised())
    this.sync = new StateSync(options.stateStore, options.clock, options.stateStoreTimeoutMs, (event, payload) => this.#tx.announce(event, payload))
    this.#record = new DecisionRecord(this.sync, this.cluster, options.clock, (r) => this.storedElsewhere(r))
    this.events = new EndpointEvents((event, payload) => this.#tx.announce(event, payload))
    this.requests = new PrimaryGate(this, options)
    const noticed = (e: Endpoint, row?: ProbeResult): void => {
      this.#fleet?.monitor.promotionNoticedLocally(e)
      this.promotionNoticed(e, undefined, row)
    }
    this.#watches = new Watches(deps.watches, noticed, options.promotionWatch === 'always')
    this.#writer = new WriterMachine({
      tx: this.#tx,
      evidence: this.#evidence,
      members: this.#members,
      cluster: this.cluster,
      record: this.#record,
      sync: this.sync,
      options,
      startRound: (reason) => this.startRound(reason),
      adopted: (primary) => {
        this.#rounds.adopted()
        this.effect(() => this.#watches.stop(primary))
      },
    })
    this.#elector = new Elector(this, this.#evidence, options)
    const verdicts = new ProbeVerdicts(this, this.#evidence, this.#watches, this.#elector, options.warmStandbys)
    this.#fleet = deps.fleet ? new FleetBridge(this, verdicts, this.#watches, deps.fleet) : null
    const shared = this.#fleet?.probeSource ?? null
    this.verdicts = verdicts
    this.#rounds = new RoundSchedule(this, this.#evidence, options, shared)
  }

  /** Reads the state store (bounded), then starts the first discovery with its record as a hint. */
  async start(): Promise<void> {
    const record = await this.sync.load()
    this.#tx.run(() => {
      if (this.state.kind !== 'booting') return
      if (record) this.cluster.learnFromStore(record)
      this.state = { kind: 'discovering', loss: null, suspect: null, refusal: null }
      // The stored primary is tried first: nobody else wins before it has answered.
      this.#evidence.mustHear = this.endpoints.find((e) => e.name === record?.primary) ?? null
      this.effect(() => this.sync.watch((r) => this.storedElsewhere(r)))
      this.effect(() => this.#fleet?.monitor.start(this.#fleet, this.endpoints))
      this.startRound(record ? `start (state store says ${record.primary}, epoch ${record.epoch})` : 'start')
    })
  }

  /** The pool's endpoints now (a new array after each membership change). */
  get endpoints(): readonly Endpoint[] {
    return this.#members.list
  }

  /** True while `endpoint` is one of the pool's endpoints: what a removed one reports late moves nothing. */
  isMember(endpoint: Endpoint): boolean {
    return this.#members.includes(endpoint)
  }

  /**
   * A membership change (inside one transition): `next` becomes the endpoint list. An added
   * endpoint gets its health record and is probed at once; it takes no traffic before a probe says
   * what it is. A removed one leaves routing at once (no new checkout), is no longer probed, watched
   * or shown, and is returned for the caller to retire. The node writes go to, or one being adopted,
   * is never removed here: the caller switches writes over first.
   * @throws Error when `next` would remove that node (a caller's bug).
   */
  changeMembership(next: readonly Endpoint[], reason: string, source = reason): Endpoint[] {
    const s = this.state
    const writer = writingTo(s) ?? (s.kind === 'adopting' ? s.candidate : null)
    const removed = this.#members.removedBy(next)
    if (writer !== null && removed.includes(writer)) throw new Error(`cannot remove ${writer.name}: writes go there (switch over first)`)
    this.#tx.run(() => {
      const { added, removed } = this.#members.replace(next, lossOf(this.state)?.from ?? null)
      topologyLog('endpoints: %s (%s)', next.map((e) => e.name).join(', '), reason)
      const now = this.state
      if (now.kind === 'discovering' && now.suspect !== null && removed.includes(now.suspect)) this.state = { ...now, suspect: null }
      if (now.kind === 'paused' && now.primary !== null && removed.includes(now.primary)) this.state = { ...now, primary: null }
      this.#evidence.forget(removed)
      this.announce('endpointsChanged', () => ({ endpoints: next.map((e) => e.name), added: added.map((e) => e.name), removed: removed.map((e) => e.name), source, at: new Date().toISOString() }))
      const follower = this.#fleet?.monitor.role === 'follower'
      this.effect(() => {
        for (const e of removed) this.#watches.forget(e)
        this.#fleet?.monitor.setEndpoints(this.endpoints)
        // A fleet's follower holds no monitor session, on a node that just joined either.
        if (follower) for (const e of added) e.holdMonitorSession(false)
      })
      this.startRound(reason)
    })
    return removed
  }

  /** Where writes go now. */
  get state(): WriterState {
    return this.#writer.state
  }

  /** The last probe of the lost primary, kept when it was removed (see {@link MemberSet.lostPrimaryProbe}). */
  get lostPrimaryProbe(): RemovedPrimaryProbe | null {
    return this.#members.lostPrimaryProbe
  }
  /** @internal Only transitions (the elector's, inside {@link transition}) assign it from outside. */
  set state(next: WriterState) {
    this.#writer.state = next
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
  /** Bumped on every change of where writes go (see {@link WriterMachine.generation}). */
  get generation(): number {
    return this.#writer.generation
  }
  /** The latest election's outcome in words. */
  get lastElection(): string {
    return this.#elector.lastElection
  }
  /** True while a discovery round is probing. */
  get discovering(): boolean {
    return this.#rounds.running
  }
  /** Requests waiting for a primary. */
  get waiting(): number {
    return this.requests.size
  }
  health(endpoint: Endpoint): EndpointHealth {
    return this.#members.health(endpoint)
  }
  /** The role `status()` shows for an endpoint. */
  roleOf(endpoint: Endpoint): ReturnType<typeof endpointRole> {
    return endpointRole(endpoint, this.health(endpoint), endpoint === shownPrimary(this.state))
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

  /** @internal The discovery rounds, for the gate: a waiting request's round, fail-fast's fresh look. */
  get rounds(): RoundSchedule {
    return this.#rounds
  }

  /** @internal True while some endpoint has not answered since the last topology change. */
  evidencePending(): boolean {
    return this.#evidence.anyPending(this.endpoints, (e) => this.health(e))
  }

  /** A failure seen of `endpoint` in era `era` (inside a transition): a doubt that a probe of our own confirms. */
  raiseDoubt(endpoint: Endpoint, reason: string, era: number): void {
    if (!this.isMember(endpoint) || !this.health(endpoint).doubted(reason, era)) return
    topologyLog('%s in doubt: %s', endpoint.name, reason)
    this.confirm(endpoint)
    this.effect(() => this.#fleet?.monitor.doubtedLocally(endpoint))
  }

  // ------------------------------------------------------------------ a fleet's shared monitoring

  /** This instance's part in shared monitoring, or null when the pool monitors on its own (`monitor: 'local'`). */
  get fleetRole(): FleetRole | null {
    return this.#fleet?.monitor.role ?? null
  }

  /** True once this pool verified a primary. */
  get everVerified(): boolean {
    return this.#writer.everVerified
  }

  /** Probes `endpoint` now, outside any round (after the transition), for a verdict of its current era. */
  confirm(endpoint: Endpoint): void {
    this.#rounds.confirm(endpoint)
  }

  /**
   * A standby's promotion was noticed: stop writing to the old primary at once and verify the new
   * one first. `noticedAt` (clock ms): when a fleet's leader noticed it — its probes since then are
   * current here too, so a follower takes them instead of probing on its own. `row`: what the watch
   * read that showed the node out of recovery.
   */
  promotionNoticed(endpoint: Endpoint, noticedAt?: number, row?: ProbeResult): void {
    if (this.state.kind === 'ended') return
    this.#tx.run(() => {
      const now = this.#opts.clock.now()
      const since = Math.max(this.#evidence.changedAt, Math.min(now, noticedAt ?? now))
      const reason = `promotion of ${endpoint.name} noticed`
      topologyLog(reason)
      this.health(endpoint).promotionNoticed()
      this.#evidence.mustHear = endpoint
      const old = writingTo(this.state)
      // The cluster has moved on: anything still running on the old primary may be lost, so cut it.
      if (old !== null && old !== endpoint) this.leave(old, reason)
      this.#evidence.invalidate(since)
      if (since < now) for (const e of [endpoint, old]) if (e !== null) this.health(e).backdateEra(since)
      this.startRound(reason)
      // The row that showed the promotion is this node's probe as of now: a node out of recovery
      // stays so while it runs (a restart would have broken the session that read it), so the
      // election need not wait a round trip for the round's probe of it to say the same.
      if (row !== undefined && !row.inRecovery) this.verdicts.probed(endpoint, { kind: 'ok', probe: row }, { startedAt: now, era: this.health(endpoint).era, skipped: false })
    })
  }

  /** Another instance recorded a decision in the shared store: follow it if it is newer, after verifying. */
  storedElsewhere(record: StateRecord): void {
    this.#tx.run(() => {
      const s = this.state
      if (s.kind === 'ended' || s.kind === 'booting' || record.epoch < this.cluster.epoch) return
      if (record.primary === shownPrimary(s)?.name) {
        this.cluster.epoch = Math.max(this.cluster.epoch, record.epoch)
        return
      }
      topologyLog('state store: %s chosen elsewhere (epoch %d)', record.primary, record.epoch)
      this.cluster.learnFromStore(record)
      if (s.kind === 'verified') this.#writer.suspect(s.primary, `state store: ${record.primary} chosen by another instance (epoch ${record.epoch})`)
      else this.startRound('state store changed')
    })
  }

  // ------------------------------------------------------------------ transitions

  /** After every transition's effects: the health checks kept scheduled, waiting requests settled, and the watches told how urgent a promotion notice is. */
  #afterTransition(): void {
    const s = this.state
    // No verified primary, or one in doubt: a standby's promotion is likely now, so watch for it continuously.
    this.#watches.setUrgent(s.kind !== 'ended' && (s.kind !== 'verified' || this.health(s.primary).doubt !== null))
    this.#rounds.keepChecking()
    this.requests.settle()
  }

  /** The pool leaves a node it wrote to: writes move on first, then what runs there is cut (see {@link WriterMachine.leave}). */
  leave(endpoint: Endpoint, reason: string): void {
    this.#writer.leave(endpoint, reason)
  }

  /** Makes `next` the primary (see {@link WriterMachine.adopt}). */
  adopt(next: Endpoint, from: string | null, loss: Loss | null, paused = false): void {
    this.#writer.adopt(next, from, loss, paused)
  }

  /** Replaces the writer state (maintenance; see {@link WriterMachine.replace}). */
  replaceState(next: WriterState, reason: string): void {
    this.#writer.replace(next, reason)
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
      this.state = { kind: 'ended' }
      this.effect(() => {
        this.#rounds.stop()
        this.#watches.stopAll()
        this.#abortHook?.()
      })
    })
    await Promise.all([...this.endpoints.map((e) => e.end()), this.sync.close(), this.#fleet?.monitor.stop()])
  }

  // ------------------------------------------------------------------ discovery: evidence and elections

  /** Starts a discovery round (after the transition; see {@link RoundSchedule.start}). */
  startRound(reason: string): void {
    this.#rounds.start(reason)
  }

  /** While no primary is verified, a round every `discoveryIntervalMs` (see {@link RoundSchedule.scheduleNext}). */
  scheduleNext(): void {
    this.#rounds.scheduleNext()
  }

  /** @internal A round settled: a store that lost our decision (a Redis restart, a deleted file) gets it back. */
  roundSettled(primary: Endpoint | null): void {
    if (primary !== null) this.#record.healIfDue(primary.name, (fn) => this.effect(fn))
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
}
