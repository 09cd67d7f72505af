import type { PoolConfig } from 'pg'
import { PoolSurface } from './pool-surface.js'
import type { Intent } from './request.js'
import type { RoutingHost } from './routing-host.js'

/**
 * `pool.reader` / `pool.writer`: a pg.Pool-compatible view of a FailoverPool bound to one intent
 * (replicas or the primary). It shares the FailoverPool's connections and topology; `end()` on a
 * view only stops that view being used (an ORM closing "its" pool must not close the others) —
 * `FailoverPool#end()` closes the connections.
 */
export class RoutedPool extends PoolSurface {
  static {
    Object.defineProperty(this, 'name', { value: 'RoutedPool' })
  }
  /** @internal */
  protected readonly host: RoutingHost
  /** @internal */
  protected readonly intent: Intent

  readonly #onEnd: (() => void) | undefined

  /** @internal created by FailoverPool#reader / #writer / #readerView; `onEnd` runs when the view is ended. */
  constructor(host: RoutingHost, intent: Intent, config: PoolConfig, onEnd?: () => void) {
    super(config)
    this.host = host
    this.intent = intent
    this.#onEnd = onEnd
    this.handleClientErrors()
  }

  /** Ending a view only stops it being used: the FailoverPool owns (and closes) the connections. */
  protected override async shutdown(): Promise<void> {
    this.#onEnd?.()
  }
}
