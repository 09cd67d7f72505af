import type { Endpoint } from '../endpoint/endpoint.js'
import { maskPassword } from '../errors.js'
import type { StateStoreHealth } from '../state/state-keeper.js'

/**
 * What the pool believes about one endpoint:
 * `primary` (verified, receives writes), `standby` (in recovery), `read-only` (out of recovery but
 * refusing writes), `unverified-primary` (writable but not adopted: not yet elected), `fenced`
 * (writable but stale or disputed: never written to), `mismatched-system` (another cluster),
 * `unreachable` (last probe or connection failed), `unknown` (not probed yet).
 */
export type EndpointRole =
  | 'primary'
  | 'standby'
  | 'read-only'
  | 'unverified-primary'
  | 'fenced'
  | 'mismatched-system'
  | 'unreachable'
  | 'unknown'

/** One endpoint in {@link FailoverPoolStatus}. */
export interface EndpointStatus {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly role: EndpointRole
  /** Circuit breaker: `closed` (in use), `open` (skipped until its wait ends), `half-open` (one trial probe next). */
  readonly breaker: 'closed' | 'open' | 'half-open'
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
  readonly endpoints: readonly EndpointStatus[]
}

/** Assembles the status snapshot from the facade's state. */
export function buildStatus(input: {
  primary: string | null
  mode: FailoverPoolStatus['mode']
  epoch: number
  failovers: number
  systemId: string | null
  timeline: number | null
  discovering: boolean
  lastElection: string
  topology: 'physical' | 'logical'
  paused: boolean
  splitBrain: string | null
  stateStore: StateStoreHealth
  endpoints: ReadonlyArray<{ endpoint: Endpoint; role: EndpointRole; lagBytes: bigint | null }>
}): FailoverPoolStatus {
  return {
    primary: input.primary,
    ready: input.primary !== null,
    mode: input.mode,
    epoch: input.epoch,
    failovers: input.failovers,
    systemId: input.systemId,
    timeline: input.timeline,
    discovering: input.discovering,
    lastElection: maskPassword(input.lastElection),
    topology: input.topology,
    paused: input.paused,
    splitBrain: input.splitBrain,
    stateStore: { ...input.stateStore, lastError: input.stateStore.lastError && maskPassword(input.stateStore.lastError) },
    endpoints: input.endpoints.map(({ endpoint: e, role, lagBytes }) => ({
      name: e.name,
      host: e.host,
      port: e.port,
      role,
      breaker: e.breaker.state.kind,
      lastProbeAt: e.lastProbeWallTime === null ? null : new Date(e.lastProbeWallTime).toISOString(),
      probeLatencyMs: e.lastProbe ? round(e.lastProbe.latencyMs) : null,
      // A down node's last lag says nothing about now.
      lagMs: e.lastProbe && e.lastError === null ? round(e.lastProbe.lagMs) : null,
      lsn: e.lastProbe?.lsn ?? null,
      timeline: e.lastProbe?.timeline ?? null,
      lastError: e.lastError ? maskPassword(e.lastError.message) : null,
      lagBytes: lagBytes === null ? null : Number(lagBytes),
      queries: { ...e.counters },
      totalCount: e.write.totalCount + e.read.totalCount,
      idleCount: e.write.idleCount + e.read.idleCount,
    })),
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100
}
