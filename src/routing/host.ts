import type { PoolOptions } from 'pg'
import type { Endpoint } from '../endpoint/endpoint.js'
import type { Lane } from '../endpoint/lane.js'
import { NoReplicaError } from '../errors.js'
import type { ResolvedOptions } from '../options.js'
import type { RetryBudget } from '../surface/retry-budget.js'
import type { FailureReport, ReadRequest, RoutingHost, Target, TargetCallback } from '../surface/routing-host.js'
import type { Coordinator } from '../topology/coordinator.js'
import { shownPrimary } from '../topology/writer-state.js'
import type { ReadTargets } from './read-targets.js'

/**
 * The {@link RoutingHost} the surfaces (`pool`, `pool.reader`, `pool.writer`) run on: writes go to
 * the coordinator's verified primary, reads to a replica chosen by {@link ReadTargets} or, by
 * `readFallback`, to the primary.
 */
export class TopologyHost implements RoutingHost {
  readonly clock: ResolvedOptions['clock']
  readonly readYourWritesTimeoutMs: number
  readonly failFast: boolean
  /** The primary's read-lane target of the current generation (reads falling back to the primary). */
  #primaryRead: Target | null = null
  /** Requests that have not answered their caller yet. */
  #inFlight = 0
  #idleWaiters: Array<() => void> = []
  /** Both kinds of lane of the endpoints in `of` (the coordinator's list: a new array after each membership change). */
  #lanes: { readonly of: readonly unknown[]; readonly write: readonly Lane[]; readonly read: readonly Lane[] }

  constructor(
    private readonly coordinator: Coordinator,
    private readonly reads: ReadTargets,
    private readonly options: ResolvedOptions,
    private readonly retryBudget: RetryBudget,
    private readonly isEnding: () => boolean,
  ) {
    this.clock = options.clock
    this.readYourWritesTimeoutMs = options.readYourWritesTimeoutMs
    this.failFast = options.failoverTimeoutMs === 0
    this.#lanes = { of: [], write: [], read: [] }
  }

  requestStarted(): void {
    this.#inFlight++
  }

  requestFinished(): void {
    if (--this.#inFlight > 0 || this.#idleWaiters.length === 0) return
    const waiters = this.#idleWaiters
    this.#idleWaiters = []
    for (const resolve of waiters) resolve()
  }

  /** Resolves once every request made so far has answered its caller (what end() waits for first). */
  whenIdle(): Promise<void> {
    if (this.#inFlight === 0) return Promise.resolve()
    return new Promise((resolve) => this.#idleWaiters.push(resolve))
  }

  get ending(): boolean {
    return this.isEnding()
  }

  readyWriteTarget(): Target | null {
    return this.coordinator.requests.readyWriteTarget()
  }

  earlyWriteLane(): Lane | null {
    const endpoints = this.coordinator.endpoints
    return endpoints.length === 1 && !this.coordinator.everVerified && !this.isEnding() ? endpoints[0]!.write : null
  }

  target(kind: 'write' | 'read', since: number, read: ReadRequest | null, callback: TargetCallback, retryOf: Target | null = null): void {
    if (kind === 'write') return this.coordinator.requests.whenPrimary(since, callback, retryOf)
    const choice = this.reads.choose(read!)
    if (choice.kind === 'replica') {
      const endpoint = choice.endpoint
      return callback(undefined, { endpoint, lane: endpoint.read, generation: this.coordinator.generation, role: 'replica', caughtUp: choice.caughtUp, maxStalenessMs: read!.maxStalenessMs })
    }
    if (this.options.readFallback === 'replicas-only') return callback(new NoReplicaError(choice.reason))
    // The primary has every write, so it also satisfies read-your-writes.
    this.coordinator.requests.whenPrimary(since, (err, write) => {
      if (err || !write) return callback(err)
      let target = this.#primaryRead
      if (target === null || target.endpoint !== write.endpoint || target.generation !== write.generation) {
        target = this.#primaryRead = { ...write, lane: write.endpoint.read }
      }
      callback(undefined, target)
    })
  }

  report(failure: FailureReport): void {
    this.coordinator.requests.report(failure)
  }

  isCurrent(target: Target): boolean {
    if (target.role === 'primary') return this.coordinator.requests.isCurrentPrimary(target)
    return this.reads.stillServes(target.endpoint, target.maxStalenessMs)
  }

  eraOf(endpoint: Endpoint): number {
    return this.coordinator.health(endpoint).era
  }

  leftSince(endpoint: Endpoint, era: number): boolean {
    return this.coordinator.health(endpoint).leftEra > era
  }

  lanes(kind: 'write' | 'read'): readonly Lane[] {
    // An endpoint's lanes never change (retiring swaps the pool inside a lane), only the list does:
    // counted without allocating until it changes.
    const endpoints = this.coordinator.endpoints
    if (this.#lanes.of !== endpoints) this.#lanes = { of: endpoints, write: endpoints.map((e) => e.write), read: endpoints.map((e) => e.read) }
    return this.#lanes[kind]
  }

  primaryOptions(): PoolOptions {
    // Before an endpoint provider's first answer there is no endpoint: the pool's own settings.
    return (shownPrimary(this.coordinator.state) ?? this.coordinator.endpoints[0])?.options ?? (this.options.poolConfig as PoolOptions)
  }

  waitingForPrimary(): number {
    return this.coordinator.waiting
  }

  spendRetry(): boolean {
    return this.retryBudget.trySpend()
  }
}
