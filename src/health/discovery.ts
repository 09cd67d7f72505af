import type { Clock, TimerHandle } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import type { ProbeResult } from '../endpoint/role-probe.js'
import type { HaManager, HaView } from '../ha/ha-manager.js'
import type { ProbeOutcome } from '../topology/election.js'
import { asError } from '../errors.js'

/** One discovery round: a probe of every endpoint, in parallel. */
export interface Round {
  readonly id: number
  readonly reason: string
  /** Clock ms the round began. */
  readonly startedAt: number
  /** Probes of this round not settled yet. */
  pending: number
}

/** When a probe was sent, and the endpoint's era then; `skipped` when its breaker let no probe through. */
export interface ProbeSent {
  /** Clock ms the probe was sent (it may predate the round when joined). */
  readonly startedAt: number
  /** The endpoint's staleness token when the probe was sent. */
  readonly era: number
  /** True when no probe was sent (the breaker is open): the outcome only tells the election not to wait. */
  readonly skipped: boolean
}

/** Who hears about a round: the coordinator. */
export interface RoundListener {
  /** Whether `endpoint` may be probed in this round; otherwise its outcome is a skip, at once. */
  mayProbe(endpoint: Endpoint): boolean
  /** One endpoint's probe settled (or was skipped). */
  probed(endpoint: Endpoint, outcome: ProbeOutcome, sent: ProbeSent): void
  /** Every probe of `round` settled. Called for the latest round only: a superseded round ends silently. */
  settled(round: Round): void
  /** The HA manager answered (or failed); `startedAt` is when it was asked. */
  viewed(result: { readonly view: HaView } | { readonly error: Error }, startedAt: number): void
}

/**
 * Where probe outcomes may come from besides this pool's own probes: a fleet's shared monitor
 * (health/fleet-monitor.ts). `take` answers with an outcome observed elsewhere that began after
 * `freshSince`, or null (probe locally now); `probedLocally` hears this pool's own outcomes.
 */
export interface ProbeSource {
  take(endpoint: Endpoint, freshSince: number, kind: 'round' | 'confirm'): Promise<{ readonly outcome: ProbeOutcome; readonly startedAt: number } | null>
  probedLocally(endpoint: Endpoint, outcome: ProbeOutcome, startedAt: number): void
}

/** Probes observed elsewhere, and how this pool weighs them (built by topology/fleet-bridge.ts). */
export interface SharedProbes {
  readonly probes: ProbeSource
  /** The era an outcome that began at `startedAt` (clock ms) belongs to. */
  eraAt(endpoint: Endpoint, startedAt: number): number
  /** False for the node the pool writes to: only its own probe may say that node failed. */
  takesFailureOf(endpoint: Endpoint): boolean
}

interface InFlight {
  readonly kind: 'round' | 'confirm'
  readonly startedAt: number
  /** The endpoint's era when the probe was asked for: it is sent in this era or a later one. */
  readonly era: number
  readonly result: Promise<{ outcome: ProbeOutcome; sent: ProbeSent }>
}

const SKIPPED: ProbeOutcome = { kind: 'failed', error: new Error('circuit breaker open: not probed') }

/**
 * Discovery rounds and their schedule. A round probes every endpoint in parallel and reports each
 * outcome as it arrives; it never decides anything. A new round may start while an older one still
 * waits for a hanging node: the older one is superseded (its late outcomes are still reported, for
 * health, but it never settles), and each endpoint has at most one probe in flight — a new round
 * joins it when it was sent after the round's `freshSince`, and otherwise sends a fresh one after it.
 * So nothing urgent ever waits behind a probe of a dead or frozen node.
 */
export class Discovery {
  #current: Round | null = null
  #nextId = 1
  #timer: TimerHandle | null = null
  #stopped = false
  readonly #inFlight = new Map<Endpoint, InFlight>()
  #asking = false

  constructor(
    /** The endpoints now (the list may change between rounds). */
    private readonly endpointsNow: () => readonly Endpoint[],
    private readonly probeTimeoutMs: number,
    private readonly clock: Clock,
    private readonly listener: RoundListener,
    /** The endpoint's staleness token now, stamped on each probe as it is sent. */
    private readonly eraOf: (endpoint: Endpoint) => number,
    /** Asked alongside every round, one request at a time (never waited for). */
    private readonly ha: HaManager | null = null,
    /** Outcomes observed elsewhere (a fleet's shared monitor), and the era such an outcome belongs to. */
    private readonly source: SharedProbes | null = null,
  ) {}

  /** The latest round, settled or not (null before the first). */
  get current(): Round | null {
    return this.#current
  }

  /** True while the latest round has probes outstanding. */
  get running(): boolean {
    return this.#current !== null && this.#current.pending > 0
  }

  /** True while a probe of `endpoint` is in flight (a round's or a confirm's). */
  probing(endpoint: Endpoint): boolean {
    return this.#inFlight.has(endpoint)
  }

  /** True while a round is scheduled. */
  get scheduled(): boolean {
    return this.#timer !== null
  }

  /**
   * Starts a round now, superseding any running one and cancelling the scheduled one. Probes sent
   * before `freshSince` (clock ms) are not trusted: those endpoints are probed again.
   */
  start(reason: string, freshSince: number, skipInFlight = false): Round {
    this.cancelSchedule()
    // A health check leaves out a node whose last probe is still out (a frozen node): that probe
    // reports when it ends, and this round never waits for it.
    const endpoints = skipInFlight ? this.endpointsNow().filter((e) => !this.#inFlight.has(e)) : this.endpointsNow()
    const round: Round = { id: this.#nextId++, reason, startedAt: this.clock.now(), pending: endpoints.length }
    this.#current = round
    if (this.#stopped) return round
    this.#askHaManager()
    for (const endpoint of endpoints) {
      // A skip is dated no later than a probe of the endpoint still in flight (a confirm, a node's
      // first probes), so it never shadows that probe's answer when it comes.
      const skippedAt = Math.min(round.startedAt, this.#inFlight.get(endpoint)?.startedAt ?? round.startedAt)
      const probing = this.listener.mayProbe(endpoint)
        ? this.#probe(endpoint, freshSince)
        : Promise.resolve({ outcome: SKIPPED, sent: { startedAt: skippedAt, era: this.eraOf(endpoint), skipped: true } })
      void probing.then(({ outcome, sent }) => {
        if (this.#stopped) return
        round.pending--
        this.listener.probed(endpoint, outcome, sent)
        if (round.pending === 0 && this.#current === round) this.listener.settled(round)
      })
    }
    // Nothing to probe (every node's last probe is still out): settled as soon as it started.
    if (endpoints.length === 0) {
      void Promise.resolve().then(() => {
        if (!this.#stopped && this.#current === round) this.listener.settled(round)
      })
    }
    return round
  }

  /**
   * Probes one endpoint now, outside any round (whatever its breaker says): a request saw it fail
   * and the coordinator wants a verdict. Joins a probe sent after `freshSince`, else follows the
   * one in flight.
   */
  confirm(endpoint: Endpoint, freshSince: number): void {
    if (this.#stopped) return
    void this.#probe(endpoint, freshSince, this.eraOf(endpoint), 'confirm').then(({ outcome, sent }) => {
      if (!this.#stopped) this.listener.probed(endpoint, outcome, sent)
    })
  }

  /**
   * Runs `start(reason, …)` after `delayMs` unless a round is already scheduled, then `started`
   * (the coordinator schedules the next one there: a round that waits for a slow node — a standby
   * answering at the end of its watch window, a frozen one — never holds up the next).
   * `skipInFlight`: see {@link start}.
   */
  schedule(delayMs: number, reason: string, freshSince: () => number, started?: () => void, skipInFlight = false): void {
    if (this.#stopped || this.#timer !== null) return
    this.#timer = this.clock.setTimeout(() => {
      this.#timer = null
      this.start(reason, freshSince(), skipInFlight)
      started?.()
    }, delayMs)
  }

  /** Cancels the scheduled round, if any. */
  cancelSchedule(): void {
    if (this.#timer !== null) this.clock.clearTimeout(this.#timer)
    this.#timer = null
  }

  /** Stops scheduling and reporting; probes in flight finish unheard. */
  stop(): void {
    this.#stopped = true
    this.cancelSchedule()
  }

  #askHaManager(): void {
    const ha = this.ha
    if (ha === null || this.#asking) return
    this.#asking = true
    const startedAt = this.clock.now()
    ha.view(this.probeTimeoutMs).then(
      (view) => {
        this.#asking = false
        if (!this.#stopped) this.listener.viewed({ view }, startedAt)
      },
      (err: unknown) => {
        this.#asking = false
        if (!this.#stopped) this.listener.viewed({ error: asError(err) }, startedAt)
      },
    )
  }

  /** A probe of `endpoint` sent after `freshSince` and in era `minEra` or later: the one in flight if it qualifies, else a new one after it. */
  #probe(endpoint: Endpoint, freshSince: number, minEra = -1, kind: InFlight['kind'] = 'round'): InFlight['result'] {
    const inFlight = this.#inFlight.get(endpoint)
    // A confirm is this pool's own probe, at once: it never joins a round's wait for a shared outcome.
    const joinable = this.source === null || kind === 'round' || inFlight?.kind === 'confirm'
    if (inFlight && joinable && inFlight.startedAt >= freshSince && inFlight.era >= minEra) return inFlight.result
    // The probe in flight may predate what the caller knows: send another after it (the endpoint's
    // monitor session runs one statement at a time anyway).
    // (Not behind a round waiting for a shared outcome, though: that wait may last a health interval.)
    const previous = joinable ? (inFlight?.result ?? Promise.resolve(null)) : Promise.resolve(null)
    const startedAt = this.clock.now()
    const result = previous.then(async () => {
      const shared = this.source && !this.#stopped ? await this.source.probes.take(endpoint, freshSince, kind) : null
      if (shared && (shared.outcome.kind !== 'failed' || this.source!.takesFailureOf(endpoint))) {
        return { outcome: shared.outcome, sent: { startedAt: shared.startedAt, era: this.source!.eraAt(endpoint, shared.startedAt), skipped: false } }
      }
      const sent: ProbeSent = { startedAt: this.clock.now(), era: this.eraOf(endpoint), skipped: false }
      const outcome = await this.#runProbe(endpoint)
      this.source?.probes.probedLocally(endpoint, outcome, sent.startedAt)
      return { outcome, sent }
    })
    const entry: InFlight = { kind, startedAt, era: this.eraOf(endpoint), result }
    this.#inFlight.set(endpoint, entry)
    void result.then(() => {
      if (this.#inFlight.get(endpoint) === entry) this.#inFlight.delete(endpoint)
    })
    return result
  }

  async #runProbe(endpoint: Endpoint): Promise<ProbeOutcome> {
    // A probe chained behind one that hung may come due after stop(): it must not open a session.
    if (this.#stopped) return { kind: 'failed', error: new Error('discovery stopped') }
    try {
      const probe: ProbeResult = await endpoint.probe(this.probeTimeoutMs)
      return { kind: 'ok', probe }
    } catch (err) {
      return { kind: 'failed', error: asError(err) }
    }
  }
}
