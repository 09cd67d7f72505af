import type { Endpoint } from '../endpoint/endpoint.js'
import type { ProbeResult } from '../endpoint/role-probe.js'

/** One watch on one standby: armed and disarmed, calling back when the standby is promoted. */
export interface Watch {
  start(): void
  stop(): void
  /** While urgent (no verified primary, or one in doubt), the standby is watched continuously (see NodeMonitor). */
  setUrgent(urgent: boolean): void
}

/**
 * Makes the watch of one endpoint (injected so the coordinator's rules run without sockets).
 * `onPromoted` gets the row that showed the promotion, where the watch has one.
 */
export type WatchFactory = (endpoint: Endpoint, onPromoted: (endpoint: Endpoint, row?: ProbeResult) => void) => Watch

/** The production factory: a subscription to the endpoint's shared monitor (health/node-monitor.ts). */
export const monitorWatchFactory: WatchFactory = (endpoint, onPromoted) => {
  let handle: ReturnType<Endpoint['monitor']['watchPromotion']> | null = null
  let urgent = false
  return {
    start() {
      if (handle !== null) return
      handle = endpoint.monitor.watchPromotion((row) => onPromoted(endpoint, row))
      handle.setUrgent(urgent)
    },
    stop() {
      handle?.stop()
      handle = null
    },
    setUrgent(next) {
      urgent = next
      handle?.setUrgent(next)
    },
  }
}

/** Keeps exactly one armed watch on each endpoint the coordinator names, and none elsewhere. */
export class Watches {
  readonly #watches = new Map<Endpoint, Watch>()
  #urgent = false
  /** A fleet follower watches nothing (the leader does); a fleet leader watches continuously for everyone. */
  #fleet: 'follower' | 'leader' | null = null

  constructor(
    private readonly factory: WatchFactory | null,
    private readonly onPromoted: (endpoint: Endpoint, row?: ProbeResult) => void,
    /** Watch continuously whatever the pool's state (`promotionWatch: 'always'`). */
    private readonly always = false,
  ) {}

  /** Arms watches on `standbys` and disarms every other (a no-op when watches are off). */
  sync(endpoints: readonly Endpoint[], isWatched: (endpoint: Endpoint) => boolean): void {
    if (this.factory === null) return
    for (const endpoint of endpoints) {
      if (isWatched(endpoint) && this.#fleet !== 'follower') {
        let watch = this.#watches.get(endpoint)
        if (!watch) {
          watch = this.factory(endpoint, this.onPromoted)
          watch.setUrgent(this.#effectiveUrgent())
          this.#watches.set(endpoint, watch)
        }
        watch.start()
      } else {
        this.#watches.get(endpoint)?.stop()
      }
    }
  }

  /** The pool's need to notice a promotion fast changed (no primary, or one in doubt): tell every watch. */
  setUrgent(urgent: boolean): void {
    if (this.#urgent === urgent) return
    this.#urgent = urgent
    for (const watch of this.#watches.values()) watch.setUrgent(this.#effectiveUrgent())
  }

  /**
   * This instance's part in a fleet's shared monitoring (null: none, or monitoring alone). A
   * follower's watches stop; the caller syncs them again when it leads or is alone.
   */
  setFleetRole(role: 'follower' | 'leader' | null): void {
    this.#fleet = role
    if (role === 'follower') this.stopAll()
    for (const watch of this.#watches.values()) watch.setUrgent(this.#effectiveUrgent())
  }

  #effectiveUrgent(): boolean {
    return this.#urgent || this.always || this.#fleet === 'leader'
  }

  /** Disarms and drops the watch of an endpoint removed from the pool. */
  forget(endpoint: Endpoint): void {
    this.#watches.get(endpoint)?.stop()
    this.#watches.delete(endpoint)
  }

  /** Disarms the watch of one endpoint (it just became the primary). */
  stop(endpoint: Endpoint): void {
    this.#watches.get(endpoint)?.stop()
  }

  /** Disarms every watch. */
  stopAll(): void {
    for (const watch of this.#watches.values()) watch.stop()
  }
}
