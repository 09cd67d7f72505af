/**
 * Records what the pool said during the run (failover, splitBrain, endpoint and state-store
 * events, idle-client errors), each with the suite's wall-clock time of arrival.
 */
import type { SplitBrainEvent } from '../../src/advanced.js'
import type { FailoverEvent, FailoverPool } from '../../src/index.js'
import { now, waitUntil } from './clock.js'

export interface Timed<T> {
  readonly at: number
  readonly event: T
}

export interface EndpointNote {
  readonly endpoint: string
  readonly reason: string
}

export class PoolObserver {
  readonly failovers: Array<Timed<FailoverEvent>> = []
  readonly splitBrains: Array<Timed<SplitBrainEvent>> = []
  readonly downs: Array<Timed<EndpointNote>> = []
  readonly ups: Array<Timed<EndpointNote>> = []
  readonly storeErrors: Array<Timed<{ operation: string; failure: string }>> = []
  idleErrors = 0
  readonly #off: Array<() => void> = []

  constructor(
    private readonly pool: FailoverPool,
    /** Called with every event in words (debugging: CHAOS_DEBUG=1). */
    private readonly trace?: (line: string) => void,
  ) {
    this.#on('failover', (e: FailoverEvent) => this.failovers.push({ at: now(), event: e }))
    this.#on('splitBrain', (e: SplitBrainEvent) => this.splitBrains.push({ at: now(), event: e }))
    if (trace) {
      for (const name of ['failover', 'splitBrain', 'endpointDown', 'endpointUp', 'roleChange', 'breakerStateChange', 'stateStoreError']) {
        this.#on(name, (e: unknown) => trace(`pool ${name}: ${JSON.stringify(e)}`))
      }
    }
    this.#on('endpointDown', (e: { endpoint: string; reason: string }) => this.downs.push({ at: now(), event: { endpoint: e.endpoint, reason: e.reason } }))
    this.#on('endpointUp', (e: { endpoint: string; reason: string }) => this.ups.push({ at: now(), event: { endpoint: e.endpoint, reason: e.reason } }))
    this.#on('stateStoreError', (e: { operation: string; failure: string }) => this.storeErrors.push({ at: now(), event: { operation: e.operation, failure: e.failure } }))
    // pg.Pool semantics: an idle client's error is emitted here; the pool has already acted on it.
    this.#on('error', () => {
      this.idleErrors++
    })
    this.#onReader('error', () => {
      this.idleErrors++
    })
  }

  /** The first failover to `to` at or after `since`, waiting up to `timeoutMs`; null if none came. */
  async failoverTo(to: string, since: number, timeoutMs: number): Promise<Timed<FailoverEvent> | null> {
    const find = (): Timed<FailoverEvent> | undefined => this.failovers.find((f) => f.at >= since && f.event.to === to)
    await waitUntil(() => find() !== undefined, timeoutMs, 10)
    return find() ?? null
  }

  detach(): void {
    for (const off of this.#off.splice(0)) off()
  }

  #on(event: string, listener: (...args: any[]) => void): void {
    const pool = this.pool as unknown as NodeJS.EventEmitter
    pool.on(event, listener)
    this.#off.push(() => pool.off(event, listener))
  }

  #onReader(event: string, listener: (...args: any[]) => void): void {
    const reader = this.pool.reader as unknown as NodeJS.EventEmitter
    reader.on(event, listener)
    this.#off.push(() => reader.off(event, listener))
  }
}
