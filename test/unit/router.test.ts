import { describe, expect, it } from 'vitest'
import { chooseReplica, type ReadConstraints, type ReplicaView } from '../../src/routing/router.js'

const replica = (name: string, o: Partial<ReplicaView> = {}): ReplicaView => ({
  name, weight: 1, lagMs: 0, lagBytes: 0n, replayedLsn: 100n, busy: 0, latencyMs: 1, ...o,
})
const open: ReadConstraints = { maxLagMs: Infinity, maxLagBytes: null, minLsn: null, exclude: new Set() }

function names(replicas: ReplicaView[], constraints: ReadConstraints, strategy: Parameters<typeof chooseReplica>[2], n: number, random?: () => number): string[] {
  const cursor = { next: 0 }
  return Array.from({ length: n }, () => {
    const c = chooseReplica(replicas, constraints, strategy, cursor, random)
    return c.kind === 'replica' ? c.name : 'none'
  })
}

describe('chooseReplica', () => {
  it('round-robin alternates, and weights count as whole turns', () => {
    expect(names([replica('a'), replica('b')], open, 'round-robin', 4)).toEqual(['a', 'b', 'a', 'b'])
    expect(names([replica('a', { weight: 2 }), replica('b')], open, 'round-robin', 6)).toEqual(['a', 'a', 'b', 'a', 'a', 'b'])
  })

  it('random honours weights', () => {
    const seq = [0.1, 0.5, 0.9]
    let i = 0
    const rnd = () => seq[i++ % seq.length]!
    // weights 1 and 3: a covers [0, 1), b covers [1, 4) of 4
    expect(names([replica('a'), replica('b', { weight: 3 })], open, 'random', 3, rnd)).toEqual(['a', 'b', 'b'])
  })

  it('least-busy and lowest-latency pick by their measure', () => {
    expect(names([replica('a', { busy: 3 }), replica('b', { busy: 1 })], open, 'least-busy', 1)).toEqual(['b'])
    expect(names([replica('a', { latencyMs: 5 }), replica('b', { latencyMs: 0.5 })], open, 'lowest-latency', 1)).toEqual(['b'])
  })

  it('skips replicas over the lag limits or already tried', () => {
    const rs = [replica('a', { lagMs: 5000 }), replica('b', { lagBytes: 10_000_000n }), replica('c')]
    expect(names(rs, { ...open, maxLagMs: 1000 }, 'round-robin', 2)).toEqual(['b', 'c'])
    expect(names(rs, { ...open, maxLagBytes: 1_000_000n }, 'round-robin', 2)).toEqual(['a', 'c'])
    expect(names(rs, { ...open, maxLagMs: 1000, maxLagBytes: 1_000_000n, exclude: new Set(['c']) }, 'round-robin', 1)).toEqual(['none'])
  })

  it('prefers replicas known to have replayed the required position', () => {
    const rs = [replica('a', { replayedLsn: 50n }), replica('b', { replayedLsn: 200n })]
    const c = chooseReplica(rs, { ...open, minLsn: 150n }, 'round-robin', { next: 0 })
    expect(c).toEqual({ kind: 'replica', name: 'b', caughtUp: true })
    const behind = chooseReplica(rs, { ...open, minLsn: 500n }, 'round-robin', { next: 0 })
    expect(behind).toMatchObject({ kind: 'replica', caughtUp: false })
  })
})
