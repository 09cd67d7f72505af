/**
 * A short chaos run inside `npm test`: a fixed seed and four faults (the primary stopped
 * immediately, the primary frozen while the HA tool fails over, a standby promoted while the old
 * primary runs writable, the primary's backends terminated) on a real synchronous cluster under
 * steady traffic, then the suite's six checks. The full suite is `npm run chaos`
 * (scripts/chaos.ts); the modules are in test/chaos/.
 *
 * The second block feeds the checks evidence with one violation each, so every check is shown to
 * fail when it should.
 */
import { beforeAll, describe, expect, it } from 'vitest'
import { type Evidence, checkAcceptedByPrimary, checkAcknowledgedPresent, checkFencedOldPrimary, checkHonestFailures, checkWritesResume, allFigures, DEFAULT_LIMITS } from '../chaos/checks.js'
import type { FaultRecord } from '../chaos/faults.js'
import type { Primacy } from '../chaos/ha.js'
import { WriteLedger } from '../chaos/ledger.js'
import { checkResources, type ResourceEvidence } from '../chaos/resources.js'
import { type ChaosResult, runChaos } from '../chaos/run.js'
import { makeSchedule, parseKindSpec } from '../chaos/schedule.js'
import type { Snapshot } from '../chaos/snapshot.js'

const SEED = 20_251_122
/** The whole run, in ms: it took 51-60 s in loaded clean-clone CI runs, and 61 s once (the old 60 s bound). */
const RUN_BOUND_MS = 150_000
const KINDS = ['stop-immediate:primary', 'freeze-failover', 'promote-live', 'terminate']

describe('chaos: a short seeded run on a real cluster', () => {
  let result: ChaosResult
  const started = Date.now()

  beforeAll(async () => {
    result = await runChaos({
      seed: SEED,
      faults: KINDS.length,
      kinds: KINDS.map(parseKindSpec),
      order: 'cycle',
      steadyMs: [700, 1000],
      log: process.env.CHAOS_LOG ? (line) => console.log(line) : undefined,
    })
    if (!result.pass) {
      console.log(`chaos run failed (seed ${result.seed}); replay: ${result.replay}\n${result.notes.join('\n')}`)
    }
    // 40-60 s on 2 cores (cluster start, four faults, their windows); the bound catches a hang, not slowness.
  }, RUN_BOUND_MS)

  it('ran every planned fault without a harness error, within the bound', () => {
    expect(result.harnessError, `replay: ${result.replay}`).toBeNull()
    expect(result.faults.map((f) => f.plan.kind)).toEqual(['stop-immediate', 'freeze-failover', 'promote-live', 'terminate'])
    expect(result.faults[0]!.target).toBe(result.faults[0]!.primaryBefore)
    expect(Date.now() - started).toBeLessThan(RUN_BOUND_MS)
  })

  it('failed over three times, and the pool followed each promotion', () => {
    const promoted = result.faults.filter((f) => f.promotion !== null)
    expect(promoted.map((f) => f.plan.kind)).toEqual(['stop-immediate', 'freeze-failover', 'promote-live'])
    for (const f of promoted) {
      const followed = result.observer?.failovers.some((e) => e.at >= f.start && e.event.to === f.promotion!.node)
      expect(followed, `F${f.plan.index}: no failover event to ${f.promotion!.node}`).toBe(true)
    }
    // The old primaries of the freeze and the live promotion were inspected while writable.
    expect(result.faults.filter((f) => f.stale !== null).map((f) => f.plan.kind)).toEqual(['freeze-failover', 'promote-live'])
  })

  it('kept the traffic going: writes acknowledged in every fault window, reads served', () => {
    for (const fig of result.figures) expect(fig.counts.acked, `F${fig.index}`).toBeGreaterThan(0)
    expect(result.reads.ok.length).toBeGreaterThan(100)
    expect(result.ledger.totals.pending).toBe(0)
  })

  for (const id of [1, 2, 3, 4, 5, 6] as const) {
    it(`check ${id} passes at the end of the run`, () => {
      const check = result.checks.find((c) => c.id === id)
      expect(check, `check ${id} did not run; replay: ${result.replay}`).toBeDefined()
      expect(check!.violations, `${check!.title}: ${check!.summary}; replay: ${result.replay}`).toEqual([])
      expect(check!.pass).toBe(true)
    })
  }

  it('checks 1-5 passed after every fault too', () => {
    expect(result.perFault.map((p) => p.index)).toEqual([1, 2, 3, 4])
    const failed = result.perFault.flatMap((p) => p.checks.filter((c) => !c.pass).map((c) => `F${p.index} check ${c.id}: ${c.violations.join('; ')}`))
    expect(failed, `replay: ${result.replay}`).toEqual([])
  })
})

// ------------------------------------------------------------------------------------------------

describe('chaos: the schedule replays from its seed', () => {
  it('the same seed gives the same faults, targets and timings; another seed does not', () => {
    expect(makeSchedule({ seed: 1 })).toEqual(makeSchedule({ seed: 1 }))
    expect(makeSchedule({ seed: 2 })).not.toEqual(makeSchedule({ seed: 1 }))
    // Pinned: a change in the draws would silently change every recorded replay command.
    expect(makeSchedule({ seed: 1 }).map((p) => `${p.kind} ${p.target}`)).toEqual([
      'terminate primary',
      'freeze primary',
      'kill primary',
      'promote-live standby-b',
      'freeze primary',
      'kill standby-b',
      'replay-pause standby-a',
      'stop-fast primary',
      'terminate primary',
      'kill primary',
      'terminate primary',
      'stop-immediate primary',
    ])
    expect(makeSchedule({ seed: 1 })[0]).toMatchObject({ steadyMs: 2972 })
  })

  it('rejects an unknown kind or a target the kind cannot have', () => {
    expect(() => parseKindSpec('explode')).toThrow(/unknown fault kind/)
    expect(() => parseKindSpec('promote-live:primary')).toThrow(/cannot target primary/)
  })
})

describe('chaos: the checks catch violations', () => {
  const A = 5001
  const B = 5002
  const T = 1_700_000_000_000
  const primacy: Primacy[] = [
    { node: 'a', port: A, from: -Infinity, to: T + 1_000 },
    { node: 'b', port: B, from: T + 1_100, to: Infinity },
  ]
  const [plan] = makeSchedule({ seed: 1, faults: 1, kinds: [parseKindSpec('kill:primary')] })

  function fault(extra: Partial<FaultRecord> = {}): FaultRecord {
    return {
      plan: plan!,
      target: 'a',
      targetPort: A,
      primaryBefore: 'a',
      start: T + 1_000,
      injected: T + 1_000,
      end: T + 2_000,
      promotion: { node: 'b', port: B, from: 'a', follower: 'c', start: T + 1_100, end: T + 1_200, why: 'test', live: false },
      rejoinAt: T + 1_800,
      stale: null,
      notes: [],
      ...extra,
    }
  }

  /**
   * Writes every 10 ms: acknowledged by A before the fault, by B after the promotion; the one
   * issued at `toOldAt` (if any) is reported outcome-unknown by A, the old primary.
   */
  function ledger(toOldAt?: number): WriteLedger {
    const l = new WriteLedger()
    for (let t = T; t < T + 3_000; t += 10) {
      if (t > T + 1_000 && t < T + 1_150) continue
      const id = l.begin(1, t)
      if (t === toOldAt) l.fail(id, t + 50, 'unknown', 'OutcomeUnknownError', A)
      else l.ack(id, t + 2, t <= T + 1_000 ? A : B, t + 1)
    }
    return l
  }

  function snapshotOf(l: WriteLedger, mutate?: (ids: number[], ports: number[], ats: number[]) => void): Snapshot {
    const ids: number[] = []
    const ports: number[] = []
    const ats: number[] = []
    for (let id = 1; id <= l.count; id++) {
      if (l.outcome(id) !== 'acked') continue
      ids.push(id)
      ports.push(l.port(id))
      ats.push(l.serverAt(id))
    }
    mutate?.(ids, ports, ats)
    return { node: 'b', port: B, taken: T + 10_000, ids: Int32Array.from(ids), ports: Uint16Array.from(ports), ats: Float64Array.from(ats), clockOffsetMs: 0.3, clockUncertaintyMs: 0.1 }
  }

  function evidence(l: WriteLedger, snapshot: Snapshot, faults: FaultRecord[] = [fault()]): Evidence {
    const failovers = [{ at: T + 1_150, event: { from: 'a', to: 'b', reason: 'test', durationMs: 150, epoch: 2 } }]
    return { ledger: l, primacy, faults, failovers, downs: [], snapshot, windowEnd: T + 3_000, final: true, limits: DEFAULT_LIMITS }
  }

  it('consistent evidence passes checks 1-5', () => {
    const l = ledger()
    const e = evidence(l, snapshotOf(l))
    for (const check of [checkAcknowledgedPresent(e), checkAcceptedByPrimary(e), checkFencedOldPrimary(e), checkHonestFailures(e), checkWritesResume(e, allFigures(e))]) {
      expect(check.violations, `check ${check.id}`).toEqual([])
    }
  })

  it('1 fails when an acknowledged write is missing', () => {
    const l = ledger()
    const check = checkAcknowledgedPresent(evidence(l, snapshotOf(l, (ids) => ids.splice(3, 1))))
    expect(check.pass).toBe(false)
    expect(check.violations[0]).toMatch(/write 4 .* missing/)
  })

  it('2 fails when a write was accepted by a node outside its time as primary', () => {
    const l = ledger()
    const id = l.begin(1, T + 2_500)
    l.ack(id, T + 2_502, A, T + 2_501)
    const check = checkAcceptedByPrimary(evidence(l, snapshotOf(l)))
    expect(check.pass).toBe(false)
    expect(check.violations[0]).toMatch(new RegExp(`write ${id} acknowledged by a:${A}`))
  })

  it('3 fails when a row reached the old primary, or a write went there after the pool moved', () => {
    const l = ledger()
    const stale = { node: 'a', port: A, firstIdAfterFault: 100, rowsAfterFault: 2, poolMovedAt: T + 1_150, insertsAfterMove: 0, insertsSince: T + 1_150 }
    expect(checkFencedOldPrimary(evidence(l, snapshotOf(l), [fault({ stale })])).pass).toBe(false)
    const toOld = ledger(T + 1_500)
    const check = checkFencedOldPrimary(evidence(toOld, snapshotOf(toOld)))
    expect(check.pass).toBe(false)
    expect(check.violations[0]).toMatch(/write \d+ issued 350 ms after the pool moved to b went to the old primary a \(unknown\)/)
  })

  it('4 fails on a replayed write, a "clean" failure that ran, and a write left pending', () => {
    const l = ledger()
    expect(checkHonestFailures(evidence(l, snapshotOf(l, (ids, ports, ats) => (ids.push(7), ports.push(A), ats.push(T + 70)))))).toMatchObject({ pass: false })
    const clean = l.begin(1, T + 2_990)
    l.fail(clean, T + 2_995, 'clean', 'NoPrimaryError')
    const withClean = checkHonestFailures(evidence(l, snapshotOf(l, (ids, ports, ats) => (ids.push(clean), ports.push(B), ats.push(T + 2_991)))))
    expect(withClean.violations.some((v) => v.includes(`write ${clean} failed "clean"`))).toBe(true)
    l.begin(1, T + 2_999)
    expect(checkHonestFailures(evidence(l, snapshotOf(l))).violations.some((v) => v.includes('never settled'))).toBe(true)
  })

  it('5 fails when writes stop for longer than the limit', () => {
    const l = new WriteLedger()
    for (const t of [T, T + 500, T + 12_000]) l.ack(l.begin(1, t), t + 1, B, t)
    const e = { ...evidence(l, snapshotOf(l)), windowEnd: T + 13_000 }
    const check = checkWritesResume(e, allFigures(e))
    expect(check.pass).toBe(false)
    expect(check.violations.join(' ')).toMatch(/without an acknowledged write/)
  })

  it('6 fails on an unhandled error, a leaked handle, an open session or heap growth', () => {
    const clean: ResourceEvidence = { unhandled: [], poolClientsAfterEnd: 0, serverSessionsAfterEnd: [{ node: 'a', sessions: 0 }], hungRequests: 0, leftoverHandles: [], extraActive: [], heap: { first: 10, last: 11, max: 12, growth: 0.1 }, maxHeapGrowth: 0.5 }
    expect(checkResources(clean).pass).toBe(true)
    expect(checkResources({ ...clean, unhandled: ['unhandledRejection: boom'] }).pass).toBe(false)
    expect(checkResources({ ...clean, leftoverHandles: ['Timeout 500 ms: probe'] }).pass).toBe(false)
    expect(checkResources({ ...clean, serverSessionsAfterEnd: [{ node: 'a', sessions: 1 }] }).pass).toBe(false)
    expect(checkResources({ ...clean, heap: { first: 10, last: 20, max: 20, growth: 1 } }).pass).toBe(false)
  })
})
