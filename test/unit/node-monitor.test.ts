import { EventEmitter } from 'node:events'
import type pg from 'pg'
import { describe, expect, it } from 'vitest'
import { NodeMonitor } from '../../src/health/node-monitor.js'
import { FakeClock } from '../support/fake-clock.js'

/**
 * A node behind a proxy that can hold statements: while `holding`, a statement sent is kept
 * unanswered (until its session is cut); otherwise it is answered at once with a primary's row.
 */
class HeldNode {
  /** Whether a cut client emits 'end' at once (a custom Client) or later, as pg's does when its socket closes. */
  constructor(private readonly endsSynchronously = false) {}

  holding = false
  sessions = 0
  statements = 0

  client(): pg.Client {
    const node = this
    const pending = new Set<(err: Error) => void>()
    let cut = false
    const client = Object.assign(new EventEmitter(), {
      connection: {
        stream: {
          destroy: () => {
            cut = true
            for (const fail of pending) fail(new Error('Connection terminated unexpectedly'))
            pending.clear()
            if (node.endsSynchronously) client.emit('end')
            else setImmediate(() => client.emit('end'))
          },
        },
      },
      connect(callback: (err?: Error | null) => void) {
        node.sessions++
        queueMicrotask(() => callback(null))
      },
      query() {
        node.statements++
        return new Promise((resolve, reject) => {
          if (cut) return reject(new Error('Connection terminated'))
          if (node.holding) return void pending.add(reject)
          resolve({ rows: [{ in_recovery: false, read_only: false, system_id: '1', timeline: 1, receiving: true, lsn: '0/1', lag_ms: 0, server_version: 150000 }] })
        })
      },
      end: () => {
        client.connection.stream.destroy()
        return Promise.resolve()
      },
    })
    return client as unknown as pg.Client
  }
}

async function settle(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve()
}

describe('NodeMonitor', () => {
  it('a probe whose caller gave up is not run later: the next probe after a proxy releases its hold is answered at once', async () => {
    // Simulator seed 60045021: a probe timed out while a proxy held the session's statement; its
    // deadline cut that session, but the request stayed queued, so a fresh session ran it with no
    // deadline left to cut it. The proxy held that statement too, and every probe after queued
    // behind a statement nobody waited for: the pool left a healthy primary.
    const clock = new FakeClock()
    const node = new HeldNode()
    const monitor = new NodeMonitor('n1', () => node.client(), clock, { windowMs: 1_000, checkMs: 5, retryMs: 100 })
    monitor.hold()

    await expect(monitor.probe(200)).resolves.toMatchObject({ inRecovery: false }) // a working session
    node.holding = true
    const given = monitor.probe(200).catch((err: Error) => err)
    await settle()
    clock.advance(200)
    expect(await given).toMatchObject({ code: 'ETIMEDOUT' })
    await settle()

    node.holding = false // the proxy lets statements through again
    const next = monitor.probe(200)
    await settle()
    let answered = false
    void next.then(() => (answered = true), () => undefined)
    await settle()
    expect(answered).toBe(true)
    await expect(next).resolves.toMatchObject({ inRecovery: false })
    // The given-up probe was never sent again: the working session, the held one, the next one.
    expect(node.statements).toBe(3)
    monitor.close()
  })

  it("a probe that times out on a client that emits 'end' while being cut fails with the timeout, not a TypeError", async () => {
    const clock = new FakeClock()
    const node = new HeldNode(true)
    const monitor = new NodeMonitor('n1', () => node.client(), clock, { windowMs: 1_000, checkMs: 5, retryMs: 100 })
    monitor.hold()
    await monitor.probe(200)
    node.holding = true
    const given = monitor.probe(200).catch((err: Error) => err)
    await settle()
    clock.advance(200)
    expect(await given).toMatchObject({ code: 'ETIMEDOUT' })
    monitor.close()
  })
})
