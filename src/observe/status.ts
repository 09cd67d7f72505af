import type { Clock } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { maskPassword } from '../errors.js'
import type { ReadTargets } from '../routing/read-targets.js'
import type { StateStoreHealth } from '../state/state-keeper.js'
import type { Coordinator } from '../topology/coordinator.js'
import { type EndpointHealth, servesReads } from '../topology/endpoint-health.js'
import { shownPrimary } from '../topology/writer-state.js'

/**
 * What the pool believes about one endpoint:
 * `primary` (verified, receives writes), `standby` (in recovery), `read-only` (out of recovery but
 * refusing writes), `unverified-primary` (writable but not adopted: not yet elected), `fenced`
 * (writable but stale or disputed: never written to), `mismatched-system` (another cluster),
 * `unreachable` (last probe or connection failed), `unknown` (not probed yet).
 */
export type EndpointRole = (typeof ENDPOINT_ROLES)[number]

/** Every {@link EndpointRole}, for metrics that report one series per role. */
export const ENDPOINT_ROLES = ['primary', 'standby', 'read-only', 'unverified-primary', 'fenced', 'mismatched-system', 'unreachable', 'unknown'] as const

/** One endpoint in {@link FailoverPoolStatus}. */
export interface EndpointStatus {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly role: EndpointRole
  /** Circuit breaker: `closed` (in use), `open` (skipped until its wait ends), `half-open` (one trial probe next). */
  readonly breaker: 'closed' | 'open' | 'half-open'
  /**
   * True while `pool.reader` may send reads here: a reachable, verified standby of this cluster,
   * breaker closed, not drained, fenced or in doubt. (The primary serves reads only as a fallback.)
   */
  readonly servesReads: boolean
  /** Why a standby that answers serves no reads (it cannot follow the primary's timeline), or null. */
  readonly readFence: string | null
  /** Wall-clock time of the last probe (ISO 8601), or null. */
  readonly lastProbeAt: string | null
  /** Round trip of the last successful probe, in milliseconds. */
  readonly probeLatencyMs: number | null
  /** Replay lag reported by the last probe, in milliseconds (0 on a primary or a caught-up standby). */
  readonly lagMs: number | null
  /** WAL position of the last probe (insert position on a primary, replay position on a standby). */
  readonly lsn: string | null
  readonly timeline: number | null
  /** Message of the last connection-class error, password masked. */
  readonly lastError: string | null
  /** WAL bytes a standby was behind the primary at the last probes, or null. */
  readonly lagBytes: number | null
  /** Statements sent to this endpoint as writes and as reads, and how many failed, since start. */
  readonly queries: { readonly writes: number; readonly reads: number; readonly errors: number }
  /** Clients open / idle on this endpoint (write and read pools together). */
  readonly totalCount: number
  readonly idleCount: number
}

/** The snapshot returned by `FailoverPool#status()`: plain JSON, no passwords. */
export interface FailoverPoolStatus {
  /** Name of the verified primary, or null while none is known (writes wait). */
  readonly primary: string | null
  /** True when a verified primary is known. */
  readonly ready: boolean
  /**
   * `read-write`: a primary is verified; `read-only`: no primary, but replicas serve reads (writes
   * wait or fail); `unavailable`: neither.
   */
  readonly mode: 'read-write' | 'read-only' | 'unavailable'
  /** Grows by one with every change of primary. */
  readonly epoch: number
  /** Completed failovers since the pool was created. */
  readonly failovers: number
  readonly systemId: string | null
  /** Highest timeline a primary was verified on; writable nodes below it are fenced. */
  readonly timeline: number | null
  /** True while a discovery round is probing. */
  readonly discovering: boolean
  /** The latest election's outcome in words. */
  readonly lastElection: string
  readonly topology: 'physical' | 'logical'
  /** True while `pauseWrites()` holds writes. */
  readonly paused: boolean
  /** Why writes are refused (ambiguous split brain), or null. */
  readonly splitBrain: string | null
  /** The state store's health: a failing store never blocks queries, it shows here. */
  readonly stateStore: StateStoreHealth
  /** The HA manager's last answer (null without the `haManager` option). */
  readonly haManager: HaManagerStatus | null
  /**
   * Who monitors the nodes: `local` (this pool), or `shared` with this instance's part: `leader`
   * (probes and watches for the fleet), `follower` (holds no monitoring connection), `alone` (the
   * store is unreachable: monitoring on its own).
   */
  readonly monitor: { readonly mode: 'local' | 'shared'; readonly role: 'leader' | 'follower' | 'alone' | null }
  /** Where the endpoint list comes from when `endpoints` is a provider (null otherwise). */
  readonly endpointSource: EndpointSourceStatus | null
  readonly endpoints: readonly EndpointStatus[]
}

/** An endpoint provider's last answers, in {@link FailoverPoolStatus}. */
export interface EndpointSourceStatus {
  /** What it asks (e.g. `DNS SRV _postgresql._tcp.db`). */
  readonly description: string
  /** Why its last answer was not applied (password-free), or null when it was usable. */
  readonly lastError: string | null
  /** How long ago its last usable answer came, in ms (null before the first). */
  readonly lastAnswerAgoMs: number | null
}

/** What the HA manager (e.g. Patroni) said last, in {@link FailoverPoolStatus}. */
export interface HaManagerStatus {
  /** `'patroni'`, or your manager's kind. */
  readonly kind: string
  /** True when the last request answered. */
  readonly ok: boolean
  /** The member holding the leader key, by the manager's name, or null. */
  readonly leader: string | null
  /** The pool endpoint that member is (null when none of ours). */
  readonly leaderEndpoint: string | null
  readonly members: ReadonlyArray<{ readonly name: string; readonly role: string; readonly state: string; readonly timeline: number | null; readonly lagBytes: number | null }>
  /** Message of the last failure (password-free), or null. */
  readonly lastError: string | null
  /** When it last answered or failed (ISO 8601), or null before the first request. */
  readonly checkedAt: string | null
}

/** What status() is assembled from: the coordinator's state and the read router's lag figures. */
export interface StatusInput {
  readonly coordinator: Coordinator
  readonly reads: ReadTargets
  readonly topology: 'physical' | 'logical'
  /** The pool's clock (a detached standby's lag grows with it). */
  readonly clock: Clock
  /** The endpoint provider's state, when there is one. */
  readonly source?: { readonly description: string; readonly lastError: Error | null; readonly lastAnswerAt: number | null } | null
}

/** Assembles the status snapshot from the coordinator's state. No passwords. */
export function buildStatus({ coordinator, reads, topology, clock, source = null }: StatusInput): FailoverPoolStatus {
  const state = coordinator.state
  const primary = shownPrimary(state)
  const { cluster } = coordinator
  const health = coordinator.sync.health
  return {
    primary: primary?.name ?? null,
    ready: primary !== null,
    mode: primary !== null ? 'read-write' : reads.replicas().length > 0 ? 'read-only' : 'unavailable',
    epoch: cluster.epoch,
    failovers: cluster.failovers,
    systemId: cluster.systemId,
    timeline: cluster.minTimeline,
    discovering: coordinator.discovering,
    lastElection: maskPassword(coordinator.lastElection),
    topology,
    paused: state.kind === 'paused',
    splitBrain: state.kind === 'split-brain' ? state.reason : null,
    stateStore: { ...health, lastError: health.lastError && maskPassword(health.lastError) },
    haManager: haStatus(coordinator),
    monitor: coordinator.fleetRole === null ? { mode: 'local', role: null } : { mode: 'shared', role: coordinator.fleetRole },
    endpointSource:
      source === null
        ? null
        : { description: source.description, lastError: source.lastError && maskPassword(source.lastError.message), lastAnswerAgoMs: source.lastAnswerAt === null ? null : Math.round(clock.now() - source.lastAnswerAt) },
    endpoints: coordinator.endpoints.map((e) => endpointStatus(e, coordinator.roleOf(e), coordinator.health(e), reads.lagBytes(e), e === shownPrimary(state), clock.now(), reads.lagFreshForMs)),
  }
}

function haStatus(coordinator: Coordinator): HaManagerStatus | null {
  const manager = coordinator.haManager
  if (manager === null) return null
  const report = coordinator.haReport
  const view = report?.view ?? null
  return {
    kind: manager.kind,
    ok: report !== null && report.error === null,
    leader: view?.leader ?? null,
    leaderEndpoint: report?.leader?.name ?? null,
    members: (view?.members ?? []).map((m) => ({ name: m.name, role: m.role, state: m.state, timeline: m.timeline, lagBytes: m.lagBytes })),
    lastError: report?.error ? maskPassword(report.error.message) : null,
    checkedAt: report?.checkedAt ?? null,
  }
}

function endpointStatus(e: Endpoint, role: EndpointRole, health: EndpointHealth, lagBytes: bigint | null, isPrimary: boolean, now: number, lagFreshForMs: number): EndpointStatus {
  const lastError = health.lastError
  return {
    name: e.name,
    host: e.host,
    port: e.port,
    role,
    breaker: health.breaker.state.kind,
    servesReads: !isPrimary && servesReads(e, health),
    readFence: health.readFence,
    lastProbeAt: e.lastProbeWallTime === null ? null : new Date(e.lastProbeWallTime).toISOString(),
    probeLatencyMs: e.lastProbe ? round(e.lastProbe.latencyMs) : null,
    // A down node's last lag says nothing about now; a detached standby's grows with time.
    lagMs: e.lastProbe && lastError === null ? round(e.lagMs(now, lagFreshForMs) ?? 0) : null,
    lsn: e.lastProbe?.lsn ?? null,
    timeline: e.lastProbe?.timeline ?? null,
    lastError: lastError ? maskPassword(lastError.message) : null,
    lagBytes: lagBytes === null ? null : Number(lagBytes),
    queries: { ...e.counters },
    totalCount: e.write.totalCount + e.read.totalCount,
    idleCount: e.write.idleCount + e.read.idleCount,
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}
