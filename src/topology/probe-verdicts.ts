import type { Endpoint } from '../endpoint/endpoint.js'
import { type ProbeResult, roleOf } from '../endpoint/role-probe.js'
import { classifyError } from '../error-policy.js'
import { maskPassword } from '../errors.js'
import type { Watches } from '../health/watches.js'
import type { ProbeSent } from '../health/discovery.js'
import { type HaManager, type HaView, matchEndpoint } from '../ha/ha-manager.js'
import type { EndpointRole } from '../observe/status.js'
import type { ClusterKnowledge } from './cluster-knowledge.js'
import type { ProbeOutcome } from './election.js'
import type { Elector } from './elector.js'
import type { EndpointHealth } from './endpoint-health.js'
import type { EndpointEvents } from './endpoint-events.js'
import type { Evidence } from './evidence.js'
import { type WriterState, shownPrimary, writingTo } from './writer-state.js'

/** The coordinator's side of probe verdicts (the coordinator implements it). */
export interface VerdictHost {
  readonly endpoints: readonly Endpoint[]
  /** False for an endpoint removed from the pool: its late outcomes are ignored. */
  isMember(endpoint: Endpoint): boolean
  readonly haManager: HaManager | null
  readonly state: WriterState
  readonly cluster: ClusterKnowledge
  health(endpoint: Endpoint): EndpointHealth
  roleOf(endpoint: Endpoint): EndpointRole
  leave(endpoint: Endpoint, reason: string): void
  /** Replaces the writer state; entering `discovering` starts a round of probes newer than the change. */
  replaceState(next: WriterState, reason: string): void
  startRound(reason: string): void
  effect(fn: () => void): void
  /** Announces per-endpoint events. */
  readonly events: EndpointEvents
  replicaDown(endpoint: Endpoint, error: Error): void
  /** Probes `endpoint` now, outside any round, for a doubt of the current era. */
  confirm(endpoint: Endpoint): void
}

/**
 * What one probe outcome means (called inside a transition): the endpoint is up or down (once per
 * event), a doubt a request raised is settled, the primary we write to was demoted or failed its
 * verification (then the pool leaves it), a fenced old primary came back as a standby, a role
 * changed, a standby needs a promotion watch. Then the evidence is recorded and the elector decides.
 */
export class ProbeVerdicts {
  constructor(
    private readonly host: VerdictHost,
    private readonly evidence: Evidence,
    private readonly watches: Watches,
    private readonly elector: Elector,
    /** `warmStandbys`: keep a write session open on every standby a promotion may pick. */
    private readonly warmStandbys: boolean,
  ) {}

  /** One endpoint's probe settled (or was skipped). */
  probed(endpoint: Endpoint, outcome: ProbeOutcome, sent: ProbeSent): void {
    const host = this.host
    if (host.state.kind === 'ended' || outcome.kind === 'pending' || !host.isMember(endpoint)) return
    const health = host.health(endpoint)
    // Whatever ended this probe ends a half-open trial it held: the next probe may try.
    if (!sent.skipped) health.breaker.endTrial()
    if (!this.evidence.isLatest(endpoint, sent.startedAt)) return
    if (!sent.skipped) {
      const before = host.roleOf(endpoint)
      const doubt = health.doubt
      if (outcome.kind === 'ok') {
        const { change, news } = health.probeAnswered(sent.era)
        // A late answer from before the endpoint's last change proves nothing about now.
        if (change === 'stale') return this.#stillInDoubt(endpoint)
        host.events.health(endpoint, news, 'probe succeeded')
        this.#answered(endpoint, outcome.probe, sent.startedAt, before, doubt?.reason ?? null)
      } else if (classifyError(outcome.error) === 'connection') {
        const { change, news } = health.probeFailed(outcome.error, sent.era)
        if (change === 'stale') return this.#stillInDoubt(endpoint)
        host.events.health(endpoint, news, outcome.error.message)
        this.#unreachable(endpoint, outcome.error, sent.startedAt, change === 'down')
      } else {
        health.probeRefused(outcome.error, sent.era)
      }
    }
    this.evidence.record(endpoint, outcome, sent.startedAt)
    host.effect(() => this.watches.sync([endpoint], (e) => this.#isWatchedStandby(e)))
    if (this.warmStandbys) host.effect(() => endpoint.write.keepWarm(this.#isWatchedStandby(endpoint)))
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

  /** `doubted`: what a request saw that this probe was confirming, if anything (it goes into the reason). */
  #answered(endpoint: Endpoint, probe: ProbeResult, startedAt: number, before: EndpointRole, doubted: string | null): void {
    const host = this.host
    const health = host.health(endpoint)
    const role = roleOf(probe)
    health.saidReadOnly = role !== 'primary'
    const minTimeline = host.cluster.minTimeline
    const onCurrentTimeline = minTimeline === null || probe.timeline === null || probe.timeline >= minTimeline
    // A fenced old primary is safe again as a reader only once it is a standby of our cluster on the
    // current timeline (rewound): restarted as a standby as it was, it holds writes the cluster lost.
    if (role === 'standby' && health.fenced && onCurrentTimeline && (host.cluster.systemId === null || probe.systemId === host.cluster.systemId)) health.fenced = false
    // A former primary stays one (no reads while it does not stream, see readFenceOf) until a probe
    // finds it streaming on the current timeline.
    if (role === 'primary') health.formerPrimary = true
    else if (role === 'standby' && probe.receiving && onCurrentTimeline) health.formerPrimary = false
    health.readFence = readFenceOf(probe, health, minTimeline)
    if (shownPrimary(host.state) === endpoint && role !== 'primary' && startedAt >= this.evidence.changedAt) {
      host.leave(endpoint, `demoted: ${endpoint.name} is ${role} now${doubted ? ` (confirming: ${doubted})` : ''}`)
      host.startRound(`${endpoint.name} is ${role} now`)
    }
    const now = host.roleOf(endpoint)
    if (before !== 'unknown' && now !== before && now !== 'unverified-primary') {
      host.events.endpoint('roleChange', endpoint, before, now, `probe: in recovery ${probe.inRecovery}, read-only ${probe.readOnly}`)
    }
  }

  /**
   * The cluster's timeline rose (a primary on a newer one was elected, or the store says so): a
   * standby whose latest answer showed it on an older timeline and not streaming, or streaming that
   * older timeline, stops serving reads now, not at its next probe — the pool knows already that it
   * may have replayed past the fork, or follows a node the cluster left. Its next probe that finds it streaming lifts the fence. (Probing it again at once would
   * find the same: a WAL receiver takes seconds to reconnect to a new primary.)
   */
  timelineRaised(): void {
    const host = this.host
    for (const e of host.endpoints) {
      const health = host.health(e)
      const probe = this.evidence.latestAnswer(e) ?? e.lastProbe
      if (probe === null || health.readFence !== null) continue
      health.readFence = readFenceOf(probe, health, host.cluster.minTimeline)
    }
  }

  #unreachable(endpoint: Endpoint, error: Error, startedAt: number, justDown: boolean): void {
    const s = this.host.state
    const writing = writingTo(s)
    if (writing === endpoint && startedAt >= this.evidence.changedAt) {
      // The primary (or the suspect) failed its verification: the pool leaves it.
      this.host.leave(endpoint, `connection failure on ${endpoint.name}: ${maskPassword(error.message)}`)
      if (s.kind === 'verified') this.host.startRound(`${endpoint.name} failed its probe`)
    } else if (s.kind === 'adopting' && s.candidate === endpoint && startedAt >= this.evidence.changedAt) {
      // The node being adopted stopped answering while its promotion hook ran: it does not take
      // writes when the hook ends (a hook that times out on a frozen node would otherwise hand it
      // the writes); discovery goes on, and the hook's end finds the pool moved on.
      this.host.replaceState({ kind: 'discovering', loss: s.loss, suspect: null, refusal: null }, `${endpoint.name} failed its probe while being adopted`)
    } else if (justDown && writing !== endpoint) {
      // A replica that stopped answering gets fresh pools; one that hangs has its statements cut.
      this.host.replicaDown(endpoint, error)
    }
  }

  /** A stale answer settles no doubt: make sure a probe of the current era is on its way. */
  #stillInDoubt(endpoint: Endpoint): void {
    if (this.host.health(endpoint).doubt !== null) this.host.confirm(endpoint)
  }

  #isWatchedStandby(e: Endpoint): boolean {
    const health = this.host.health(e)
    return health.lastError === null && e.lastProbe !== null && e.lastProbe.inRecovery && !health.otherCluster && e !== shownPrimary(this.host.state)
  }
}

/**
 * Why a node that answered `probe` may not serve reads, or null. A standby whose WAL receiver
 * streams an older timeline than `minTimeline` follows a node the cluster left: it will never get
 * what the primary commits. A standby on an older timeline with no WAL receiver streaming cannot
 * follow the primary: its data may have diverged, and it will not catch up. The same for a former primary back as a standby that does
 * not stream, whatever timeline the pool knows of: the new primary may be out of the pool's sight
 * (refusing it, behind a proxy that holds).
 */
function readFenceOf(probe: ProbeResult, health: EndpointHealth, minTimeline: number | null): string | null {
  if (roleOf(probe) !== 'standby') return null
  // A leader of an older version publishes probes without the field (fleet monitoring).
  const received = probe.receivedTimeline ?? null
  if (probe.receiving && minTimeline !== null && received !== null && received < minTimeline) {
    return `streams timeline ${received} from a primary the cluster left (the primary is on ${minTimeline}): it will never replay what is committed there (promoted by hand, not repointed?)`
  }
  if (probe.receiving) return null
  if (minTimeline !== null && probe.timeline !== null && probe.timeline < minTimeline) {
    return `on timeline ${probe.timeline}, older than the primary's ${minTimeline}, and not streaming: it cannot follow the cluster (a diverged old primary?)`
  }
  return health.formerPrimary ? 'a former primary back as a standby that does not stream: it may hold writes the cluster lost' : null
}
