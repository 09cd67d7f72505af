/**
 * The state store heals and tells the truth about its health (StateSync, StateKeeper), on the fake
 * clock over a scripted store: a lost or older record is written again, a newer one is followed,
 * an equal epoch naming another primary is never overwritten, and a store that cannot record the
 * decision is `degraded` (and reported) until a save or heal records it.
 */
import { describe, expect, it } from 'vitest'
import { readiness } from '../../src/observe/health.js'
import type { FailoverPoolStatus } from '../../src/observe/status.js'
import { MAX_CAS_ATTEMPTS } from '../../src/state/state-keeper.js'
import { type StateRecord, StateStoreError } from '../../src/state/state-store.js'
import { type Decision, StateSync } from '../../src/state/state-sync.js'
import { FakeClock } from '../support/fake-clock.js'
import { ScriptedStore, storedRecord } from '../support/scripted-store.js'

const TIMEOUT_MS = 1_000

function decision(primary: string, epoch: number, timeline: number | null = epoch): Decision {
  return { primary, epoch, timeline, systemId: 'S1', reason: `test ${primary}` }
}

/** A StateSync over `store` with its announcements and superseded records collected. */
function syncOver(store: ScriptedStore, clock = new FakeClock()) {
  const events: Array<{ event: string; payload: Record<string, unknown> }> = []
  const superseded: StateRecord[] = []
  const sync = new StateSync(store, clock, TIMEOUT_MS, (event, payload) => events.push({ event, payload: payload() as Record<string, unknown> }))
  const onSuperseded = (record: StateRecord): void => void superseded.push(record)
  return {
    sync,
    clock,
    events,
    superseded,
    errors: () => events.filter((e) => e.event === 'stateStoreError').map((e) => e.payload),
    /** persist() and wait until it is done. */
    async persist(d: Decision): Promise<void> {
      sync.persist(d, onSuperseded)
      await sync.settled()
    },
    /** heal() and wait until it is done. */
    async heal(d: Decision): Promise<void> {
      sync.heal(d)
      await sync.settled()
    },
  }
}

const held = (store: ScriptedStore) => store.record && { primary: store.record.primary, epoch: store.record.epoch, timeline: store.record.timeline }

describe('a lost or older record is written again', () => {
  it('lost between two failovers (FLUSHALL): the second failover is recorded; status stays ok', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    expect(store.record?.version).toBe(1)
    store.lose()
    await t.persist(decision('b', 2))
    expect(held(store)).toEqual({ primary: 'b', epoch: 2, timeline: 2 })
    // The first compare-and-set (from version 1) lost; the second was made from what the store really holds.
    expect(store.compareAndSets).toBe(3)
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false, failure: null, version: 1, conflicts: 0 })
    expect(t.errors()).toEqual([])
    expect(t.superseded).toEqual([])
  })

  it('lost while nothing changes: heal() writes the current decision again', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 3))
    store.lose()
    await t.heal(decision('a', 3))
    expect(held(store)).toEqual({ primary: 'a', epoch: 3, timeline: 3 })
    expect(store.writes.at(-1)).toMatchObject({ before: null, after: { primary: 'a', epoch: 3 } })
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
    // A heal with nothing to do reads and writes nothing more.
    const writes = store.writes.length
    await t.heal(decision('a', 3))
    expect(store.writes.length).toBe(writes)
  })

  it('an older record put back (a restored backup): the next failover and heal() write over it', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    const old = store.record!
    await t.persist(decision('b', 2))
    store.put(old)
    await t.heal(decision('b', 2))
    expect(held(store)).toEqual({ primary: 'b', epoch: 2, timeline: 2 })
    expect(store.writes.at(-1)!.before).toEqual(old)

    store.put(old)
    await t.persist(decision('c', 3))
    expect(held(store)).toEqual({ primary: 'c', epoch: 3, timeline: 3 })
    expect(t.superseded).toEqual([])
    expect(t.sync.health.ok).toBe(true)
  })

  it("this pool's own decision with stale facts (same epoch and primary, older timeline) is rewritten; the same facts are left alone", async () => {
    const store = new ScriptedStore()
    store.put(storedRecord('a', 2, 7, 1))
    const t = syncOver(store)
    await t.heal(decision('a', 2, 2))
    expect(store.record).toMatchObject({ primary: 'a', epoch: 2, timeline: 2, version: 8 })
    await t.heal(decision('a', 2, 2))
    await t.heal(decision('a', 2, 1)) // the store knows a newer timeline: never lowered
    expect(store.record).toMatchObject({ timeline: 2, version: 8 })
  })

  it('something unreadable is reported and replaced by the decision', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    store.put(storedRecord('a', 1, 1))
    store.loadFailsWith = new StateStoreError('corrupt', 'state file x does not hold a valid state record')
    await t.heal(decision('a', 4))
    expect(held(store)).toEqual({ primary: 'a', epoch: 4, timeline: 4 })
    expect(t.errors()).toEqual([expect.objectContaining({ operation: 'load', failure: 'corrupt' })])
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
  })
})

describe('a newer record is followed, an equal epoch is never overwritten', () => {
  it('heal() hands a later decision of another instance to the persist callback and writes nothing', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 2))
    const later = storedRecord('b', 3, 2)
    store.record = later // written by another instance, unheard (no watch here)
    await t.heal(decision('a', 2))
    expect(t.superseded).toEqual([later])
    expect(store.record).toBe(later)
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
    expect(t.sync.record).toEqual(later)
  })

  it('persist() of a decision older than what the store holds never writes over it', async () => {
    const store = new ScriptedStore()
    store.put(storedRecord('b', 5, 9))
    const t = syncOver(store)
    await t.persist(decision('a', 4))
    expect(store.record).toEqual(storedRecord('b', 5, 9))
    expect(t.superseded).toEqual([storedRecord('b', 5, 9)])
  })

  it('the same epoch naming another primary: the record stored first wins, ours goes nowhere', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    const first = storedRecord('b', 2, 2)
    store.record = first // another instance recorded its failover to b at epoch 2 first
    await t.persist(decision('c', 2))
    expect(store.record).toBe(first)
    expect(store.writes.filter((w) => w.after.primary === 'c')).toEqual([])
    expect(t.superseded).toEqual([first])
    // Not a store failure: the store works, and the pool follows b (after verifying it).
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
    expect(t.errors()).toEqual([])
  })
})

describe('health tells the truth', () => {
  it(`${MAX_CAS_ATTEMPTS} lost compare-and-sets in a row: degraded, reported as a conflict, visible in readiness; back to ok after a heal`, async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    // A misbehaving writer keeps putting an older record back between our read and our write.
    store.interfere = storedRecord('a', 1, 0)
    await t.persist(decision('b', 2))
    expect(store.compareAndSets).toBe(1 + MAX_CAS_ATTEMPTS)
    expect(t.sync.health).toMatchObject({ ok: false, degraded: true, failure: 'conflict', conflicts: MAX_CAS_ATTEMPTS })
    expect(t.sync.health.reason).toMatch(/primary b, epoch 2\) is not recorded: compare-and-set lost 3 times/)
    expect(t.errors()).toEqual([expect.objectContaining({ operation: 'save', failure: 'conflict' })])

    // Readiness: still ready (the pool serves), the problem is in the body.
    const verdict = readiness({ status: () => statusWith(t.sync.health) })
    expect(verdict).toMatchObject({ ready: true, statusCode: 200 })
    expect(verdict.warnings).toEqual([expect.stringMatching(/^state store degraded: the decision \(primary b, epoch 2\) is not recorded/)])
    expect(verdict.body.warnings).toEqual(verdict.warnings)
    expect(verdict.body.stateStore.degraded).toBe(true)

    store.interfere = null
    await t.heal(decision('b', 2))
    expect(held(store)).toEqual({ primary: 'b', epoch: 2, timeline: 2 })
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false, failure: null, reason: null, conflicts: 0 })
    expect(readiness({ status: () => statusWith(t.sync.health) }).warnings).toEqual([])
  })

  it('a save the store refuses is degraded and reported; a store that stays down is reported once, not on every heal', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    store.failWith = new Error('connect ECONNREFUSED redis://:hunter2@cache:6379')
    await t.persist(decision('b', 2))
    expect(t.sync.health).toMatchObject({ ok: false, degraded: true, failure: 'unavailable' })
    expect(JSON.stringify(t.sync.health)).not.toContain('hunter2')
    for (let i = 0; i < 5; i++) await t.heal(decision('b', 2))
    expect(t.errors()).toEqual([expect.objectContaining({ operation: 'save', failure: 'unavailable' })])
    expect(JSON.stringify(t.events)).not.toContain('hunter2')

    store.failWith = null
    await t.heal(decision('b', 2))
    expect(held(store)).toEqual({ primary: 'b', epoch: 2, timeline: 2 })
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
  })

  it('never healthy from memory: while the store is down, saving a decision it held before still asks the store', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    await t.persist(decision('a', 1)) // healthy and already recorded: no store call at all
    expect(store.compareAndSets + store.loads).toBe(1)
    store.failWith = new Error('connect ECONNREFUSED')
    await t.heal(decision('a', 1))
    expect(t.sync.health).toMatchObject({ ok: false, degraded: true })
    // The same decision again (the primary re-verified): memory says "held", but the store is down.
    await t.persist(decision('a', 1))
    expect(t.sync.health).toMatchObject({ ok: false, degraded: true, failure: 'unavailable' })
    store.failWith = null
    await t.persist(decision('a', 1))
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
    expect(store.writes).toHaveLength(1) // it was there all along
  })

  it('heal() is bounded by the store deadline and never overlaps itself', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    store.hang = true
    t.sync.heal(decision('a', 1))
    t.sync.heal(decision('a', 1))
    t.sync.heal(decision('a', 1))
    await Promise.resolve()
    expect(store.loads).toBe(1)
    let done = false
    void t.sync.settled().then(() => (done = true))
    t.clock.advance(TIMEOUT_MS - 1)
    await flushPromises()
    expect(done).toBe(false)
    t.clock.advance(1)
    await flushPromises()
    expect(done).toBe(true)
    expect(t.sync.health).toMatchObject({ ok: false, degraded: true, failure: 'timeout' })
    expect(t.errors()).toEqual([expect.objectContaining({ operation: 'load', failure: 'timeout' })])
    expect(t.clock.pendingTimers).toBe(0)
  })

  it('a save waits behind a running heal and is never lost; a heal asked for meanwhile is dropped', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.persist(decision('a', 1))
    store.hang = true
    t.sync.heal(decision('a', 1))
    t.sync.persist(decision('b', 2), (r) => t.superseded.push(r))
    t.sync.heal(decision('a', 1))
    store.hang = false
    t.clock.advance(TIMEOUT_MS)
    await t.sync.settled()
    await flushPromises()
    await t.sync.settled()
    expect(held(store)).toEqual({ primary: 'b', epoch: 2, timeline: 2 })
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
  })

  it('after close() nothing is written or announced', async () => {
    const store = new ScriptedStore()
    const t = syncOver(store)
    await t.sync.close()
    t.sync.persist(decision('a', 1), () => undefined)
    t.sync.heal(decision('a', 1))
    await t.sync.settled()
    expect(store.compareAndSets + store.loads).toBe(0)
  })
})

/** Lets settled promise chains run (the scripted store answers in microtasks). */
async function flushPromises(): Promise<void> {
  for (let i = 0; i < 20; i++) await Promise.resolve()
}

/** A status snapshot with a verified primary and the given store health. */
function statusWith(stateStore: FailoverPoolStatus['stateStore']): FailoverPoolStatus {
  return {
    primary: 'a',
    ready: true,
    mode: 'read-write',
    epoch: 2,
    failovers: 1,
    systemId: 'S1',
    timeline: 2,
    discovering: false,
    lastElection: 'a',
    topology: 'physical',
    paused: false,
    splitBrain: null,
    stateStore,
    haManager: null,
    monitor: { mode: 'local', role: null },
    endpointSource: null,
    endpoints: [],
  } as FailoverPoolStatus
}
