import type { Endpoint } from '../endpoint/endpoint.js'
import type { HaView } from '../ha/ha-manager.js'
import { type ProbeResult, roleOf } from '../endpoint/role-probe.js'
import { type EndpointAnswer, maskPassword } from '../errors.js'
import type { Candidate, ProbeOutcome } from './election.js'
import type { EndpointHealth } from './endpoint-health.js'

/** The HA manager's last answer, and which endpoint it names as leader. */
export interface HaReport {
  /** Clock ms the manager was asked. */
  readonly at: number
  readonly view: HaView | null
  readonly error: Error | null
  /** The endpoint holding the leader key (null when none, or none of ours). */
  readonly leader: Endpoint | null
  /** Wall-clock time of the answer (ISO 8601), for status(). */
  readonly checkedAt: string
}

/**
 * What the probes have shown: each endpoint's latest outcome and when its probe was sent. Only
 * probes sent since the last topology event count for an election (older ones are `pending`), so a
 * decision is never made on what a node said before it failed, was promoted or was left.
 */
export class Evidence {
  readonly #latest = new Map<Endpoint, { readonly outcome: ProbeOutcome; readonly startedAt: number }>()

  /** Endpoints removed from the pool: nothing is kept of them, and none is waited for. */
  forget(removed: readonly Endpoint[]): void {
    for (const e of removed) this.#latest.delete(e)
    if (this.mustHear !== null && removed.includes(this.mustHear)) this.mustHear = null
  }
  /** Clock ms of the last topology event: probes sent before it are not evidence any more. */
  changedAt = Number.NEGATIVE_INFINITY
  /** An endpoint that must answer before anything is elected: the stored hint at start, a promoted node. */
  mustHear: Endpoint | null = null
  /** The HA manager's last answer (null before the first, or without a manager). */
  ha: HaReport | null = null

  /** The HA manager's leader, if its last answer came after the last topology event; else null. */
  freshLeader(): Endpoint | null {
    const ha = this.ha
    return ha !== null && ha.at >= this.changedAt ? ha.leader : null
  }

  /** Probes sent before `now` stop counting. */
  invalidate(now: number): void {
    this.changedAt = now
  }

  /** True when a probe sent at `startedAt` is no older than the outcome already held. */
  isLatest(endpoint: Endpoint, startedAt: number): boolean {
    const held = this.#latest.get(endpoint)
    return !held || held.startedAt <= startedAt
  }

  /** True when `endpoint` has answered (or failed) a probe sent since the last topology event. */
  heard(endpoint: Endpoint): boolean {
    const held = this.#latest.get(endpoint)
    return held !== undefined && held.startedAt >= this.changedAt
  }

  /** The endpoint's latest answer, however old (a promotion watch's row included), or null when its latest probe failed or none answered. */
  latestAnswer(endpoint: Endpoint): ProbeResult | null {
    const held = this.#latest.get(endpoint)
    return held?.outcome.kind === 'ok' ? held.outcome.probe : null
  }

  /** Records an outcome (the caller checked {@link isLatest}). */
  record(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void {
    this.#latest.set(endpoint, { outcome, startedAt })
    if (this.mustHear === endpoint && startedAt >= this.changedAt) this.mustHear = null
  }

  /** Each endpoint as the election sees it; one whose promotion hook was refused never qualifies. */
  candidates(endpoints: readonly Endpoint[], healthOf: (e: Endpoint) => EndpointHealth): Candidate[] {
    return endpoints.map((e) => ({ name: e.name, outcome: this.#outcomeOf(e, healthOf) }))
  }

  /** True while some endpoint has not answered a probe sent since the last topology event. */
  anyPending(endpoints: readonly Endpoint[], healthOf: (e: Endpoint) => EndpointHealth): boolean {
    // Without building the candidates: settle() asks on every state change.
    return endpoints.some((e) => this.#outcomeOf(e, healthOf).kind === 'pending')
  }

  /** An endpoint's outcome in this round: refused by its hook, its answer to a probe sent since the last topology event, else pending. */
  #outcomeOf(e: Endpoint, healthOf: (e: Endpoint) => EndpointHealth): Candidate['outcome'] {
    if (healthOf(e).refusedByHook) return REFUSED
    const held = this.#latest.get(e)
    return held && held.startedAt >= this.changedAt ? held.outcome : PENDING
  }

  /** What each endpoint last answered, for NoPrimaryError (no passwords). */
  answers(endpoints: readonly Endpoint[], healthOf: (e: Endpoint) => EndpointHealth): EndpointAnswer[] {
    return endpoints.map((e) => {
      if (healthOf(e).otherCluster) return { endpoint: e.name, role: 'mismatched-system', error: 'system identifier differs from the cluster' }
      const outcome = this.#latest.get(e)?.outcome
      if (outcome?.kind === 'ok') return { endpoint: e.name, role: roleOf(outcome.probe) }
      if (outcome?.kind === 'failed') return { endpoint: e.name, role: 'unreachable', error: maskPassword(outcome.error.message) }
      return { endpoint: e.name, role: 'unknown' }
    })
  }
}

const PENDING: ProbeOutcome = { kind: 'pending' }
const REFUSED: ProbeOutcome = { kind: 'failed', error: new Error('its promotion hook failed (onPromoteFailure: refuse); use switchTo() to retry') }
