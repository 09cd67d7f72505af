import { describe, expect, it } from 'vitest'
import type { ProbeResult } from '../../src/endpoint/role-probe.js'
import { type Candidate, elect, electLogical } from '../../src/topology/election.js'

function probe(overrides: Partial<ProbeResult>): ProbeResult {
  return { inRecovery: false, readOnly: false, systemId: 'S1', timeline: 1, receiving: true, receivedTimeline: null, lsn: '0/1', lagMs: 0, serverVersion: 150000, latencyMs: 1, ...overrides }
}
const ok = (name: string, p: Partial<ProbeResult>): Candidate => ({ name, outcome: { kind: 'ok', probe: probe(p) } })
const failed = (name: string): Candidate => ({ name, outcome: { kind: 'failed', error: new Error('ECONNREFUSED') } })
const pending = (name: string): Candidate => ({ name, outcome: { kind: 'pending' } })
const fresh = { systemId: null, minTimeline: null }

describe('elect', () => {
  it('picks the only writable node and learns the cluster identity', () => {
    const e = elect([ok('a', {}), ok('b', { inRecovery: true }), failed('c')], fresh)
    expect(e).toMatchObject({ kind: 'primary', name: 'a', systemId: 'S1', timeline: 1 })
  })

  it('waits for every endpoint before learning the identity, then wins at once when it is known', () => {
    expect(elect([ok('a', {}), pending('b')], fresh).kind).toBe('wait')
    expect(elect([ok('a', {}), pending('b')], { systemId: 'S1', minTimeline: null })).toMatchObject({ kind: 'primary', name: 'a' })
  })

  it('never elects a read-only or in-recovery node', () => {
    const e = elect([ok('a', { readOnly: true }), ok('b', { inRecovery: true })], fresh)
    expect(e.kind).toBe('none')
  })

  it('marks a node of another cluster as mismatched and never elects it', () => {
    const e = elect([ok('a', { inRecovery: true }), ok('b', { inRecovery: true }), ok('x', { systemId: 'OTHER' })], { systemId: 'S1', minTimeline: null })
    expect(e).toMatchObject({ kind: 'none', mismatched: ['x'] })
    const e2 = elect([ok('a', {}), ok('x', { systemId: 'OTHER', inRecovery: true })], fresh)
    expect(e2).toMatchObject({ kind: 'primary', name: 'a', mismatched: ['x'] })
  })

  it('learns the identity from the majority, so a foreign primary is never elected', () => {
    const e = elect([ok('a', {}), ok('b', { inRecovery: true }), ok('x', { systemId: 'OTHER' })], fresh)
    expect(e).toMatchObject({ kind: 'primary', name: 'a', systemId: 'S1', mismatched: ['x'] })
  })

  it('refuses when writable nodes belong to different clusters and no majority decides', () => {
    expect(elect([ok('a', {}), ok('x', { systemId: 'OTHER' })], fresh).kind).toBe('ambiguous')
  })

  it('split brain: the higher timeline wins and the other is fenced; a tie is ambiguous', () => {
    expect(elect([ok('old', { timeline: 1 }), ok('new', { timeline: 2 })], fresh)).toMatchObject({ kind: 'primary', name: 'new', fenced: ['old'] })
    expect(elect([ok('a', { timeline: 2 }), ok('b', { timeline: 2 })], fresh)).toMatchObject({ kind: 'ambiguous', candidates: ['a', 'b'] })
  })

  it('never goes back to a writable node on a timeline older than one already verified', () => {
    const e = elect([ok('old', { timeline: 1 }), ok('b', { inRecovery: true })], { systemId: 'S1', minTimeline: 2 })
    expect(e.kind).toBe('none')
    expect((e as { reason: string }).reason).toContain('old')
  })
})

describe('electLogical', () => {
  it('keeps the active node while it is writable, even when an earlier one is back', () => {
    expect(electLogical([ok('a', { systemId: 'A' }), ok('b', { systemId: 'B' })], 'b')).toMatchObject({ kind: 'primary', name: 'b' })
  })
  it('takes the first writable node in order when the active one fails, waiting for earlier pending ones', () => {
    expect(electLogical([failed('a'), ok('b', { systemId: 'B' }), ok('c', {})], 'a')).toMatchObject({ kind: 'primary', name: 'b' })
    expect(electLogical([pending('a'), ok('b', {})], null).kind).toBe('wait')
    expect(electLogical([ok('a', {}), pending('b')], 'b').kind).toBe('wait')
    expect(electLogical([failed('a'), ok('b', { readOnly: true })], 'a').kind).toBe('none')
  })
})
