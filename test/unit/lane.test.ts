import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { cutClient, wasCut } from '../../src/endpoint/client-cut.js'
import { Lane, type LaneEvents, LaneRetiredError } from '../../src/endpoint/lane.js'

const quiet: LaneEvents = { connect() {}, acquire() {}, release() {}, remove() {}, error() {} }

/**
 * A client class for pg.Pool's `Client` option whose connect completes only when the test says
 * so (a node that accepted TCP and never answered, as a frozen server does). `withSocket: false`
 * makes a client without pg's `connection.stream`, as pg-native's.
 */
function hangingClients(withSocket: boolean) {
  const made: Array<EventEmitter & { destroyed: boolean; ended: boolean }> = []
  class Hanging extends EventEmitter {
    destroyed = false
    ended = false
    connection?: { stream: { destroy(): void } }
    #callback: ((err?: Error) => void) | null = null
    constructor() {
      super()
      if (withSocket) this.connection = { stream: { destroy: () => this.#close('destroyed') } }
      made.push(this)
    }
    connect(callback: (err?: Error) => void): void {
      this.#callback = callback
    }
    end(): Promise<void> {
      this.#close('ended')
      return Promise.resolve()
    }
    #close(how: 'destroyed' | 'ended'): void {
      if (how === 'destroyed') this.destroyed = true
      else this.ended = true
      const callback = this.#callback
      this.#callback = null
      callback?.(new Error('Connection terminated unexpectedly'))
      queueMicrotask(() => this.emit('end'))
    }
  }
  return { Client: Hanging, made }
}

describe('Lane', () => {
  it('keeps nothing for a replaced pool once it has ended: 10,000 refreshes leave one pool', async () => {
    const lane = new Lane('a', { max: 2 }, quiet)
    for (let i = 0; i < 10_000; i++) lane.refresh()
    await new Promise((resolve) => setImmediate(resolve))
    expect(lane.retainedPools).toBe(1)
    await lane.end()
    expect(lane.retainedPools).toBe(0)
  })

  it('a checkout a refresh aborts is told after the refresh returns, never from inside it', async () => {
    const { Client } = hangingClients(true)
    const lane = new Lane('a', { max: 1, Client } as never, quiet)
    const order: string[] = []
    lane.acquire((err) => order.push(err instanceof LaneRetiredError ? 'aborted' : `other: ${err?.message}`))
    lane.refresh()
    order.push('refresh returned')
    await new Promise((resolve) => setImmediate(resolve))
    expect(order).toEqual(['refresh returned', 'aborted'])
    await lane.end()
  })

  it('a cut reaches clients still connecting (a frozen node), and end() cuts them rather than waiting for a TCP timeout', async () => {
    const { Client, made } = hangingClients(true)
    const lane = new Lane('a', { max: 2, Client } as never, quiet)
    lane.acquire(() => undefined)
    lane.acquire(() => undefined)
    expect(made).toHaveLength(2)
    lane.cut()
    expect(made.every((c) => c.destroyed)).toBe(true)
    // And end(): a fresh connect under way is cut too, so end() completes at once.
    lane.acquire(() => undefined)
    expect(made).toHaveLength(3)
    await lane.end()
    expect(made[2]!.destroyed).toBe(true)
  })

  it('a client without a socket of pg\'s (pg-native) is cut by ending it, and marked: nothing it answers afterwards counts', () => {
    const { Client, made } = hangingClients(false)
    const lane = new Lane('a', { max: 1, Client } as never, quiet)
    lane.acquire(() => undefined)
    lane.cut()
    expect(made[0]!.ended).toBe(true)
    expect(wasCut(made[0] as never)).toBe(true)
    // Cutting twice is harmless.
    cutClient(made[0] as never)
  })
})
