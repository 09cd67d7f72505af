import type { Endpoint } from '../endpoint/endpoint.js'
import { parseLsn } from '../endpoint/lsn.js'
import type { ProbeResult } from '../endpoint/role-probe.js'
import type { ResolvedOptions } from '../options.js'
import type { ReadRequest } from '../surface/routing-host.js'
import type { Coordinator } from '../topology/coordinator.js'
import { servesReads } from '../topology/endpoint-health.js'
import { lossOf, shownPrimary, writingTo } from '../topology/writer-state.js'
import { type ReadConstraints, type ReplicaView, type RouterCursor, chooseReplica, withinLagLimits } from './router.js'

const NONE: ReadonlySet<string> = new Set()

/** A replica chosen for a read, or why there is none. */
export type ReadChoice = { readonly kind: 'replica'; readonly endpoint: Endpoint; readonly caughtUp: boolean } | { readonly kind: 'none'; readonly reason: string }

/**
 * Chooses the replica for each read from the coordinator's view of the endpoints (verified standbys
 * of our cluster, reachable, closed breaker, not drained, fenced or just promoted), within the lag
 * limits, by `readStrategy`. Views are made once per endpoint and read live: a read copies no
 * endpoint state and probes nothing; it costs two short arrays (the eligible endpoints, their
 * views), the limits object and the answer.
 */
export class ReadTargets {
  readonly #views = new Map<Endpoint, ReplicaView>()
  readonly #lagCache = new Map<Endpoint, { primary: object; replica: object; lag: bigint }>()
  readonly #cursor: RouterCursor = { next: 0 }

  constructor(
    private readonly coordinator: Coordinator,
    private readonly options: ResolvedOptions,
  ) {}

  /** How long a probe's lag figure is vouched for: two health checks and a probe deadline (see Endpoint#lagMs). */
  get lagFreshForMs(): number {
    return 2 * this.options.healthCheckIntervalMs + this.options.probeTimeoutMs
  }

  /** Endpoints that may serve reads now. */
  replicas(): Endpoint[] {
    const primary = shownPrimary(this.coordinator.state)
    return this.coordinator.endpoints.filter((e) => e !== primary && servesReads(e, this.coordinator.health(e)))
  }

  /**
   * True while `endpoint` may still serve a read routed to it earlier — a member still, within that
   * read's lag limits as the pool's figures stand now (checked right before sending). A read can
   * wait long for a connection there — behind reads held by a node that froze — and the limits
   * bound what it is answered from when it is sent, not when it was routed.
   */
  stillServes(endpoint: Endpoint, maxStalenessMs: number | undefined): boolean {
    if (endpoint === shownPrimary(this.coordinator.state) || !this.coordinator.isMember(endpoint) || !servesReads(endpoint, this.coordinator.health(endpoint))) return false
    return withinLagLimits(this.#view(endpoint), this.#limits(maxStalenessMs))
  }

  /** The replica for one read. */
  choose(read: ReadRequest): ReadChoice {
    const replicas = this.replicas()
    const choice = chooseReplica(
      replicas.map((e) => this.#view(e)),
      this.#limits(read.maxStalenessMs, read.minLsn, read.exclude),
      this.options.readStrategy,
      this.#cursor,
    )
    if (choice.kind === 'none') return choice
    return { kind: 'replica', endpoint: replicas.find((e) => e.name === choice.name)!, caughtUp: choice.caughtUp }
  }

  /**
   * Bytes of WAL a standby was behind the primary, comparing the last probes of both (memoized per
   * pair). While the primary is in doubt or lost, the last position it was seen at still counts: the
   * standby is at least that far behind what the cluster committed, and a byte limit that lapsed
   * whenever the primary did would send reads to the most lagging standby exactly when it matters.
   */
  lagBytes(e: Endpoint): bigint | null {
    const primaryProbe = this.#referenceProbe()
    const probe = e.lastProbe
    if (!primaryProbe?.lsn || !probe?.inRecovery || !probe.lsn) return null
    const cached = this.#lagCache.get(e)
    if (cached && cached.primary === primaryProbe && cached.replica === probe) return cached.lag
    const diff = parseLsn(primaryProbe.lsn) - parseLsn(probe.lsn)
    const lag = diff > 0n ? diff : 0n
    this.#lagCache.set(e, { primary: primaryProbe, replica: probe, lag })
    return lag
  }

  /**
   * The last probe of the node whose WAL position standbys are measured against: the one writes go
   * to (or went to until a doubt), the candidate being adopted, else the primary the pool lost
   * (every state that follows a verified primary names it in its loss) — as last seen, even once
   * it was removed from the endpoints.
   */
  #referenceProbe(): ProbeResult | null {
    const state = this.coordinator.state
    const writer = writingTo(state) ?? (state.kind === 'adopting' ? state.candidate : null)
    if (writer !== null) return writer.lastProbe
    const lostFrom = lossOf(state)?.from
    if (lostFrom == null) return null
    const member = this.coordinator.endpoints.find((c) => c.name === lostFrom)?.lastProbe
    if (member != null) return member
    const removed = this.coordinator.lostPrimaryProbe
    return removed?.name === lostFrom ? removed.probe : null
  }

  /**
   * A read's lag limits (and, for choosing, its read-your-writes position and the replicas it
   * failed on) as one literal: built by spreading a limits object instead, V8 copied it on a slow
   * path that cost ~3.4 µs per read.
   */
  #limits(maxStalenessMs: number | undefined, minLsn: bigint | null = null, exclude: ReadonlySet<string> = NONE): ReadConstraints {
    return { maxLagMs: maxStalenessMs ?? this.options.maxReplicaLagMs, maxLagBytes: this.options.maxReplicaLagBytes, minLsn, exclude }
  }

  #view(e: Endpoint): ReplicaView {
    let view = this.#views.get(e)
    if (view) return view
    const targets = this
    view = {
      name: e.name,
      weight: e.weight,
      get lagMs() {
        return e.lagMs(targets.options.clock.now(), targets.lagFreshForMs)
      },
      get lagBytes() {
        return targets.lagBytes(e)
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
}
