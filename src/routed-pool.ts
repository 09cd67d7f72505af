import type { PoolConfig } from 'pg'
import { type Intent, PoolSurface, type RoutingHost, promisify } from './pool-surface.js'

/**
 * `pool.reader` / `pool.writer`: a pg.Pool-compatible view of a FailoverPool bound to one intent
 * (replicas or the primary). It shares the FailoverPool's connections and topology; `end()` on a
 * view only stops that view being used (an ORM closing "its" pool must not close the others) —
 * `FailoverPool#end()` closes the connections.
 */
export class RoutedPool extends PoolSurface {
  /** @internal */
  protected readonly host: RoutingHost
  /** @internal */
  protected readonly intent: Intent

  /** @internal created by FailoverPool#reader / #writer */
  constructor(host: RoutingHost, intent: Intent, config: PoolConfig) {
    super(config)
    this.host = host
    this.intent = intent
  }

  /** Stops this view from being used; the second call fails as pg.Pool's does. */
  override end(): Promise<void>
  override end(callback: () => void): void
  override end(callback?: (err?: Error) => void): Promise<void> | void {
    const { result, cb } = promisify<void>(callback as ((err: Error | undefined) => void) | undefined)
    if (this.ending) {
      cb(new Error('Called end on pool more than once'))
      return result
    }
    ;(this as { ending: boolean }).ending = true
    ;(this as { ended: boolean }).ended = true
    setImmediate(() => cb(undefined))
    return result
  }
}
