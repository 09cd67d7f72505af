import { classifyError } from '../error-policy.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { roleOf } from '../endpoint/role-probe.js'
import type { EndpointRole } from '../observe/status.js'

/**
 * Everything the coordinator holds about one endpoint beyond what its probes found: one record per
 * endpoint, written only by the coordinator, instead of a set per concern.
 */
export interface Standing {
  /** Clock ms since which the endpoint has been unreachable, or null while it answers. */
  downSince: number | null
  /** Clock ms of the probe that last found it answering (null before any). */
  upSince: number | null
  /** The last error it gave us (connection or configuration), cleared by a successful probe. */
  lastError: Error | null
  /** Writable but stale (older timeline) or disputed: never written to. */
  fenced: boolean
  /** Reports another cluster's system identifier: never used. */
  otherCluster: boolean
  /** Clock ms its promotion was noticed, until a later probe says what it is now; no reads meanwhile. */
  promotedAt: number | null
  /** Its `onPromote` hook failed under `onPromoteFailure: 'refuse'`: never used until `switchTo()`. */
  refusedByHook: boolean
  /** Taken out of service by `drain()` until `undrain()`. */
  drained: boolean
  /**
   * The node has said it takes no writes (a statement answered 25006, or a probe found it
   * read-only or in recovery) since it was last found writable. Leaving such a node lets its
   * running statements answer (see {@link Endpoint.retire}).
   */
  saidReadOnly: boolean
}

/** A fresh standing: nothing known yet. */
export function newStanding(): Standing {
  return { downSince: null, upSince: null, lastError: null, fenced: false, otherCluster: false, promotedAt: null, refusedByHook: false, drained: false, saidReadOnly: false }
}

/** The role `status()` and `roleChange` show for an endpoint. */
export function endpointRole(endpoint: Endpoint, standing: Standing, isPrimary: boolean): EndpointRole {
  if (standing.otherCluster) return 'mismatched-system'
  if (standing.fenced) return 'fenced'
  if (isPrimary) return 'primary'
  const error = standing.lastError
  if (error !== null && (endpoint.lastProbe === null || classifyError(error) === 'connection')) return 'unreachable'
  if (endpoint.lastProbe === null) return 'unknown'
  const role = roleOf(endpoint.lastProbe)
  return role === 'primary' ? 'unverified-primary' : role
}

/** True when the endpoint may serve reads as a replica (the primary is checked by the caller). */
export function servesReads(endpoint: Endpoint, standing: Standing): boolean {
  return (
    standing.lastError === null &&
    standing.promotedAt === null &&
    !standing.drained &&
    !standing.otherCluster &&
    !standing.fenced &&
    endpoint.lastProbe !== null &&
    endpoint.lastProbe.inRecovery &&
    endpoint.breaker.allowsTraffic
  )
}

/**
 * The error pg.Pool would have given a caller, for fail-fast mode: the last connection or
 * configuration error of the node the pool lost (`preferred`), else of the first endpoint that has
 * one — the driver's own error object, unchanged. Null when none has.
 */
export function nodeErrorOf(endpoints: readonly Endpoint[], standingOf: (e: Endpoint) => Standing, preferred: string | null): Error | null {
  const ordered = [...endpoints].sort((a, b) => Number(b.name === preferred) - Number(a.name === preferred))
  for (const e of ordered) {
    const error = standingOf(e).lastError
    if (error !== null && classifyError(error) !== 'statement') return error
  }
  return null
}
