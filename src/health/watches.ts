import type { Clock } from '../clock.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import { PromotionWatch, type PromotionWatchSettings } from './promotion-watch.js'

/** One watch on one standby: armed and disarmed, calling back when the standby is promoted. */
export interface Watch {
  start(): void
  stop(): void
}

/** Makes the watch of one endpoint (injected so the coordinator's rules run without sockets). */
export type WatchFactory = (endpoint: Endpoint, onPromoted: (endpoint: Endpoint) => void) => Watch

/** The production factory: a {@link PromotionWatch} session per standby. */
export function promotionWatchFactory(settings: PromotionWatchSettings, clock: Clock): WatchFactory {
  return (endpoint, onPromoted) => new PromotionWatch(endpoint, settings, clock, onPromoted)
}

/** Keeps exactly one armed watch on each endpoint the coordinator names, and none elsewhere. */
export class Watches {
  readonly #watches = new Map<Endpoint, Watch>()

  constructor(
    private readonly factory: WatchFactory | null,
    private readonly onPromoted: (endpoint: Endpoint) => void,
  ) {}

  /** Arms watches on `standbys` and disarms every other (a no-op when watches are off). */
  sync(endpoints: readonly Endpoint[], isWatched: (endpoint: Endpoint) => boolean): void {
    if (this.factory === null) return
    for (const endpoint of endpoints) {
      if (isWatched(endpoint)) {
        let watch = this.#watches.get(endpoint)
        if (!watch) {
          watch = this.factory(endpoint, this.onPromoted)
          this.#watches.set(endpoint, watch)
        }
        watch.start()
      } else {
        this.#watches.get(endpoint)?.stop()
      }
    }
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
