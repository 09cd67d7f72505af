import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { FileStateStore, RedisStateStore, StateStoreError } from '../../src/index.js'
import type { RedisLike } from '../../src/state/redis-client.js'
import { FakeClock } from '../support/fake-clock.js'

const update = { primary: 'a', systemId: 'S1', timeline: 1, epoch: 1, updatedAt: '2026-01-01T00:00:00.000Z', reason: 'test' }
const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

/** Lets pending promise and fs callbacks run (no timer of the store's fires unless the fake clock moves). */
const tick = () => new Promise<void>((resolve) => setImmediate(resolve))

describe('state stores run on the injected clock', () => {
  it('FileStateStore: a lock held elsewhere times out when the fake clock passes lockTimeoutMs, not before', async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'pgfp-clock-'))
    dirs.push(dir)
    const file = path.join(dir, 'state.json')
    // A live process's lock: the lock directory holding its token (fresh mtime).
    mkdirSync(`${file}.lockdir`)
    writeFileSync(path.join(`${file}.lockdir`, 'token-12345-live'), '{"pid":12345}')
    const clock = new FakeClock()
    const store = new FileStateStore(file, { lockTimeoutMs: 2_000, clock })
    let outcome: unknown = 'pending'
    void store.compareAndSet(null, update).then(
      () => (outcome = 'saved'),
      (err: unknown) => (outcome = err),
    )
    // Real time passes (fs calls complete), the fake clock stands still: the store keeps waiting.
    await new Promise((resolve) => setTimeout(resolve, 100))
    expect(outcome).toBe('pending')
    // Now the fake clock moves; the store's retry pauses end only as it does. Each step also lets
    // the real file-system calls between two pauses complete.
    for (let i = 0; i < 1_000 && outcome === 'pending'; i++) {
      clock.advance(50)
      await new Promise((resolve) => setTimeout(resolve, 2))
    }
    expect(outcome instanceof StateStoreError && outcome.failure).toBe('timeout')
    expect(clock.now()).toBeGreaterThanOrEqual(2_000)
  })

  it('RedisStateStore: a command that never answers fails with timeout at commandTimeoutMs on the fake clock', async () => {
    const never = new Promise<never>(() => undefined)
    const client: RedisLike = { eval: () => never, get: () => never, duplicate: () => ({ subscribe: () => never, on: () => undefined, disconnect: () => undefined }) }
    const clock = new FakeClock()
    const store = new RedisStateStore({ client, commandTimeoutMs: 500, clock })
    let outcome: unknown = 'pending'
    void store.load().then(
      () => (outcome = 'loaded'),
      (err: unknown) => (outcome = err),
    )
    clock.advance(499)
    await tick()
    expect(outcome).toBe('pending')
    clock.advance(1)
    await tick()
    expect((outcome as { failure?: string }).failure).toBe('timeout')
  })
})
