import type { Endpoint } from '../endpoint/endpoint.js'
import { maskPassword } from '../errors.js'
import type { SharedProbes } from '../health/discovery.js'
import type { FleetHost, FleetMonitor, FleetRole } from '../health/fleet-monitor.js'
import type { Watches } from '../health/watches.js'
import type { ProbeOutcome } from './election.js'
import type { EndpointHealth } from './endpoint-health.js'
import type { ProbeVerdicts } from './probe-verdicts.js'
import { type WriterState, writingTo } from './writer-state.js'

/** What the bridge needs of the coordinator. */
export interface FleetBridgeHost {
  readonly endpoints: readonly Endpoint[]
  readonly state: WriterState
  readonly everVerified: boolean
  health(endpoint: Endpoint): EndpointHealth
  transition(change: () => void): void
  effect(fn: () => void): void
  confirm(endpoint: Endpoint): void
  startRound(reason: string): void
  /** A failure seen of `endpoint` in era `era`: a doubt that a probe of our own confirms. */
  raiseDoubt(endpoint: Endpoint, reason: string, era: number): void
  promotionNoticed(endpoint: Endpoint, noticedAt?: number): void
}

/**
 * The pool's side of a fleet's shared monitoring (`monitor: 'shared'`, health/fleet-monitor.ts):
 * what the leader publishes enters the coordinator's verdicts as probes of its own, in the era they
 * began; this instance's part in the fleet sets its watches and monitor sessions.
 */
export class FleetBridge implements FleetHost {
  constructor(
    private readonly host: FleetBridgeHost,
    private readonly verdicts: ProbeVerdicts,
    private readonly watches: Watches,
    readonly monitor: FleetMonitor,
  ) {}

  get everVerified(): boolean {
    return this.host.everVerified
  }

  /** True while a primary is verified and in no doubt. */
  get calm(): boolean {
    const s = this.host.state
    return s.kind === 'verified' && this.host.health(s.primary).doubt === null
  }

  /** Discovery's source of probes observed elsewhere (see Discovery's `source`). */
  get probeSource(): SharedProbes {
    return {
      probes: this.monitor,
      eraAt: (e, at) => this.host.health(e).eraAt(at),
      takesFailureOf: (e) => writingTo(this.host.state) !== e,
    }
  }

  /**
   * The fleet's leader published a probe outcome: weighed like one of ours, in the era it began —
   * except that the leader failing to reach the node we write to only raises a doubt, which our own
   * probe confirms: a leader cut off from the primary must not take the whole fleet off it.
   */
  observedElsewhere(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void {
    const { host } = this
    if (host.state.kind === 'ended' || host.state.kind === 'booting') return
    const era = host.health(endpoint).eraAt(startedAt)
    if (outcome.kind === 'failed' && writingTo(host.state) === endpoint) {
      const reason = `the shared monitor's leader could not reach ${endpoint.name}: ${maskPassword(outcome.error.message)}`
      return host.transition(() => host.raiseDoubt(endpoint, reason, era))
    }
    host.transition(() => this.verdicts.probed(endpoint, outcome, { startedAt, era, skipped: false }))
  }

  promotionNoticed(endpoint: Endpoint, noticedAt: number): void {
    this.host.promotionNoticed(endpoint, noticedAt)
  }

  /** A follower saw `endpoint` fail: the leader confirms it with a probe of its own. */
  confirmForFleet(endpoint: Endpoint): void {
    if (this.host.state.kind === 'ended') return
    this.host.transition(() => this.host.confirm(endpoint))
  }

  /**
   * This instance's part in the fleet changed: a follower watches nothing and holds no monitor
   * session; a leader watches every standby continuously; alone, the pool monitors as configured.
   * Leading or alone, a round probes every node now (and arms the watches it needs).
   */
  fleetRoleChanged(role: FleetRole): void {
    const { host } = this
    if (host.state.kind === 'ended') return
    host.transition(() => {
      this.watches.setFleetRole(role === 'alone' ? null : role)
      host.effect(() => {
        for (const e of host.endpoints) e.holdMonitorSession(role !== 'follower')
      })
      if (role !== 'follower' && host.state.kind !== 'booting') host.startRound(`shared monitor: ${role}`)
    })
  }
}
