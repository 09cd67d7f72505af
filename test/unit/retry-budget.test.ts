import { describe, expect, it } from 'vitest'
import { RetryBudget } from '../../src/surface/retry-budget.js'
import { FakeClock } from '../support/fake-clock.js'

describe('RetryBudget', () => {
  it('allows a burst, then refills at the sustained rate', () => {
    const clock = new FakeClock()
    const budget = new RetryBudget({ burst: 3, perSecond: 2 }, clock)
    expect([budget.trySpend(), budget.trySpend(), budget.trySpend(), budget.trySpend()]).toEqual([true, true, true, false])
    clock.advance(499)
    expect(budget.trySpend()).toBe(false)
    clock.advance(1)
    expect(budget.trySpend()).toBe(true)
    expect(budget.trySpend()).toBe(false)
    clock.advance(60_000)
    expect(budget.available).toBe(3)
  })
})
