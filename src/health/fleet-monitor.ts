import { randomBytes } from 'node:crypto'
import { hostname } from 'node:os'
import { type Clock, type TimerHandle, jitter, randomOf, withDeadline } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import type { ProbeResult } from '../endpoint/role-probe.js'
import { maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import type { SharedMonitorStore } from '../state/state-store.js'
import type { ProbeOutcome } from '../topology/election.js'

/**
 * What this instance does for the fleet's monitoring: `leader` holds the lease, probes and watches
 * every node and publishes what it sees; `follower` holds no monitoring connection and follows what
 * is published; `alone` monitors on its own (the store is unreachable, or has not answered yet).
 */
export type FleetRole = 'leader' | 'follower' | 'alone'

/** Settings of shared monitoring, in milliseconds. */
export interface FleetSettings {
  /** How long the lease lasts without renewal: a crashed leader is replaced within about this long. */
  readonly leaseTtlMs: number
  /** How long a follower's scheduled health check waits for a published probe before probing itself. */
  readonly calmWaitMs: number
  /** After a published promotion notice, how long a follower's rounds wait for the leader's probes before probing on their own. */
  readonly noticeWaitMs: number
  /** Otherwise while not calm (a failure of its own), how long they wait: a watch window and a few of the leader's discovery rounds. */
  readonly urgentWaitMs: number
  /**
   * How long a follower that published a doubt waits to hear anything from the leader before it
   * takes the leader for gone (frozen, killed, cut off from the store) and probes on its own.
   */
  readonly answerWaitMs: number
}

/** The pool's side, as the fleet monitor sees it (the coordinator implements it). */
export interface FleetHost {
  /** True once this pool verified a primary (before that, its probes are its own: a startup). */
  readonly everVerified: boolean
  /** True while the pool has a verified primary in no doubt: its health checks may wait for the leader. */
  readonly calm: boolean
  /** A probe published by the leader (an observation of `endpoint` that began at clock ms `startedAt`). */
  observedElsewhere(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void
  /** The leader noticed `endpoint`'s promotion at clock ms `noticedAt`. */
  promotionNoticed(endpoint: Endpoint, noticedAt: number): void
  /** A follower saw `endpoint` fail (the leader confirms it with a probe of its own). */
  confirmForFleet(endpoint: Endpoint): void
  /** This instance's part changed: watches and monitor sessions follow it. */
  fleetRoleChanged(role: FleetRole): void
}

/** One message on the store's observation channel. */
type FleetMessage =
  | { readonly v: 1; readonly from: string; readonly kind: 'probe'; readonly endpoint: string; readonly at: number; readonly probe: ProbeResult }
  | { readonly v: 1; readonly from: string; readonly kind: 'probe'; readonly endpoint: string; readonly at: number; readonly error: { readonly message: string; readonly code: string | null } }
  | { readonly v: 1; readonly from: string; readonly kind: 'promoted' | 'doubt' | 'heard'; readonly endpoint: string; readonly at: number }

interface Seen {
  readonly outcome: ProbeOutcome
  /** Clock ms (this process's clock) at which the observation began. */
  readonly startedAt: number
}

interface Taker {
  readonly endpoint: Endpoint
  readonly freshSince: number
  readonly resolve: (seen: Seen | null) => void
}

/**
 * Shared monitoring for a fleet of instances over one cluster (`monitor: 'shared'`): one instance
 * at a time holds a lease in the state store and runs the probes and promotion watches; it
 * publishes every probe outcome and promotion notice on the store's channel. The others hold no
 * monitoring connection: they take what is published as their probes (through {@link take}), and
 * follow promotion notices at once. Their own failures still start a local probe at once (a confirm
 * is never taken from the leader), and ask the leader to look; the rounds that then look for a new
 * primary take the leader's probes, so a failover never makes the whole fleet probe every node. The lease is renewed every third of its TTL; followers try to take
 * it every quarter, so a crashed leader is replaced within about `leaseTtlMs`. A store that fails
 * makes every instance monitor alone until it answers again.
 */
export class FleetMonitor {
  readonly holder = `${hostname()}:${process.pid}:${randomBytes(4).toString('hex')}`
  #role: FleetRole = 'alone'
  #host: FleetHost | null = null
  #endpoints: readonly Endpoint[] = []
  #timer: TimerHandle | null = null
  #unsubscribe: (() => void) | null = null
  #stopped = false
  readonly #seen = new Map<Endpoint, Seen>()
  readonly #takers = new Set<Taker>()
  /** Until when (clock ms) a follower expects the leader's probes after a promotion notice. */
  #expectUntil = Number.NEGATIVE_INFINITY
  /** A follower: when (clock ms) it last heard the leader (any probe, notice or answer). */
  #leaderHeardAt = Number.NEGATIVE_INFINITY
  /** A follower: its doubt went unanswered, so it probes on its own until the leader is heard again. */
  #leaderSilent = false
  #answerTimer: TimerHandle | null = null
  /** A follower: the last promotion notice received, mapped onto this clock (its probe row takes the same time). */
  #lastNotice: { readonly endpoint: Endpoint; readonly at: number; readonly startedAt: number } | null = null
  /** A leader: the confirm it runs for the fleet's doubts of each endpoint (clock ms asked), one at a time. */
  readonly #confirming = new Map<Endpoint, number>()
  /** A leader: when (clock ms) it last answered a doubt of each endpoint. */
  readonly #answeredAt = new Map<Endpoint, number>()
  /** A leader: wall ms of the promotion it just noticed, per endpoint, until the row that showed it is published. */
  readonly #noticedAt = new Map<Endpoint, number>()

  constructor(
    private readonly store: SharedMonitorStore,
    private readonly settings: FleetSettings,
    private readonly clock: Clock,
  ) {}

  /** This instance's part now. */
  get role(): FleetRole {
    return this.#role
  }

  /** Starts following the channel and competing for the lease. */
  start(host: FleetHost, endpoints: readonly Endpoint[]): void {
    this.#host = host
    this.#endpoints = endpoints
    this.#unsubscribe = this.store.subscribe((message) => this.#received(message))
    this.#tick()
  }

  /** The pool's endpoints changed: messages about the others are ignored from now on. */
  setEndpoints(endpoints: readonly Endpoint[]): void {
    this.#endpoints = endpoints
    for (const e of [...this.#seen.keys()]) if (!endpoints.includes(e)) this.#seen.delete(e)
  }

  /** Stops; a leader gives the lease up so another instance takes over at once. */
  async stop(): Promise<void> {
    this.#stopped = true
    if (this.#timer !== null) this.clock.clearTimeout(this.#timer)
    this.#timer = null
    if (this.#answerTimer !== null) this.clock.clearTimeout(this.#answerTimer)
    this.#answerTimer = null
    this.#unsubscribe?.()
    this.#unsubscribe = null
    for (const taker of this.#takers) taker.resolve(null)
    this.#takers.clear()
    if (this.#role === 'leader') {
      const bound = this.settings.leaseTtlMs
      await withDeadline(this.store.releaseLease(this.holder), bound, () => new Error('lease release timed out'), this.clock).catch(() => undefined)
    }
  }

  /**
   * A probe outcome published by the leader for `endpoint`, begun after `freshSince` (clock ms), or
   * null: probe locally now. Only a follower's scheduled rounds wait for one (its confirms and its
   * startup probe are its own); it waits while the pool is calm or a promotion notice came in, and
   * probes itself when nothing arrives in time (the leader is gone: another takes the lease soon).
   */
  take(endpoint: Endpoint, freshSince: number, kind: 'round' | 'confirm'): Promise<Seen | null> {
    const host = this.#host
    if (this.#role !== 'follower' || kind === 'confirm' || host === null || !host.everVerified || this.#leaderSilent) return Promise.resolve(null)
    const seen = this.#seen.get(endpoint)
    if (seen !== undefined && seen.startedAt >= freshSince) return Promise.resolve(seen)
    // Calm: the leader's next health check. Otherwise (a published promotion, or this instance's
    // own failure, already confirmed by a probe of its own): the leader's probes come within its
    // discovery interval, so a whole fleet never probes every node at once — up to urgentWaitMs
    // (noticeWaitMs after a notice), and at once when the leader or the store goes away.
    const waitMs = host.calm ? this.settings.calmWaitMs : Math.max(this.#expectUntil - this.clock.now(), this.settings.urgentWaitMs)
    return new Promise((resolve) => {
      const timer = this.clock.setTimeout(() => {
        topologyLog('shared monitor: nothing published of %s in %d ms: probing it here', endpoint.name, Math.round(waitMs))
        finish(null)
      }, waitMs)
      const taker: Taker = { endpoint, freshSince, resolve: (s) => finish(s) }
      const finish = (s: Seen | null): void => {
        if (!this.#takers.delete(taker)) return
        this.clock.clearTimeout(timer)
        resolve(s)
      }
      this.#takers.add(taker)
    })
  }

  /** A probe this instance ran: a leader publishes it. */
  probedLocally(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void {
    if (this.#role !== 'leader' || outcome.kind === 'pending') return
    const confirming = this.#confirming.get(endpoint)
    if (confirming !== undefined && startedAt >= confirming) this.#confirming.delete(endpoint)
    // A row a watch window returned was evaluated at the window's end, long after it was asked for:
    // that is what followers must compare with what they know.
    const evaluatedAt = outcome.kind === 'ok' && outcome.probe.evaluatedAt !== undefined ? Math.max(startedAt, outcome.probe.evaluatedAt) : startedAt
    let at = Date.now() - (this.clock.now() - evaluatedAt)
    // The row that showed the promotion is published just after the notice, evaluated a moment
    // before it. A node out of recovery stays so while it runs (a restart would have broken the
    // session that brought the row), so the row still holds at the notice: stamped with the
    // notice's time, followers take it as the fresh probe the notice asks for, instead of waiting
    // for the leader's next probe of the node.
    const noticedAt = this.#noticedAt.get(endpoint)
    if (noticedAt !== undefined && outcome.kind === 'ok' && !outcome.probe.inRecovery) {
      this.#noticedAt.delete(endpoint)
      if (noticedAt >= at && noticedAt - at <= this.settings.answerWaitMs) at = noticedAt
    }
    const code = outcome.kind === 'failed' ? (outcome.error as { code?: unknown }).code : null
    this.#publish(
      outcome.kind === 'ok'
        ? { v: 1, from: this.holder, kind: 'probe', endpoint: endpoint.name, at, probe: { ...outcome.probe, evaluatedAt: undefined } }
        : { v: 1, from: this.holder, kind: 'probe', endpoint: endpoint.name, at, error: { message: maskPassword(outcome.error.message), code: typeof code === 'string' ? code : null } },
    )
  }

  /** This instance noticed a promotion: a leader tells the fleet. */
  promotionNoticedLocally(endpoint: Endpoint): void {
    if (this.#role !== 'leader') return
    const at = Date.now()
    this.#noticedAt.set(endpoint, at)
    this.#publish({ v: 1, from: this.holder, kind: 'promoted', endpoint: endpoint.name, at })
  }

  /**
   * A request of this instance saw `endpoint` fail: a follower asks the leader to look too, and
   * expects to hear from it within `answerWaitMs`. A leader that stays silent (frozen, killed just
   * now, cut off from the store) is not waited for: this instance probes on its own until it is
   * heard again, instead of waiting out the lease.
   */
  doubtedLocally(endpoint: Endpoint): void {
    if (this.#role !== 'follower') return
    this.#publish({ v: 1, from: this.holder, kind: 'doubt', endpoint: endpoint.name, at: Date.now() })
    if (this.#answerTimer !== null || this.#leaderSilent) return
    const askedAt = this.clock.now()
    this.#answerTimer = this.clock.setTimeout(() => {
      this.#answerTimer = null
      if (this.#stopped || this.#role !== 'follower' || this.#leaderHeardAt >= askedAt) return
      topologyLog('shared monitor: the leader did not answer a doubt of %s in %d ms: probing here until it is heard again', endpoint.name, this.settings.answerWaitMs)
      this.#leaderSilent = true
      for (const taker of [...this.#takers]) taker.resolve(null)
    }, this.settings.answerWaitMs)
  }

  #publish(message: FleetMessage): void {
    this.store.publish(JSON.stringify(message)).catch(() => undefined)
  }

  #received(raw: string): void {
    const host = this.#host
    if (this.#stopped || host === null) return
    let message: FleetMessage
    try {
      message = JSON.parse(raw) as FleetMessage
    } catch {
      return
    }
    if (message === null || typeof message !== 'object' || message.v !== 1 || message.from === this.holder || typeof message.at !== 'number') return
    const endpoint = this.#endpoints.find((e) => e.name === message.endpoint)
    if (!endpoint) return
    if (message.kind === 'doubt') {
      if (this.#role === 'leader') this.#doubted(endpoint)
      return
    }
    if (this.#role === 'leader') return // another instance's leftovers from before the handover
    this.#leaderHeardAt = this.clock.now()
    this.#leaderSilent = false
    if (message.kind === 'heard') return
    // Mapped onto this process's clock: how long ago, by the wall clock, it began. (The row that
    // showed a promotion carries the notice's time: it maps onto the same instant.)
    const notice = this.#lastNotice
    const startedAt = notice !== null && notice.endpoint === endpoint && notice.at === message.at ? notice.startedAt : this.clock.now() - Math.max(0, Date.now() - message.at)
    if (message.kind === 'promoted') {
      this.#expectUntil = this.clock.now() + this.settings.noticeWaitMs
      this.#lastNotice = { endpoint, at: message.at, startedAt }
      host.promotionNoticed(endpoint, startedAt)
      return
    }
    if (message.kind !== 'probe') return
    const outcome: ProbeOutcome =
      'probe' in message ? { kind: 'ok', probe: message.probe } : { kind: 'failed', error: Object.assign(new Error(String(message.error?.message)), message.error?.code ? { code: message.error.code } : {}) }
    endpoint.recordProbe(outcome.kind === 'ok' ? outcome.probe : null, message.at)
    const seen: Seen = { outcome, startedAt }
    const previous = this.#seen.get(endpoint)
    if (previous === undefined || previous.startedAt <= startedAt) this.#seen.set(endpoint, seen)
    host.observedElsewhere(endpoint, outcome, startedAt)
    for (const taker of [...this.#takers]) if (taker.endpoint === endpoint && startedAt >= taker.freshSince) taker.resolve(seen)
  }

  /**
   * A follower doubts `endpoint`: the leader says it heard (at most twice per answer wait, however
   * many followers doubt at once) and confirms it with one probe at a time for the whole fleet.
   */
  #doubted(endpoint: Endpoint): void {
    const now = this.clock.now()
    const answered = this.#answeredAt.get(endpoint)
    if (answered === undefined || now - answered >= this.settings.answerWaitMs / 2) {
      this.#answeredAt.set(endpoint, now)
      this.#publish({ v: 1, from: this.holder, kind: 'heard', endpoint: endpoint.name, at: Date.now() })
    }
    const asked = this.#confirming.get(endpoint)
    // A confirm that never reported (a probe outlives its deadline only by a bug) is asked again after one.
    if (asked !== undefined && now - asked < this.settings.noticeWaitMs) return
    this.#confirming.set(endpoint, now)
    this.#host?.confirmForFleet(endpoint)
  }

  #tick(): void {
    if (this.#stopped) return
    const ttl = this.settings.leaseTtlMs
    const leaseCall = withDeadline(this.store.acquireLease(this.holder, ttl), ttl / 2, () => new Error(`lease call took longer than ${ttl / 2} ms`), this.clock)
    leaseCall.then(
      (held) => this.#become(held ? 'leader' : 'follower', null),
      (err: unknown) => this.#become('alone', err instanceof Error ? err : new Error(String(err))),
    )
  }

  #become(role: FleetRole, error: Error | null): void {
    if (this.#stopped) return
    const ttl = this.settings.leaseTtlMs
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = null
      this.#tick()
    }, jitter(role === 'leader' ? ttl / 3 : ttl / 4, 0.2, randomOf(this.clock)))
    if (role === this.#role) return
    topologyLog('shared monitor: %s -> %s%s', this.#role, role, error ? ` (${maskPassword(error.message)})` : '')
    this.#role = role
    this.#leaderSilent = false
    this.#confirming.clear()
    this.#noticedAt.clear()
    // No longer following: whoever waited for the leader probes on its own now.
    if (role !== 'follower') for (const taker of [...this.#takers]) taker.resolve(null)
    this.#host?.fleetRoleChanged(role)
  }
}
