import { describe, expect, it } from 'vitest'
import { withDeadline } from '../../src/clock.js'
import { FakeClock } from '../support/fake-clock.js'

describe('withDeadline', () => {
  it('rejects with the timeout error once the deadline passes on the given clock, and not before', async () => {
    const clock = new FakeClock()
    let settled: unknown = 'pending'
    const never = new Promise<number>(() => undefined)
    const raced = withDeadline(never, 100, () => new Error('took too long'), clock).then(
      (v) => (settled = v),
      (e: Error) => (settled = e.message),
    )
    clock.advance(99)
    await Promise.resolve()
    expect(settled).toBe('pending')
    clock.advance(1)
    await raced
    expect(settled).toBe('took too long')
  })

  it("answers with the work's outcome and clears its timer; a late rejection of the work is handled", async () => {
    const clock = new FakeClock()
    await expect(withDeadline(Promise.resolve(7), 100, () => new Error('late'), clock)).resolves.toBe(7)
    await expect(withDeadline(Promise.reject(new Error('failed')), 100, () => new Error('late'), clock)).rejects.toThrow('failed')
    expect(clock.pendingTimers).toBe(0)

    let reject!: (e: Error) => void
    const thawing = new Promise<never>((_, r) => (reject = r))
    const raced = withDeadline(thawing, 10, () => new Error('timeout'), clock)
    clock.advance(10)
    await expect(raced).rejects.toThrow('timeout')
    reject(new Error('the server thawed')) // must not surface as an unhandled rejection
    await new Promise((resolve) => setImmediate(resolve))
  })
})
