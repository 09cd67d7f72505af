import { describe, expect, it } from 'vitest'
import { DEFAULT_BREAKER } from '../../src/endpoint/breaker.js'
import { EndpointHealth } from '../../src/topology/endpoint-health.js'
import { FakeClock } from '../support/fake-clock.js'

const refused = () => Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' })

function health() {
  return new EndpointHealth(DEFAULT_BREAKER, new FakeClock())
}

describe('EndpointHealth: one staleness token', () => {
  it('many failed attempts of one era raise one doubt; attempts from before it are the same event', () => {
    const h = health()
    const era = h.era
    expect(h.doubted('lost session', era)).toBe(true)
    for (let i = 0; i < 10; i++) expect(h.doubted('lost session', era)).toBe(false)
    expect(h.doubt?.reason).toBe('lost session')
  })

  it('a late probe failure from before the node came back moves nothing; a late success from before it went down neither', () => {
    const h = health()
    const beforeUp = h.era
    expect(h.probeAnswered(beforeUp).change).toBe('up')
    // A probe sent before that answer fails late: stale.
    expect(h.probeFailed(refused(), beforeUp).change).toBe('stale')
    expect(h.reachability).toBe('up')
    const beforeDown = h.era
    expect(h.probeFailed(refused(), beforeDown).change).toBe('down')
    expect(h.probeAnswered(beforeDown).change).toBe('stale')
    expect(h.reachability).toBe('down')
  })

  it('a probe sent after the doubt settles it either way; the breaker counts probe failures only', () => {
    const h = health()
    h.probeAnswered(h.era)
    h.doubted('lost session', h.era)
    expect(h.breaker.state).toEqual({ kind: 'closed', failures: 0 })
    expect(h.probeAnswered(h.era)).toMatchObject({ change: 'same' })
    expect(h.doubt).toBeNull()
    h.doubted('lost session', h.era)
    expect(h.probeFailed(refused(), h.era)).toMatchObject({ change: 'down', news: { reachability: 'down' } })
    expect(h.doubt).toBeNull()
    expect(h.breaker.state).toEqual({ kind: 'closed', failures: 1 })
  })

  it('a refusal (authentication, too many clients) is shown but is no failure', () => {
    const h = health()
    h.probeAnswered(h.era)
    h.probeRefused(Object.assign(new Error('sorry, too many clients already'), { code: '53300' }), h.era)
    expect(h.lastError?.message).toContain('too many clients')
    expect(h.reachability).toBe('up')
    expect(h.breaker.state).toEqual({ kind: 'closed', failures: 0 })
  })

  it('leaving the node starts a new era: attempts that began before it ran on a node left meanwhile', () => {
    const h = health()
    const attempt = h.era
    h.left()
    expect(h.leftEra).toBeGreaterThan(attempt)
  })
})
