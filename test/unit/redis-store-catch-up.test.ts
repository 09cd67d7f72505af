import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { RedisStateStore } from '../../src/index.js'
import type { StateRecord } from '../../src/index.js'

/**
 * After a Redis restart the subscription and the command connection come back separately. When the
 * subscription is back first, the read that catches the watcher up (messages published meanwhile
 * are lost) fails on the command connection that is still down: it must be tried again until it
 * succeeds, not left to the next poll (`pollIntervalMs`, here a minute).
 */
class FakeRedis {
  /** The command connection (GET) is down. */
  down = false
  stored: StateRecord | null = null
  readonly subscriber = Object.assign(new EventEmitter(), {
    // The subscriber's own connection: up whenever it says 'ready'.
    subscribe: async (): Promise<void> => undefined,
    disconnect: (): void => undefined,
  })

  async get(): Promise<string | null> {
    if (this.down) throw new Error("Stream isn't writeable and enableOfflineQueue options is false")
    return this.stored && JSON.stringify(this.stored)
  }

  async eval(): Promise<unknown> {
    throw new Error('not used here')
  }

  duplicate(): FakeRedis['subscriber'] {
    return this.subscriber
  }
}

const record = (version: number, primary: string): StateRecord => ({ version, primary, systemId: null, timeline: null, epoch: version, updatedAt: new Date(0).toISOString(), reason: 'test' })

describe('RedisStateStore watch after a restart', () => {
  it('the catch-up read after resubscribing is retried until the command connection answers', async () => {
    const redis = new FakeRedis()
    redis.stored = record(1, 'node0')
    const store = new RedisStateStore({ client: redis, key: 'k', pollIntervalMs: 60_000 })
    const seen: StateRecord[] = []
    const stop = store.watch((r) => void seen.push(r))
    try {
      await expect.poll(() => seen.map((r) => r.version)).toEqual([1])

      // Redis restarts: the subscription drops, a change is made meanwhile (its message is lost).
      redis.down = true
      redis.subscriber.emit('close')
      redis.stored = record(2, 'node1')
      // The subscription is back before the command connection is.
      redis.subscriber.emit('ready')
      await new Promise((resolve) => setTimeout(resolve, 50))
      redis.down = false

      await expect.poll(() => seen.map((r) => r.version), { timeout: 2_000 }).toEqual([1, 2])
    } finally {
      stop()
    }
  })
})
