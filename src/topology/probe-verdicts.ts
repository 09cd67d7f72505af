import type { Endpoint } from '../endpoint/endpoint.js'
import { type ProbeResult, roleOf } from '../endpoint/role-probe.js'
import { classifyError, isTimeout } from '../error-policy.js'
import { maskPassword } from '../errors.js'
import type { Watches } from '../health/watches.js'
import { type HaManager, type HaView, matchEndpoint } from '../ha/ha-manager.js'
import type { EndpointRole } from '../observe/status.js'
import type { ClusterKnowledge } from './cluster-knowledge.js'
import type { ProbeOutcome } from './election.js'
import type { Elector } from './elector.js'
import type { Evidence } from './evidence.js'
import type { Reachability } from './reachability.js'
import type { Standing } from './standing.js'
import { type WriterState, shownPrimary, writingTo } from './writer-state.js'

/** The coordinator's side of probe verdicts (the coordinator implements it). */
export interface VerdictHost {
  readonly endpoints: readonly Endpoint[]
  readonly haManager: HaManager | null
  readonly state: WriterState
  readonly cluster: ClusterKnowledge
  standing(endpoint: Endpoint): Standing
  roleOf(endpoint: Endpoint): EndpointRole
  leave(endpoint: Endpoint, reason: string): void
  startRound(reason: string): void
}

/**
 * What one probe outcome means: the endpoint is up or down (once per event), the primary we write
 * to was demoted or failed its verification (then the pool leaves it), a fenced old primary came
 * back as a standby, a role changed, a standby needs a promotion watch. Then the evidence is
 * recorded and the elector decides.
 */
export class ProbeVerdicts {
  constructor(
    private readonly host: VerdictHost,
    private readonly reachability: Reachability,
    private readonly evidence: Evidence,
    private readonly watches: Watches,
    private readonly elector: Elector,
  ) {}

  /** One endpoint's probe settled; `startedAt` is when that probe was sent (clock ms). */
  probed(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void {
    if (this.host.state.kind === 'ended' || outcome.kind === 'pending') return
    if (!this.evidence.isLatest(endpoint, startedAt)) return
    const before = this.host.roleOf(endpoint)
    if (outcome.kind === 'ok') {
      // A late answer from before the endpoint went down proves nothing about now.
      if (!this.reachability.answered(endpoint, startedAt)) return
      this.#answered(endpoint, outcome.probe, startedAt, before)
    } else if (classifyError(outcome.error) === 'connection') {
      const verdict = this.reachability.failed(endpoint, outcome.error, startedAt)
      this.#unreachable(endpoint, outcome.error, startedAt, verdict === 'down')
    } else {
      this.reachability.refused(endpoint, outcome.error)
    }
    this.evidence.record(endpoint, outcome, startedAt)
    this.watches.sync([endpoint], (e) => this.#isWatchedStandby(e))
    this.elector.decide()
  }

  /**
   * The HA manager answered: its leader (mapped to an endpoint) becomes evidence for the elector's
   * tie-break; at the very first discovery (no primary ever verified, nothing stored) it is also
   * the node heard first. An error just leaves the last answer to go stale.
   */
  viewed(result: { readonly view: HaView } | { readonly error: Error }, startedAt: number): void {
    const host = this.host
    if (host.state.kind === 'ended') return
    const view = 'view' in result ? result.view : null
    const member = view?.members.find((m) => m.name === view.leader)
    const ha = host.haManager
    const name = member && ha ? (ha.endpointOf?.(member, host.endpoints) ?? matchEndpoint(member, host.endpoints)) : null
    const leader = host.endpoints.find((e) => e.name === name) ?? null
    this.evidence.ha = { at: startedAt, view, error: 'error' in result ? result.error : null, leader, checkedAt: new Date().toISOString() }
    const firstDiscovery = host.state.kind === 'discovering' && host.cluster.epoch === 0 && host.cluster.storedPrimary === null
    if (leader && firstDiscovery && this.evidence.mustHear === null && !this.evidence.heard(leader)) this.evidence.mustHear = leader
    this.elector.decide()
  }

  #answered(endpoint: Endpoint, probe: ProbeResult, startedAt: number, before: EndpointRole): void {
    const host = this.host
    const standing = host.standing(endpoint)
    if (standing.promotedAt !== null && startedAt >= standing.promotedAt) standing.promotedAt = null
    const role = roleOf(probe)
    standing.saidReadOnly = role !== 'primary'
    // A fenced old primary that was rewound and rejoined as a standby of our cluster is safe again as a reader.
    if (role === 'standby' && standing.fenced && (host.cluster.systemId === null || probe.systemId === host.cluster.systemId)) standing.fenced = false
    if (shownPrimary(host.state) === endpoint && role !== 'primary' && startedAt >= this.evidence.changedAt) {
      host.leave(endpoint, `demoted: ${endpoint.name} is ${role} now`)
      host.startRound(`${endpoint.name} is ${role} now`)
    }
    const now = host.roleOf(endpoint)
    if (before !== 'unknown' && now !== before && now !== 'unverified-primary') {
      this.reachability.emitEndpoint('roleChange', endpoint, before, now, `probe: in recovery ${probe.inRecovery}, read-only ${probe.readOnly}`)
    }
  }

  #unreachable(endpoint: Endpoint, error: Error, startedAt: number, justDown: boolean): void {
    const s = this.host.state
    const writing = writingTo(s)
    if (writing === endpoint && startedAt >= this.evidence.changedAt) {
      // The primary (or the suspect) failed its verification: the pool leaves it.
      this.host.leave(endpoint, `connection failure on ${endpoint.name}: ${maskPassword(error.message)}`)
      if (s.kind === 'verified') this.host.startRound(`${endpoint.name} failed its probe`)
    } else if (justDown && writing !== endpoint) {
      // A replica that stopped answering gets fresh pools; one that hangs has its statements cut.
      endpoint.retire(isTimeout(error))
    }
  }

  #isWatchedStandby(e: Endpoint): boolean {
    const standing = this.host.standing(e)
    return standing.lastError === null && e.lastProbe !== null && e.lastProbe.inRecovery && !standing.otherCluster && e !== shownPrimary(this.host.state)
  }
}
