import { describe, expect, it } from 'vitest'
import { CircuitBreaker, DEFAULT_BREAKER } from '../../src/endpoint/breaker.js'
import { FakeClock } from '../support/fake-clock.js'

const noJitter = () => 0.5 // factor 0.8 + 0.4 * 0.5 = 1.0

function breaker(clock = new FakeClock()) {
  return { clock, b: new CircuitBreaker(DEFAULT_BREAKER, clock, noJitter) }
}

describe('CircuitBreaker', () => {
  it('opens after three consecutive failures, not before; a success in between resets the count', () => {
    const { b } = breaker()
    expect(b.recordFailure()).toBeNull()
    expect(b.recordFailure()).toBeNull()
    b.recordSuccess()
    expect(b.recordFailure()).toBeNull()
    expect(b.recordFailure()).toBeNull()
    expect(b.recordFailure()).toEqual({ from: 'closed', to: 'open' })
    expect(b.allowsTraffic).toBe(false)
  })

  it('turns half-open lazily after halfOpenAfterMs and allows exactly one trial', () => {
    const { b, clock } = breaker()
    for (let i = 0; i < 3; i++) b.recordFailure()
    clock.advance(9_999)
    expect(b.state.kind).toBe('open')
    expect(b.tryTrial()).toBe(false)
    clock.advance(1)
    expect(b.refresh()).toEqual({ from: 'open', to: 'half-open' })
    expect(b.refresh()).toBeNull()
    expect(b.state.kind).toBe('half-open')
    expect(b.allowsTraffic).toBe(false)
    expect(b.tryTrial()).toBe(true)
    expect(b.tryTrial()).toBe(false)
    expect(b.recordSuccess()).toEqual({ from: 'half-open', to: 'closed' })
    expect(b.allowsTraffic).toBe(true)
  })

  it('a failed trial re-opens with a doubled wait, capped', () => {
    const { b, clock } = breaker()
    for (let i = 0; i < 3; i++) b.recordFailure()
    const waits: number[] = []
    for (let round = 0; round < 5; round++) {
      const s = b.state
      if (s.kind !== 'open') throw new Error('expected open')
      waits.push(s.retryAt - s.since)
      clock.advance(s.retryAt - clock.now())
      expect(b.tryTrial()).toBe(true)
      expect(b.recordFailure()).toEqual({ from: 'half-open', to: 'open' })
    }
    expect(waits).toEqual([10_000, 20_000, 40_000, 60_000, 60_000])
  })

  it('jitters the wait within ±20%', () => {
    const clock = new FakeClock()
    const low = new CircuitBreaker(DEFAULT_BREAKER, clock, () => 0)
    const high = new CircuitBreaker(DEFAULT_BREAKER, clock, () => 0.999)
    for (let i = 0; i < 3; i++) {
      low.recordFailure()
      high.recordFailure()
    }
    const wait = (b: CircuitBreaker) => {
      const s = b.state
      return s.kind === 'open' ? s.retryAt - s.since : -1
    }
    expect(wait(low)).toBe(8_000)
    expect(wait(high)).toBeGreaterThan(11_990)
    expect(wait(high)).toBeLessThanOrEqual(12_000)
  })

  it('concurrent failures beyond the threshold open it once', () => {
    const { b } = breaker()
    const transitions = Array.from({ length: 10 }, () => b.recordFailure()).filter(Boolean)
    expect(transitions).toEqual([{ from: 'closed', to: 'open' }])
  })

  it('a trial that ends without a verdict is released: the next probe may try', () => {
    const { b, clock } = breaker()
    for (let i = 0; i < 3; i++) b.recordFailure()
    clock.advance(10_000)
    expect(b.tryTrial()).toBe(true)
    expect(b.tryTrial()).toBe(false)
    b.endTrial()
    expect(b.state).toMatchObject({ kind: 'half-open', trialInFlight: false })
    expect(b.tryTrial()).toBe(true)
  })

  it('while open, a success closes it (a discovery probe; user traffic never reaches an open breaker)', () => {
    const { b } = breaker()
    for (let i = 0; i < 3; i++) b.recordFailure()
    expect(b.recordSuccess()).toEqual({ from: 'open', to: 'closed' })
    expect(b.state).toEqual({ kind: 'closed', failures: 0 })
  })
})
