import type pg from 'pg'
import type { PoolConfig } from 'pg'
import type { Clock } from './clock.js'
import { type EndpointsInput, type ResolvedEndpoint, resolveEndpoints } from './endpoint/endpoint-config.js'
import { Endpoint, type LaneEventsFactory } from './endpoint/endpoint.js'
import type { EventSink, FailoverPoolEvents, PgPoolEvents } from './events.js'
import { FleetMonitor } from './health/fleet-monitor.js'
import { monitorWatchFactory, type WatchFactory } from './health/watches.js'
import { supportsSharedMonitor } from './state/state-store.js'
import { cutClient } from './endpoint/client-cut.js'
import { classifyError } from './error-policy.js'
import { type FailoverPoolOptions, type ResolvedOptions, checkEndpointOptions, resolveOptions } from './options.js'
import { type FailoverPoolStatus, buildStatus } from './observe/status.js'
import { TopologyHost } from './routing/host.js'
import { ReadTargets } from './routing/read-targets.js'
import { currentConsistency, runWithConsistency, tokenOf } from './surface/consistency.js'
import { forwardLaneEvents } from './surface/lane-events.js'
import { PoolSurface } from './surface/pool-surface.js'
import type { Intent } from './surface/request.js'
import { RetryBudget } from './surface/retry-budget.js'
import { RoutedPool } from './surface/routed-pool.js'
import { Coordinator } from './topology/coordinator.js'
import { Maintenance } from './topology/maintenance.js'
import { Membership } from './topology/membership.js'
import { MembershipFeed } from './membership/membership-feed.js'
import { EndpointSourceError, asError } from './errors.js'

// Typed listeners for our own events; pg.Pool's overloads still apply for its events.
export interface FailoverPool {
  on<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  on<E extends keyof PgPoolEvents>(event: E, listener: PgPoolEvents[E]): this
  once<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  once<E extends keyof PgPoolEvents>(event: E, listener: PgPoolEvents[E]): this
  off<E extends keyof FailoverPoolEvents>(event: E, listener: FailoverPoolEvents[E]): this
  off(event: string | symbol, listener: (...args: any[]) => void): this
}

/**
 * How a FailoverPool makes its parts. Tests inject fakes here so the coordinator's rules run on a
 * fake clock without sockets; applications never need it.
 * @internal
 */
export interface PoolParts {
  /** Makes one endpoint (default: a real {@link Endpoint} with two pg.Pool lanes). */
  endpoint?: (resolved: ResolvedEndpoint, shared: PoolConfig, events: LaneEventsFactory, clock: Clock) => Endpoint
  /** Makes promotion watches (default: subscriptions to each node's shared monitor; null when `promotionWatch` is off). */
  watches?: WatchFactory | null
  /** Handed the pool's coordinator once it exists: the deterministic simulator checks its invariants against it. */
  observe?: (coordinator: Coordinator) => void
}

/**
 * A drop-in `pg.Pool` over several PostgreSQL endpoints. `query` and `connect` reach the verified
 * primary (or, with `routeReads: 'auto'`, a replica for certainly read-only statements); when the
 * primary fails or is demoted, the pool re-discovers it once for all waiting requests and carries
 * on without a process restart. `pool.reader` and `pool.writer` are pg.Pool-compatible views bound
 * to replicas and to the primary.
 *
 * This class is the public API and the wiring; the topology is decided in `topology/coordinator.ts`.
 *
 * Events: pg.Pool's `connect`, `acquire`, `release`, `remove`, `error` (same arguments) for the
 * primary's connections, plus `failover`, `endpointDown`, `endpointUp`, `roleChange`,
 * `breakerStateChange`, `splitBrain`, `stateStoreError` and `promoteHookError`.
 */
export class FailoverPool extends PoolSurface {
  static {
    // Code that checks constructor.name (Drizzle does) must see it even after a consumer's minifier.
    Object.defineProperty(this, 'name', { value: 'FailoverPool' })
  }
  /** @internal */
  protected readonly host: TopologyHost
  /** @internal */
  protected readonly intent: Intent
  readonly #opts: ResolvedOptions
  readonly #coordinator: Coordinator
  readonly #reads: ReadTargets
  readonly #maintenance: Maintenance
  readonly #membership: Membership
  /** Asks the endpoint provider (the `endpoints` option), when there is one. */
  readonly #feed: MembershipFeed | null = null
  #reader: RoutedPool | null = null
  #writer: RoutedPool | null = null
  /** Every reader view made (`reader` and `readerView()`), which read connections' events go to. */
  readonly #readers: RoutedPool[] = []

  /**
   * @param options endpoints plus any pg.Pool option; see {@link FailoverPoolOptions}.
   * @throws ConfigError for invalid options (naming the field and value, never a password).
   */
  constructor(options: FailoverPoolOptions, /** @internal */ parts: PoolParts = {}) {
    const resolved = resolveOptions(options)
    super(resolved.poolConfig)
    this.#opts = resolved
    this.intent = resolved.routeReads === 'auto' ? 'auto' : 'write'
    const events: LaneEventsFactory = (endpoint, lane) =>
      forwardLaneEvents({ pool: this, writer: () => this.#writer, readers: () => this.#readers, idleError: (e, err) => this.#coordinator.requests.idleError(e, err) }, endpoint, lane)
    // A probe asked for during a window is answered at its end: the window must end well inside the probe's deadline.
    const windowMs = Math.min(resolved.promotionWatchWindowMs, Math.max(10, resolved.probeTimeoutMs / 2))
    const watch = { windowMs, checkMs: Math.min(resolved.promotionWatchCheckMs, windowMs), retryMs: Math.max(resolved.discoveryIntervalMs, 1_000) }
    const makeEndpoint = parts.endpoint ?? ((r, shared, ev, clock) => new Endpoint(r, shared, ev, clock, watch))
    const endpoints = resolved.endpoints.map((e) => makeEndpoint(e, resolved.poolConfig, events, resolved.clock))
    const watches = parts.watches !== undefined ? parts.watches : resolved.promotionWatch ? monitorWatchFactory : null
    // Shared monitoring: followers wait for a health check's published probes up to one and a half
    // of the leader's intervals, for the probes behind a published promotion up to a probe deadline,
    // and otherwise while in doubt for one of the leader's watch windows and two discovery rounds.
    const fleet =
      resolved.monitor === 'shared' && supportsSharedMonitor(resolved.stateStore)
        ? new FleetMonitor(resolved.stateStore, {
            leaseTtlMs: resolved.monitorLeaseTtlMs,
            calmWaitMs: resolved.healthCheckIntervalMs * 1.5 + resolved.monitorLeaseTtlMs,
            noticeWaitMs: resolved.probeTimeoutMs,
            // The leader answers a probe of a standby it is watching at the end of the window.
            urgentWaitMs: windowMs + resolved.discoveryIntervalMs * 2,
            // A leader answers a doubt within a publish round trip; a fifth of the lease is far beyond one.
            answerWaitMs: resolved.monitorLeaseTtlMs / 5,
          }, resolved.clock)
        : null
    // A provider is asked again after every failover (Patroni's member list changes with the roles).
    const topologyEvents: EventSink = {
      emit: (event, payload) => {
        if (event === 'failover') this.#feed?.refreshNow()
        return this.listenerCount(event) > 0 && this.emit(event, payload)
      },
      listenerCount: (event) => this.listenerCount(event) + (event === 'failover' && resolved.endpointProvider !== null ? 1 : 0),
    }
    this.#coordinator = new Coordinator({ endpoints, options: resolved, events: topologyEvents, watches, fleet })
    parts.observe?.(this.#coordinator)
    this.#reads = new ReadTargets(this.#coordinator, resolved)
    this.#maintenance = new Maintenance(this.#coordinator, resolved)
    this.#membership = new Membership(this.#coordinator, this.#maintenance, resolved, (r) => makeEndpoint(r, resolved.poolConfig, events, resolved.clock))
    this.host = new TopologyHost(this.#coordinator, this.#reads, resolved, new RetryBudget(resolved.retryBudget, resolved.clock), () => this.ending)
    this.handleClientErrors()
    const provider = resolved.endpointProvider
    if (provider !== null) {
      const feed = new MembershipFeed(provider, resolved.poolConfig, resolved.probeTimeoutMs, resolved.clock, {
        changed: (list) =>
          void this.#membership.change(list, provider.description).catch((err: unknown) => {
            feed.forgetApplied()
            this.#sourceRejected(err instanceof EndpointSourceError ? err : new EndpointSourceError(provider.description, asError(err).message, { cause: err }))
          }),
        rejected: (err) => this.#sourceRejected(err),
      })
      this.#feed = feed
      feed.start()
    }
    void this.#coordinator.start()
  }

  /**
   * A pg.Pool-compatible view (`instanceof pg.Pool`, same methods and events) that sends reads to
   * healthy replicas by `readStrategy`, within the lag limits, falling back by `readFallback`. Hand
   * it to a read-only ORM instance or query builder. Its events are those of the read connections.
   */
  get reader(): RoutedPool {
    return (this.#reader ??= this.readerView())
  }

  /**
   * A new reader view of its own, like {@link reader}: for a framework that ends every replica pool
   * it was given (TypeORM ends each `replication.slaves` pool), each can be ended separately.
   */
  readerView(): RoutedPool {
    // An ended view stops receiving the read connections' events (each event goes to every view).
    const view: RoutedPool = new RoutedPool(this.host, 'read', this.#opts.poolConfig, () => {
      const i = this.#readers.indexOf(view)
      if (i !== -1) this.#readers.splice(i, 1)
    })
    this.#readers.push(view)
    return view
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

  /**
   * For libraries that pool connections themselves and take a Client class (Sequelize's
   * `dialectModule`): connects `client` — a `pg.Client` made with any address, not connected yet —
   * to the verified primary (waiting for one as a query would), or with `'read'` to a replica
   * chosen as `pool.reader` would (falling back by `readFallback`). The endpoint decides the address
   * and, where it names them (in its config object or its connection string), the user, password,
   * database and TLS settings; the client keeps its own TCP keepalive, `application_name`, timeouts
   * and any of those fields the endpoint does not name.
   * The client is then tied to its node: when the pool leaves it (failover, demotion, split brain)
   * the client is cut like the pool's own, so it can never acknowledge a write afterwards.
   * @throws what a query would: NoPrimaryError, NoReplicaError, the node's connection error.
   */
  connectClient(client: pg.Client, role: 'write' | 'read' = 'write'): Promise<void> {
    const read = role === 'read' ? { exclude: new Set<string>(), maxStalenessMs: undefined, minLsn: null } : null
    return new Promise((resolve, reject) => {
      if (this.ending) return reject(new Error('Cannot use a pool after calling end on the pool'))
      const startedAt = this.#opts.clock.now()
      this.host.target(role, startedAt, read, (err, target) => {
        if (err || !target) return reject(err)
        const era = this.host.eraOf(target.endpoint)
        // The node failing this client (while connecting, or later) is a failure like any request's.
        const report = (error: unknown): void => {
          const errorClass = classifyError(error)
          if (error instanceof Error && (errorClass === 'connection' || errorClass === 'read-only')) this.host.report({ target, error, errorClass, era })
        }
        target.endpoint.attach(client, report).then(() => {
          // Left while connecting: the cut reached it, or it connected just after; either way never hand it out.
          if (this.host.isCurrent(target)) return resolve()
          cutClient(client)
          reject(Object.assign(new Error(`${target.endpoint.name} stopped being the ${role === 'write' ? 'primary' : 'replica'} while this client connected`), { code: 'ECONNRESET' }))
        }, (error: unknown) => {
          report(error)
          reject(error)
        })
      })
    })
  }

  /** A JSON-serialisable snapshot of the topology: primary, roles, lag, failovers. No passwords. */
  status(): FailoverPoolStatus {
    return buildStatus({ coordinator: this.#coordinator, reads: this.#reads, topology: this.#opts.topology, clock: this.#opts.clock, source: this.#feed })
  }

  /** An endpoint provider's answer was not applied: told to `endpointsRejected` listeners (never 'error': nothing is lost). */
  #sourceRejected(error: EndpointSourceError): void {
    queueMicrotask(() => {
      if (this.listenerCount('endpointsRejected') > 0) this.emit('endpointsRejected', error)
    })
  }

  /**
   * Planned switchover or manual failback: verifies `name` (reachable; the cluster's verified
   * primary — out of recovery, writable, same system identifier, timeline not older than the
   * current one; with `topology: 'logical'`, writable), runs `onPromote`, records the decision and
   * moves writes there at once. Whatever still runs on the old primary is cut (outcome unknown).
   * Calls run one at a time.
   * @throws ConfigError for an unknown name; SwitchoverRefusedError when the target fails verification.
   */
  switchTo(name: string): Promise<void> {
    return this.#maintenance.switchTo(name)
  }

  /**
   * Changes the endpoints while the pool runs; the same forms as the `endpoints` option. An
   * endpoint whose definition is unchanged keeps its connections; a new one is probed before it
   * takes any traffic; a removed one gets no new checkout from the moment the promise resolves, its
   * idle connections close, and clients checked out there get `drainTimeoutMs` before they are cut.
   * Removing the primary switches writes over to the verified primary of the new list first (writes
   * queue meanwhile, as in {@link switchTo}). Calls run one at a time.
   * @throws ConfigError for a list the `endpoints` option would refuse; SwitchoverRefusedError
   *   (the list stays as it was) when it removes the primary and no endpoint of the new list
   *   verifies as one, or the switchover to it is refused (its promotion hook failed).
   */
  setEndpoints(endpoints: EndpointsInput): Promise<void> {
    let resolved: ResolvedEndpoint[]
    try {
      resolved = resolveEndpoints(endpoints, this.#opts.poolConfig)
      checkEndpointOptions(resolved)
    } catch (err) {
      return Promise.reject(err)
    }
    return this.#membership.change(resolved, 'setEndpoints()')
  }

  /**
   * Planned maintenance: new writes queue (bounded by `failoverTimeoutMs` and `maxQueuedRequests`)
   * instead of reaching the primary, while the HA tool switches roles. Running statements finish.
   */
  pauseWrites(): void {
    this.#maintenance.pauseWrites()
  }

  /** Ends a pause: the primary is verified again (it may have changed), then queued writes go. */
  resumeWrites(): void {
    this.#maintenance.resumeWrites()
  }

  /**
   * Takes `name` out of service for maintenance: no new reads go there (and if it is the primary,
   * writes pause), its idle connections close now, and the promise resolves once every client
   * checked out there has been released. Undo with {@link undrain}.
   * @throws ConfigError for an unknown name.
   */
  drain(name: string): Promise<void> {
    return this.#maintenance.drain(name)
  }

  /**
   * Puts a drained endpoint back in service (call `resumeWrites()` too if it was the primary).
   * @throws ConfigError for an unknown name.
   */
  undrain(name: string): void {
    this.#maintenance.undrain(name)
  }

  /**
   * pg.Pool's contract: everything issued before end() completes — statements running, clients
   * checked out, and requests still waiting for a first primary (bounded by `failoverTimeoutMs`) —
   * then every connection closes and every timer stops. New calls fail from the moment end() is
   * called (see PoolSurface#end).
   */
  protected override async shutdown(): Promise<void> {
    this.#feed?.stop()
    await this.host.whenIdle()
    await Promise.all([this.#coordinator.end(), this.#membership.retired()])
  }
}
