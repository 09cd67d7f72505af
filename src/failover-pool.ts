import type { TimerHandle } from './clock.js'
import { jitter } from './clock.js'
import { currentConsistency, runWithConsistency, tokenOf } from './surface/consistency.js'
import { Endpoint, type LaneKind, parseLsn } from './endpoint/endpoint.js'
import { classifyError } from './error-policy.js'
import { type EndpointAnswer, NoPrimaryError, NoReplicaError, maskPassword } from './errors.js'
import type { LaneEvents } from './endpoint/lane.js'
import type { PoolClient } from 'pg'
import { LaneRetiredError } from './endpoint/lane.js'
import { topologyLog } from './log.js'
import { type FailoverPoolOptions, type ResolvedOptions, resolveOptions } from './options.js'
import { type Intent, PoolSurface, type ReadRequest, type RoutingHost, type Target } from './surface/pool-surface.js'
import { PromotionWatch } from './health/promotion-watch.js'
import { roleOf } from './endpoint/role-probe.js'
import { RoutedPool } from './surface/routed-pool.js'
import { type ReplicaView, type RouterCursor, chooseReplica } from './routing/router.js'
import { type EndpointRole, type FailoverPoolStatus, buildStatus } from './observe/status.js'
import type { FailoverEvent, FailoverPoolEvents, PgPoolEvents } from './events.js'
import { AllEndpointsDownError } from './errors.js'
import type { BreakerTransition } from './endpoint/breaker.js'
import { RetryBudget } from './surface/retry-budget.js'
import { PrimaryQueue } from './topology/waiters.js'
import { type Candidate as ElectionCandidate, electLogical } from './topology/election.js'
import { StateKeeper } from './state/state-keeper.js'
import type { StateRecord, StateStoreError } from './state/state-store.js'
import { ConfigError, SplitBrainError, SwitchoverRefusedError } from './errors.js'
import { type PromotionContext, runPromoteHook } from './topology/promotion-hook.js'
import { type Candidate, type Election, type ProbeOutcome, elect } from './topology/election.js'

// Typed listeners for our own events; pg.Pool's overloads still apply for its events.
export interface FailoverPool {
  on<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  on<E extends keyof PgPoolEvents>(event: E, listener: PgPoolEvents[E]): this
  once<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  once<E extends keyof PgPoolEvents>(event: E, listener: PgPoolEvents[E]): this
  off<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  off(event: string | symbol, listener: (...args: any[]) => void): this
}

type PrimaryCallback = (err: Error | undefined, endpoint?: Endpoint, generation?: number) => void

/**
 * A drop-in `pg.Pool` over several PostgreSQL endpoints. `query` and `connect` reach the verified
 * primary (or, with `routeReads: 'auto'`, a replica for certainly read-only statements); when the
 * primary fails or is demoted, the pool re-discovers it once for all waiting requests and carries
 * on without a process restart. `pool.reader` and `pool.writer` are pg.Pool-compatible views bound
 * to replicas and to the primary.
 *
 * Events: pg.Pool's `connect`, `acquire`, `release`, `remove`, `error` (same arguments) for the
 * primary's connections, plus `failover` ({@link FailoverEvent}).
 */
export class FailoverPool extends PoolSurface {
  static {
    // Code that checks constructor.name (Drizzle does) must see it even after a consumer's minifier.
    Object.defineProperty(this, 'name', { value: 'FailoverPool' })
  }
  /** @internal */
  protected readonly host: RoutingHost
  /** @internal */
  protected readonly intent: Intent
  readonly #opts: ResolvedOptions
  readonly #endpoints: readonly Endpoint[]
  readonly #watches = new Map<Endpoint, PromotionWatch>()
  readonly #waiters: PrimaryQueue<Endpoint>
  readonly #mismatched = new Set<string>()
  readonly #fenced = new Set<string>()
  /** Standbys whose promotion was noticed: no reads until a probe says what they are now. */
  readonly #promoted = new Set<Endpoint>()
  readonly #cursor: RouterCursor = { next: 0 }
  readonly #retryBudget: RetryBudget
  #reader: RoutedPool | null = null
  #primaryTarget: Target | null = null
  readonly #views = new Map<Endpoint, ReplicaView>()
  readonly #lagCache = new Map<Endpoint, { primary: object; replica: object; lag: bigint }>()
  #writer: RoutedPool | null = null
  #primary: Endpoint | null = null
  /** Bumped whenever a primary is adopted (even the same one again), to ignore stale failure reports. */
  #generation = 0
  #epoch = 0
  #failovers = 0
  #systemId: string | null = null
  #minTimeline: number | null = null
  #discovering = false
  #rediscover: string | null = null
  #discoveryTimer: TimerHandle | null = null
  #trouble: { from: string | null; reason: string; since: number } | null = null
  #lastAnswers: EndpointAnswer[] = []
  #lastElectionReason = 'not probed yet'
  readonly #keeper: StateKeeper
  /** The primary named by the state store (this process's or another's decision), a hint to verify. */
  #storedPrimary: string | null = null
  #unwatchStore: () => void = () => undefined
  /** True until the state store has been read (or failed): the first discovery waits for the hint. */
  #booting = true
  /** Why writes are refused (ambiguous split brain), or null. */
  #ambiguity: { reason: string; candidates: readonly string[] } | null = null
  /** A node whose promotion hook is running; writes wait for it. */
  #adopting: Endpoint | null = null
  /** Nodes whose promotion hook failed under onPromoteFailure 'refuse': never used until switchTo(). */
  readonly #refused = new Set<Endpoint>()
  #paused = false
  readonly #drained = new Set<Endpoint>()

  /**
   * @param options endpoints plus any pg.Pool option; see {@link FailoverPoolOptions}.
   * @throws ConfigError for invalid options (naming the field and value, never a password).
   */
  constructor(options: FailoverPoolOptions) {
    const resolved = resolveOptions(options)
    super(resolved.poolConfig)
    this.#opts = resolved
    this.#retryBudget = new RetryBudget(resolved.retryBudget, resolved.clock)
    this.#waiters = new PrimaryQueue(resolved.clock)
    this.intent = resolved.routeReads === 'auto' ? 'auto' : 'write'
    this.#endpoints = resolved.endpoints.map(
      (e) => new Endpoint(e, resolved.poolConfig, (ep, lane) => this.#laneEvents(ep, lane), resolved.clock, resolved.breaker),
    )
    this.host = this.#makeHost()
    this.#keeper = new StateKeeper(resolved.stateStore, resolved.clock, resolved.stateStoreTimeoutMs)
    void this.#boot()
  }

  /**
   * A pg.Pool-compatible view (`instanceof pg.Pool`, same methods and events) that sends reads to
   * healthy replicas by `readStrategy`, within the lag limits, falling back by `readFallback`. Hand
   * it to a read-only ORM instance or query builder. Its events are those of the read connections.
   */
  get reader(): RoutedPool {
    return (this.#reader ??= new RoutedPool(this.host, 'read', this.#opts.poolConfig))
  }

  /** A pg.Pool-compatible view bound to the verified primary (even with `routeReads: 'auto'`). */
  get writer(): RoutedPool {
    return (this.#writer ??= new RoutedPool(this.host, 'write', this.#opts.poolConfig))
  }

  /**
   * Runs `fn` so that every read it makes (through `reader`, or auto-routed) sees every write it
   * made before, however lagged the replicas: a read goes to a replica that has replayed the
   * caller's last write (waiting up to `readYourWritesTimeoutMs`), else to the primary. Pass the
   * token from {@link consistencyToken} of an earlier request (cookie, header) to carry it across
   * requests.
   * @throws ConfigError for a token this library did not make.
   */
  withReadYourWrites<T>(fn: () => T, token?: string | null): T {
    return runWithConsistency(fn, token)
  }

  /** The current read-your-writes position as an opaque token (null outside a context or before a write). */
  consistencyToken(): string | null {
    return tokenOf(currentConsistency())
  }

  /** Closes every connection and stops every timer (pg.Pool#end's contract is in PoolSurface#end). */
  protected override async shutdown(): Promise<void> {
    if (this.#discoveryTimer !== null) this.#opts.clock.clearTimeout(this.#discoveryTimer)
    this.#discoveryTimer = null
    for (const watch of this.#watches.values()) watch.stop()
    this.#unwatchStore()
    const ended = new Error('Cannot use a pool after calling end on the pool')
    this.#waiters.settleAll(ended)
    await Promise.all([...this.#endpoints.map((e) => e.end()), this.#keeper.close().catch(() => undefined)])
  }

  /** A JSON-serialisable snapshot of the topology: primary, roles, lag, failovers. No passwords. */
  status(): FailoverPoolStatus {
    const replicas = this.#replicaEndpoints()
    return buildStatus({
      primary: this.#primary?.name ?? null,
      mode: this.#primary !== null ? 'read-write' : replicas.length > 0 ? 'read-only' : 'unavailable',
      epoch: this.#epoch,
      failovers: this.#failovers,
      systemId: this.#systemId,
      timeline: this.#minTimeline,
      discovering: this.#discovering,
      lastElection: this.#lastElectionReason,
      topology: this.#opts.topology,
      paused: this.#paused,
      splitBrain: this.#ambiguity?.reason ?? null,
      stateStore: this.#keeper.health,
      endpoints: this.#endpoints.map((e) => ({ endpoint: e, role: this.#roleOf(e), lagBytes: this.#lagBytes(e) })),
    })
  }

  /**
   * Planned switchover or manual failback: verifies `name` (reachable; the cluster's verified
   * primary — out of recovery, writable, same system identifier, timeline not older than the
   * current one; with `topology: 'logical'`, writable), runs `onPromote`, records the decision and
   * moves writes there at once.
   * @throws ConfigError for an unknown name; SwitchoverRefusedError when the target fails verification.
   */
  async switchTo(name: string): Promise<void> {
    const target = this.#endpoints.find((e) => e.name === name)
    if (!target) throw new ConfigError('switchTo(name)', name, `no such endpoint (endpoints: ${this.#endpoints.map((e) => e.name).join(', ')})`)
    let probe
    try {
      probe = await target.probe(this.#opts.probeTimeoutMs)
      target.lastError = null
    } catch (err) {
      throw new SwitchoverRefusedError(name, `unreachable (${maskPassword((err as Error).message)})`, { cause: err })
    }
    const role = roleOf(probe)
    if (role !== 'primary') throw new SwitchoverRefusedError(name, `it is ${role === 'standby' ? 'a standby (promote it first)' : 'read-only'}`)
    if (this.#opts.topology === 'physical') {
      if (this.#systemId !== null && probe.systemId !== this.#systemId) throw new SwitchoverRefusedError(name, 'it belongs to another cluster (system identifier differs)')
      if (this.#minTimeline !== null && probe.timeline !== null && probe.timeline < this.#minTimeline) {
        throw new SwitchoverRefusedError(name, `it is on timeline ${probe.timeline}, older than the current ${this.#minTimeline}: it may lack writes`)
      }
    }
    this.#refused.delete(target)
    if (this.#primary === target) return
    const previous = this.#primary
    const from = previous?.name ?? this.#storedPrimary
    this.#suspendPrimary(`switchTo(${name})`)
    previous?.retire()
    if (this.#opts.onPromote && from !== name) {
      this.#adopting = target
      const ok = await this.#runPromoteHook(target, from)
      this.#adopting = null
      if (!ok) throw new SwitchoverRefusedError(name, 'its promotion hook failed')
    }
    this.#fenced.delete(name)
    if (probe.timeline !== null && this.#opts.topology === 'physical') this.#minTimeline = Math.max(this.#minTimeline ?? 0, probe.timeline)
    this.#adopt(target, from)
  }

  /**
   * Planned maintenance: new writes queue (bounded by `failoverTimeoutMs` and `maxQueuedRequests`)
   * instead of reaching the primary, while the HA tool switches roles. Running statements finish.
   */
  pauseWrites(): void {
    if (this.#paused) return
    this.#paused = true
    topologyLog('writes paused')
  }

  /** Ends a pause: the primary is verified again (it may have changed), then queued writes go. */
  resumeWrites(): void {
    if (!this.#paused) return
    this.#paused = false
    topologyLog('writes resumed')
    if (this.#primary !== null) this.#suspendPrimary('writes resumed: re-verifying the primary')
    this.#startDiscovery('writes resumed')
  }

  /**
   * Takes `name` out of service for maintenance: no new reads go there (and if it is the primary,
   * writes pause), its idle connections close now, and the promise resolves once every client
   * checked out there has been released. Undo with {@link undrain}.
   * @throws ConfigError for an unknown name.
   */
  async drain(name: string): Promise<void> {
    const endpoint = this.#endpoints.find((e) => e.name === name)
    if (!endpoint) throw new ConfigError('drain(name)', name, 'no such endpoint')
    this.#drained.add(endpoint)
    if (endpoint === this.#primary) this.pauseWrites()
    endpoint.retire()
    while (endpoint.write.totalCount + endpoint.read.totalCount > 0) {
      await new Promise<void>((resolve) => {
        const done = (): void => {
          this.off('remove', done)
          this.reader.off('remove', done)
          resolve()
        }
        this.once('remove', done)
        this.reader.once('remove', done)
      })
    }
  }

  /** Puts a drained endpoint back in service (call `resumeWrites()` too if it was the primary). */
  undrain(name: string): void {
    const endpoint = this.#endpoints.find((e) => e.name === name)
    if (!endpoint) throw new ConfigError('undrain(name)', name, 'no such endpoint')
    this.#drained.delete(endpoint)
  }

  // ---------------------------------------------------------------- routing (what surfaces ask for)

  #makeHost(): RoutingHost {
    const pool = this
    return {
      clock: this.#opts.clock,
      readYourWritesTimeoutMs: this.#opts.readYourWritesTimeoutMs,
      get ending() {
        return pool.ending
      },
      target: (kind, since, read, callback) => (kind === 'write' ? this.#writeTarget(since, callback) : this.#readTarget(since, read!, callback)),
      readyWriteTarget: () => {
        const cached = this.#primaryTarget
        return cached !== null && cached.endpoint === this.#primary && cached.generation === this.#generation && !this.#paused ? cached : null
      },
      report: (target, err) => this.#report(target, err),
      lanes: (kind) => this.#endpoints.map((e) => e.lane(kind)),
      primaryOptions: () => (this.#primary ?? this.#endpoints[0]!).options,
      waitingForPrimary: () => this.#waiters.size,
      spendRetry: () => this.#retryBudget.trySpend(),
    }
  }

  #writeTarget(since: number, callback: (err: Error | undefined, target?: Target) => void): void {
    // The hot path: one shared target object per adopted primary, no allocation per statement.
    const cached = this.#primaryTarget
    if (cached !== null && cached.endpoint === this.#primary && cached.generation === this.#generation && !this.#paused) return callback(undefined, cached)
    this.#withPrimary(since, (err, endpoint, generation) => {
      if (err || !endpoint) return callback(err)
      const target: Target = { endpoint, lane: endpoint.write, generation: generation!, role: 'primary', caughtUp: true }
      if (generation === this.#generation) this.#primaryTarget = target
      callback(undefined, target)
    })
  }

  #readTarget(since: number, read: ReadRequest, callback: (err: Error | undefined, target?: Target) => void): void {
    const replicas = this.#replicaEndpoints()
    const choice = chooseReplica(
      replicas.map((e) => this.#replicaView(e)),
      {
        maxLagMs: read.maxStalenessMs ?? this.#opts.maxReplicaLagMs,
        maxLagBytes: this.#opts.maxReplicaLagBytes,
        minLsn: read.minLsn,
        exclude: read.exclude,
      },
      this.#opts.readStrategy,
      this.#cursor,
    )
    if (choice.kind === 'replica') {
      const endpoint = replicas.find((e) => e.name === choice.name)!
      return callback(undefined, { endpoint, lane: endpoint.read, generation: this.#generation, role: 'replica', caughtUp: choice.caughtUp })
    }
    if (this.#opts.readFallback === 'replicas-only') return callback(new NoReplicaError(choice.reason))
    // The primary has every write, so it also satisfies read-your-writes.
    this.#withPrimary(since, (err, endpoint, generation) => {
      if (err || !endpoint) return callback(err)
      callback(undefined, { endpoint, lane: endpoint.read, generation: generation!, role: 'primary', caughtUp: true })
    })
  }

  /** Verified standbys of our cluster that may serve reads now. */
  #replicaEndpoints(): Endpoint[] {
    return this.#endpoints.filter(
      (e) =>
        e !== this.#primary &&
        e.lastError === null &&
        e.breaker.allowsTraffic &&
        !this.#drained.has(e) &&
        e.lastProbe !== null &&
        e.lastProbe.inRecovery &&
        !this.#promoted.has(e) &&
        !this.#mismatched.has(e.name) &&
        !this.#fenced.has(e.name),
    )
  }

  /** The router's live view of an endpoint: made once, read through getters, so reads allocate none. */
  #replicaView(e: Endpoint): ReplicaView {
    let view = this.#views.get(e)
    if (view) return view
    const pool = this
    view = {
      name: e.name,
      weight: e.weight,
      get lagMs() {
        return e.lastProbe?.lagMs ?? null
      },
      get lagBytes() {
        return pool.#lagBytes(e)
      },
      get replayedLsn() {
        return e.knownReplayLsn
      },
      get busy() {
        return e.read.activeCount
      },
      get latencyMs() {
        return e.lastProbe?.latencyMs ?? null
      },
    }
    this.#views.set(e, view)
    return view
  }

  /** Bytes of WAL a standby was behind the primary, comparing the last probes of both. */
  #lagBytes(e: Endpoint): bigint | null {
    const primaryProbe = this.#primary?.lastProbe
    const probe = e.lastProbe
    if (!primaryProbe?.lsn || !probe?.inRecovery || !probe.lsn) return null
    // Read for every routed read when a byte limit is set: computed once per pair of probes.
    const cached = this.#lagCache.get(e)
    if (cached && cached.primary === primaryProbe && cached.replica === probe) return cached.lag
    const diff = parseLsn(primaryProbe.lsn) - parseLsn(probe.lsn)
    const lag = diff > 0n ? diff : 0n
    this.#lagCache.set(e, { primary: primaryProbe, replica: probe, lag })
    return lag
  }

  /** A request saw `err` on `target`. Only endpoint failures and demotions matter here. */
  #report(target: Target, err: unknown): void {
    const errorClass = classifyError(err)
    if (errorClass !== 'connection' && errorClass !== 'read-only') return
    if (target.role === 'primary') return this.#reportFailure(target.endpoint, target.generation, err)
    this.#reportReplicaFailure(target.endpoint, err)
  }

  /** A replica failed a read: no more reads there until a probe finds it healthy again. */
  #reportReplicaFailure(endpoint: Endpoint, err: unknown): void {
    if (endpoint === this.#primary || err instanceof LaneRetiredError) return
    const wasDown = !this.#markDown(endpoint, err)
    if (wasDown) return
    topologyLog('replica %s failed: %s', endpoint.name, maskPassword(endpoint.lastError!.message))
    endpoint.retire(isTimeout(err))
  }

  /**
   * An endpoint failure: counted by its breaker, remembered as its last error, and announced once
   * with `endpointDown`. Returns true when the endpoint was up until now.
   */
  #markDown(endpoint: Endpoint, err: unknown): boolean {
    const error = err instanceof Error ? err : new Error(String(err))
    const wasUp = endpoint.lastError === null
    endpoint.lastError = error
    if (classifyError(error) === 'connection') this.#breakerMoved(endpoint, endpoint.breaker.recordFailure(), error.message)
    if (wasUp) this.#emitEndpoint('endpointDown', endpoint, 'up', 'down', error.message)
    return wasUp
  }

  #breakerMoved(endpoint: Endpoint, transition: BreakerTransition | null, reason: string): void {
    if (transition) this.#emitEndpoint('breakerStateChange', endpoint, transition.from, transition.to, reason)
  }

  #emitEndpoint<E extends 'endpointDown' | 'endpointUp' | 'roleChange' | 'breakerStateChange'>(event: E, endpoint: Endpoint, from: string, to: string, reason: string): void {
    topologyLog('%s %s: %s -> %s (%s)', event, endpoint.name, from, to, reason)
    if (this.listenerCount(event) === 0) return
    this.emit(event, { endpoint: endpoint.name, from, to, reason: maskPassword(reason), at: new Date().toISOString() })
  }

  /** Calls back with the verified primary at once, or when one is verified, or with NoPrimaryError at the deadline. */
  #withPrimary(since: number, callback: PrimaryCallback): void {
    const primary = this.#primary
    if (primary !== null && !this.#paused) return callback(undefined, primary, this.#generation)
    if (this.ending) return callback(new Error('Cannot use a pool after calling end on the pool'))
    if (this.#ambiguity !== null) return callback(new SplitBrainError(this.#ambiguity.candidates, this.#ambiguity.reason))
    // Every breaker open: no node can answer before its wait ends, so say so now, not at the deadline.
    if (this.#endpoints.every((e) => e.breaker.state.kind === 'open')) {
      return callback(new AllEndpointsDownError(this.#endpoints.map((e) => ({ endpoint: e.name, breaker: e.breaker.state.kind, lastError: e.lastError ? maskPassword(e.lastError.message) : null }))))
    }
    const clock = this.#opts.clock
    const remaining = since + this.#opts.failoverTimeoutMs - clock.now()
    if (remaining <= 0 || this.#waiters.size >= this.#opts.maxQueuedRequests) {
      const why = remaining <= 0 ? undefined : new Error(`${this.#waiters.size} requests already wait for a primary (maxQueuedRequests)`)
      return callback(new NoPrimaryError(this.#lastAnswers, Math.round(clock.now() - since), why ? { cause: why } : undefined))
    }
    this.#waiters.add(
      (err, endpoint) => callback(err, endpoint, this.#generation),
      remaining,
      () => new NoPrimaryError(this.#lastAnswers, Math.round(clock.now() - since)),
    )
    if (!this.#booting && !this.#paused && !this.#discovering && this.#discoveryTimer === null) this.#startDiscovery('a request is waiting for a primary')
  }

  // ---------------------------------------------------------------- topology (the only place it changes)

  /**
   * The primary failed or was demoted: stop sending it anything, evict its clients and re-discover.
   * Reports from requests that started before the current primary was adopted are ignored, so one
   * failover costs one discovery however many requests saw it.
   */
  #reportFailure(endpoint: Endpoint, generation: number, err: unknown): void {
    if (err instanceof LaneRetiredError) return
    if (classifyError(err) === 'connection') this.#markDown(endpoint, err)
    if (endpoint !== this.#primary || generation !== this.#generation) return
    const reason =
      classifyError(err) === 'read-only'
        ? `demoted: ${endpoint.name} answered 25006 read_only_sql_transaction`
        : `connection failure on ${endpoint.name}: ${maskPassword(err instanceof Error ? err.message : String(err))}`
    topologyLog('primary %s suspect: %s', endpoint.name, reason)
    this.#suspendPrimary(reason)
    // A node that stopped answering would hold our running statements forever: cut them loose.
    endpoint.retire(isTimeout(err))
    this.#startDiscovery(reason)
  }

  #suspendPrimary(reason: string): void {
    if (this.#trouble === null) this.#trouble = { from: this.#primary?.name ?? null, reason, since: this.#opts.clock.now() }
    this.#primary = null
  }

  #onPromoted(endpoint: Endpoint): void {
    if (this.ending) return
    const reason = `promotion of ${endpoint.name} noticed`
    topologyLog(reason)
    // The cluster has moved on: writing to the old primary now could be lost, so stop at once.
    this.#promoted.add(endpoint)
    if (this.#primary !== null && this.#primary !== endpoint) this.#suspendPrimary(reason)
    this.#startDiscovery(reason)
  }

  /** Probes every endpoint in parallel; single-flight (a request made meanwhile runs once more after). */
  #startDiscovery(reason: string): void {
    if (this.ending) return
    if (this.#discovering) {
      this.#rediscover = reason
      return
    }
    if (this.#discoveryTimer !== null) this.#opts.clock.clearTimeout(this.#discoveryTimer)
    this.#discoveryTimer = null
    this.#discovering = true
    topologyLog('discovery: %s', reason)
    const outcomes = new Map<Endpoint, ProbeOutcome>(this.#endpoints.map((e) => [e, { kind: 'pending' }]))
    const candidates = (): Candidate[] => this.#endpoints.map((e) => ({ name: e.name, outcome: this.#refused.has(e) ? REFUSED : outcomes.get(e)! }))
    let adopted = false
    const consider = (): void => {
      if (adopted || this.ending) return
      // The stored primary is tried first: nobody else wins before it has answered — unless it is
      // the node we just lost (frozen, it would hold the failover up for a whole probe timeout).
      const hinted = this.#endpoints.find((e) => e.name === this.#storedPrimary)
      if (hinted && hinted.name !== this.#trouble?.from && outcomes.get(hinted)!.kind === 'pending' && this.#primary === null) return
      const election = this.#elect(candidates())
      if (election.kind === 'primary') {
        adopted = true
        this.#apply(election)
      }
    }
    const generation = this.#generation
    const probes = this.#endpoints.map((endpoint) =>
      this.#probe(endpoint, generation).then((outcome) => {
        outcomes.set(endpoint, outcome)
        consider()
      }),
    )
    void Promise.all(probes).then(() => {
      this.#discovering = false
      if (this.ending) return
      const election = this.#elect(candidates())
      this.#lastAnswers = this.#endpoints.map((e) => answerOf(e, outcomes.get(e)!, election))
      this.#apply(election)
      this.#syncWatches()
      if (this.#primary === null) this.#failWaitersOnConfigurationError(outcomes)
      const again = this.#rediscover
      this.#rediscover = null
      if (again !== null) this.#startDiscovery(again)
      else this.#scheduleDiscovery()
    })
  }

  /**
   * Probes one endpoint (unless its breaker is open: then no traffic at all, and a half-open
   * breaker's single trial is this probe) and turns the answer into breaker, reachability and role
   * events, and into a demotion or failure report when it is the primary.
   */
  async #probe(endpoint: Endpoint, generation: number): Promise<ProbeOutcome> {
    this.#breakerMoved(endpoint, endpoint.breaker.refresh(), 'open wait over: one trial probe')
    if (!endpoint.breaker.tryTrial()) {
      return { kind: 'failed', error: endpoint.lastError ?? new Error(`${endpoint.name}: circuit breaker open`) }
    }
    const startedAt = this.#opts.clock.now()
    const wasDown = endpoint.lastError !== null
    const previousRole = this.#roleOf(endpoint)
    try {
      const probe = await endpoint.probe(this.#opts.probeTimeoutMs)
      endpoint.lastError = null
      this.#breakerMoved(endpoint, endpoint.breaker.recordSuccess(startedAt), 'probe succeeded')
      if (wasDown) this.#emitEndpoint('endpointUp', endpoint, 'down', 'up', 'probe succeeded')
      this.#promoted.delete(endpoint)
      const role = roleOf(probe)
      // A fenced old primary that was rewound and rejoined as a standby of our cluster is safe again as a reader.
      if (role === 'standby' && this.#fenced.has(endpoint.name) && (this.#systemId === null || probe.systemId === this.#systemId)) {
        this.#fenced.delete(endpoint.name)
      }
      if (endpoint === this.#primary && role !== 'primary') {
        // The primary we write to says it no longer is one: treat it as a demotion now.
        this.#reportFailure(endpoint, generation, Object.assign(new Error(`${endpoint.name} is ${role} now`), { code: '25006' }))
      }
      const nowRole = this.#roleOf(endpoint)
      if (previousRole !== 'unknown' && nowRole !== previousRole && nowRole !== 'unverified-primary') {
        this.#emitEndpoint('roleChange', endpoint, previousRole, nowRole, `probe: in recovery ${probe.inRecovery}, read-only ${probe.readOnly}`)
      }
      return { kind: 'ok', probe }
    } catch (err) {
      const error = err as Error
      if (classifyError(error) === 'connection') {
        if (endpoint === this.#primary) this.#reportFailure(endpoint, generation, error)
        else this.#reportReplicaFailure(endpoint, error)
      } else {
        endpoint.lastError = error
      }
      return { kind: 'failed', error }
    }
  }

  /**
   * When every endpoint rejects us for a configuration reason (bad password, unknown database),
   * waiting for a failover cannot help: fail the waiting requests now with the server's own error.
   */
  #failWaitersOnConfigurationError(outcomes: ReadonlyMap<Endpoint, ProbeOutcome>): void {
    const errors = [...outcomes.values()].map((o) => (o.kind === 'failed' ? o.error : null))
    if (errors.some((e) => e === null || classifyError(e) !== 'configuration')) return
    this.#waiters.settleAll(errors[0]!)
  }

  /**
   * The health monitor: the next probe round comes after `healthCheckIntervalMs` while a primary is
   * known (roles, lag, liveness), after `discoveryIntervalMs` while none is. Rounds never overlap.
   */
  #scheduleDiscovery(): void {
    if (this.ending || this.#discoveryTimer !== null) return
    const known = this.#primary !== null
    this.#discoveryTimer = this.#opts.clock.setTimeout(
      () => {
        this.#discoveryTimer = null
        this.#startDiscovery(known ? 'health check' : 'no primary yet: probing again')
      },
      jitter(known ? this.#opts.healthCheckIntervalMs : this.#opts.discoveryIntervalMs),
    )
  }

  #elect(candidates: ElectionCandidate[]): Election {
    if (this.#opts.topology === 'logical') return electLogical(candidates, this.#primary?.name ?? this.#storedPrimary)
    return elect(candidates, { systemId: this.#systemId, minTimeline: this.#minTimeline })
  }

  #apply(election: Election): void {
    this.#lastElectionReason = election.kind === 'primary' ? `primary ${election.name}` : election.reason
    if (election.kind === 'wait') return
    for (const name of election.mismatched) this.#mismatched.add(name)
    if (election.kind === 'ambiguous') {
      if (this.#ambiguity === null) this.#emitSplitBrain(election.candidates, null, [], election.reason)
      this.#ambiguity = { reason: election.reason, candidates: election.candidates }
      topologyLog('refusing writes: %s', election.reason)
      if (this.#primary !== null) this.#suspendPrimary(election.reason)
      const refusal = new SplitBrainError(election.candidates, election.reason)
      this.#waiters.settleAll(refusal)
      return
    }
    if (election.kind === 'none') {
      const stale = (election.fenced ?? []).filter((name) => !this.#fenced.has(name))
      for (const name of stale) this.#fenced.add(name)
      if (stale.length > 0) this.#emitSplitBrain(stale, null, stale, `writable on a timeline older than ${this.#minTimeline}: a stale old primary, fenced`)
      return
    }
    this.#ambiguity = null
    const newlyFenced = election.fenced.filter((name) => !this.#fenced.has(name))
    for (const name of election.fenced) this.#fenced.add(name)
    this.#fenced.delete(election.name)
    if (newlyFenced.length > 0) {
      this.#emitSplitBrain([election.name, ...election.fenced], election.name, newlyFenced, `writable on an older timeline than ${election.name}: fenced`)
    }
    if (this.#systemId === null && this.#opts.topology === 'physical') this.#systemId = election.systemId
    if (election.timeline !== null) this.#minTimeline = Math.max(this.#minTimeline ?? 0, election.timeline)
    const next = this.#endpoints.find((e) => e.name === election.name)!
    if (this.#primary === next || this.#adopting === next) return this.#releaseWaiters()
    const previous = this.#primary
    const from = previous?.name ?? this.#trouble?.from ?? this.#storedPrimary
    if (previous !== null) {
      this.#suspendPrimary(`${next.name} took over`)
      previous.retire()
    }
    if (this.#opts.onPromote && from !== null && from !== next.name) {
      this.#adopting = next
      void this.#runPromoteHook(next, from).then((ok) => {
        this.#adopting = null
        if (this.ending) return
        if (ok) this.#adopt(next, from)
        else this.#scheduleDiscovery()
      })
      return
    }
    this.#adopt(next, from)
  }

  /** Makes `next` the primary: a new epoch when it changed, the failover event, the store, the waiters. */
  #adopt(next: Endpoint, from: string | null): void {
    this.#primary = next
    this.#generation++
    this.#watches.get(next)?.stop()
    const trouble = this.#trouble
    this.#trouble = null
    const changed = from !== null && from !== next.name
    const stored = this.#keeper.record
    if (changed || this.#epoch === 0) {
      // Following a decision another instance recorded keeps its epoch; a decision of our own makes a new one.
      if (stored && stored.primary === next.name && stored.epoch >= this.#epoch && stored.epoch > 0) this.#epoch = stored.epoch
      else this.#epoch = Math.max(this.#epoch, stored?.epoch ?? 0) + 1
    }
    if (changed) {
      this.#failovers++
      const event: FailoverEvent = {
        from,
        to: next.name,
        reason: trouble?.reason ?? `promotion of ${next.name}`,
        durationMs: Math.round(trouble ? this.#opts.clock.now() - trouble.since : 0),
        epoch: this.#epoch,
      }
      topologyLog('failover %s -> %s (%s) in %d ms', event.from, event.to, event.reason, event.durationMs)
      this.emit('failover', event)
    } else {
      topologyLog('primary %s verified (epoch %d)', next.name, this.#epoch)
    }
    this.#storedPrimary = next.name
    this.#persist(changed ? `failover from ${from}: ${trouble?.reason ?? 'promotion'}` : 'primary verified')
    this.#releaseWaiters()
  }

  /** Lets waiting requests go to the primary, unless writes are paused. */
  #releaseWaiters(): void {
    const primary = this.#primary
    if (primary === null || this.#paused) return
    this.#waiters.settleAll(undefined, primary)
  }

  // ---------------------------------------------------------------- state store

  /** Reads the stored decision (bounded), then starts the first discovery with it as a hint. */
  async #boot(): Promise<void> {
    const { record, error } = await this.#keeper.load()
    if (error) this.#emitStoreError('load', error)
    if (record) this.#learnFromStore(record)
    this.#unwatchStore = this.#keeper.watch((r) => this.#onStoredElsewhere(r))
    this.#booting = false
    this.#startDiscovery(record ? `start (state store says ${record.primary}, epoch ${record.epoch})` : 'start')
  }

  #learnFromStore(record: StateRecord): void {
    this.#storedPrimary = record.primary
    this.#epoch = Math.max(this.#epoch, record.epoch)
    if (this.#opts.topology === 'physical') {
      if (this.#systemId === null) this.#systemId = record.systemId
      if (record.timeline !== null) this.#minTimeline = Math.max(this.#minTimeline ?? 0, record.timeline)
    }
  }

  /** Records the current decision; a newer decision found in the store is followed (after verification). */
  #persist(reason: string): void {
    const primary = this.#primary
    if (primary === null) return
    const stored = this.#keeper.record
    if (stored && stored.primary === primary.name && stored.epoch === this.#epoch && stored.timeline === this.#minTimeline) return
    void this.#keeper
      .save({ primary: primary.name, systemId: this.#systemId, timeline: this.#minTimeline, epoch: this.#epoch, updatedAt: new Date().toISOString(), reason: maskPassword(reason) })
      .then(({ superseded, error }) => {
        if (error) this.#emitStoreError('save', error)
        if (superseded) this.#onStoredElsewhere(superseded)
      })
  }

  /** Another instance recorded a decision: follow it if it is newer, after verifying it. */
  #onStoredElsewhere(record: StateRecord): void {
    if (this.ending || record.epoch < this.#epoch) return
    if (record.primary === this.#primary?.name) {
      this.#epoch = Math.max(this.#epoch, record.epoch)
      return
    }
    topologyLog('state store: %s chosen elsewhere (epoch %d)', record.primary, record.epoch)
    this.#learnFromStore(record)
    if (this.#primary !== null) this.#suspendPrimary(`state store: ${record.primary} chosen by another instance (epoch ${record.epoch})`)
    this.#startDiscovery('state store changed')
  }

  #emitStoreError(operation: 'load' | 'save', error: StateStoreError): void {
    topologyLog('state store %s failed (%s): %s', operation, error.failure, error.message)
    if (this.listenerCount('stateStoreError') === 0) return
    this.emit('stateStoreError', { operation, failure: error.failure, message: maskPassword(error.message), at: new Date().toISOString() })
  }

  #emitSplitBrain(endpoints: readonly string[], chosen: string | null, fenced: readonly string[], reason: string): void {
    topologyLog('split brain: %s (chosen %s, fenced %s)', reason, chosen, fenced.join(', '))
    if (this.listenerCount('splitBrain') === 0) return
    this.emit('splitBrain', { endpoints, chosen, fenced, reason, at: new Date().toISOString() })
  }

  // ---------------------------------------------------------------- promotion hook

  /** Runs `onPromote` on the new primary; true when the node may take writes. */
  async #runPromoteHook(next: Endpoint, from: string | null): Promise<boolean> {
    const hook = this.#opts.onPromote!
    const context: PromotionContext = { from, to: next.name, epoch: Math.max(this.#epoch, this.#keeper.record?.epoch ?? 0) + 1, reason: this.#trouble?.reason ?? 'promotion' }
    try {
      await runPromoteHook(next.write, hook, context)
      topologyLog('promotion hook done on %s', next.name)
      return true
    } catch (err) {
      const error = err instanceof Error ? err : new Error(String(err))
      const decision = this.#opts.onPromoteFailure
      topologyLog('promotion hook failed on %s (%s): %s', next.name, decision, error.message)
      this.#lastElectionReason = `promotion hook failed on ${next.name}: ${maskPassword(error.message)}`
      if (decision === 'refuse') this.#refused.add(next)
      if (this.listenerCount('promoteHookError') > 0) this.emit('promoteHookError', { endpoint: next.name, error, decision, at: new Date().toISOString() })
      return decision === 'proceed'
    }
  }

  /** Keeps a promotion watch on every verified standby of our cluster, and none elsewhere. */
  #syncWatches(): void {
    if (!this.#opts.promotionWatch) return
    for (const endpoint of this.#endpoints) {
      const isStandby = endpoint.lastError === null && endpoint.lastProbe !== null && endpoint.lastProbe.inRecovery && !this.#mismatched.has(endpoint.name)
      let watch = this.#watches.get(endpoint)
      if (isStandby && endpoint !== this.#primary) {
        if (!watch) {
          watch = new PromotionWatch(
            endpoint,
            {
              windowMs: this.#opts.promotionWatchWindowMs,
              checkMs: this.#opts.promotionWatchCheckMs,
              retryMs: Math.max(this.#opts.discoveryIntervalMs, 1_000),
              connectTimeoutMs: this.#opts.probeTimeoutMs,
            },
            this.#opts.clock,
            (e) => this.#onPromoted(e),
          )
          this.#watches.set(endpoint, watch)
        }
        watch.start()
      } else {
        watch?.stop()
      }
    }
  }

  #roleOf(endpoint: Endpoint): EndpointRole {
    if (this.#mismatched.has(endpoint.name)) return 'mismatched-system'
    if (this.#fenced.has(endpoint.name)) return 'fenced'
    if (endpoint === this.#primary) return 'primary'
    if (endpoint.lastError !== null && (endpoint.lastProbe === null || classifyError(endpoint.lastError) === 'connection')) return 'unreachable'
    if (endpoint.lastProbe === null) return 'unknown'
    const role = roleOf(endpoint.lastProbe)
    return role === 'primary' ? 'unverified-primary' : role
  }

  // ---------------------------------------------------------------- inner pool events

  /**
   * Forwards one lane's pg.Pool events to the surfaces that own its connections (write lanes: the
   * pool and `writer`; read lanes: `reader`), with pg.Pool's arguments, and turns connection errors
   * into endpoint failures. Called for every checkout and release, so it allocates nothing.
   */
  #laneEvents(endpoint: Endpoint, lane: LaneKind): LaneEvents {
    const write = lane === 'write'
    const one = (event: 'connect' | 'acquire' | 'remove', client: PoolClient): void => {
      if (write) {
        this.emit(event, client)
        this.#writer?.emit(event, client)
      } else this.#reader?.emit(event, client)
    }
    const failed = (err: unknown): void => {
      if (!(err instanceof Error)) return
      const errorClass = classifyError(err)
      if (errorClass !== 'connection' && errorClass !== 'read-only') return
      if (endpoint === this.#primary) this.#reportFailure(endpoint, this.#generation, err)
      else this.#reportReplicaFailure(endpoint, err)
    }
    return {
      connect: (client) => one('connect', client),
      acquire: (client) => one('acquire', client),
      remove: (client) => one('remove', client),
      release: (err, client) => {
        if (err) failed(err)
        if (write) {
          this.emit('release', err, client)
          this.#writer?.emit('release', err, client)
        } else this.#reader?.emit('release', err, client)
      },
      error: (err, client) => {
        failed(err)
        // pg.Pool would crash a process with no 'error' listener; a failover must not. Read
        // connections' errors go to the pool itself when nobody listens on the reader.
        let delivered = false
        for (const surface of write ? [this, this.#writer] : [this.#reader]) {
          if (surface && surface.listenerCount('error') > 0) {
            surface.emit('error', err, client)
            delivered = true
          }
        }
        if (!delivered && !write && this.listenerCount('error') > 0) this.emit('error', err, client)
      },
    }
  }
}

function isTimeout(err: unknown): boolean {
  return err instanceof Error && ((err as { code?: unknown }).code === 'ETIMEDOUT' || /timeout|timed out/i.test(err.message))
}

function answerOf(endpoint: Endpoint, outcome: ProbeOutcome, election: Election): EndpointAnswer {
  if (election.kind !== 'wait' && election.mismatched.includes(endpoint.name)) {
    return { endpoint: endpoint.name, role: 'mismatched-system', error: 'system identifier differs from the cluster' }
  }
  if (outcome.kind === 'ok') return { endpoint: endpoint.name, role: roleOf(outcome.probe) }
  if (outcome.kind === 'failed') return { endpoint: endpoint.name, role: 'unreachable', error: maskPassword(outcome.error.message) }
  return { endpoint: endpoint.name, role: 'unknown' }
}

const REFUSED: ProbeOutcome = { kind: 'failed', error: new Error('its promotion hook failed (onPromoteFailure: refuse); use switchTo() to retry') }
