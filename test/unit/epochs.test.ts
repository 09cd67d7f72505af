/**
 * Epochs strictly increase with every change of primary across instances sharing a store
 * (ClusterKnowledge.adopt and the keeper's conflict rule), and a record is never overwritten by
 * one naming another primary at an equal or lower epoch: a scripted two-instance scenario (the
 * equal-epoch ping-pong of two instances re-electing their own previous primary) and a seeded
 * random walk of two instances over one store that also loses its record and gets older ones back.
 */
import { describe, expect, it } from 'vitest'
import type { StateRecord } from '../../src/state/state-store.js'
import { StateSync } from '../../src/state/state-sync.js'
import { ClusterKnowledge } from '../../src/topology/cluster-knowledge.js'
import { FakeClock } from '../support/fake-clock.js'
import { ScriptedStore, storedRecord } from '../support/scripted-store.js'

/**
 * One pool's epoch rules against a shared store: ClusterKnowledge plus StateSync, wired like the
 * coordinator wires them (adopt → persist; a record from elsewhere, heard or handed back, is
 * learned when not older — `storedElsewhere`).
 */
class Instance {
  readonly cluster = new ClusterKnowledge('physical')
  readonly sync: StateSync
  /** The primary this instance writes to, or null. */
  primary: string | null = null
  /** Every epoch this instance adopted, in order, with the primary and whether it followed the store's record. */
  readonly adopted: Array<{ primary: string; epoch: number; followed: boolean }> = []

  constructor(
    readonly name: string,
    store: ScriptedStore,
  ) {
    this.sync = new StateSync(store, new FakeClock(), 1_000, () => undefined)
    this.sync.watch((r) => this.storedElsewhere(r))
  }

  async start(): Promise<void> {
    const record = await this.sync.load()
    if (record) this.cluster.learnFromStore(record)
  }

  /** The coordinator's adopt(): `from` is the writer it leaves (or the one it lost, or the stored one). */
  adopt(next: string): number {
    const from = this.primary ?? this.cluster.storedPrimary
    const known = this.sync.record
    const epoch = this.cluster.adopt(next, from !== null && from !== next, known)
    this.primary = next
    this.adopted.push({ primary: next, epoch, followed: known?.primary === next && known.epoch === epoch })
    this.sync.persist({ primary: next, systemId: 'S1', timeline: 1, epoch, reason: `${this.name} chose ${next}` }, (r) => this.storedElsewhere(r))
    return epoch
  }

  heal(): void {
    if (this.primary === null) return
    this.sync.heal({ primary: this.primary, systemId: 'S1', timeline: 1, epoch: this.cluster.epoch, reason: `${this.name} heals` })
  }

  /** The coordinator's storedElsewhere(): follow a record that is not older (the next adopt re-elects). */
  storedElsewhere(record: StateRecord): void {
    if (record.epoch < this.cluster.epoch) return
    if (record.primary === this.primary) {
      this.cluster.epoch = Math.max(this.cluster.epoch, record.epoch)
      return
    }
    this.cluster.learnFromStore(record)
  }
}

/** Lets every queued store write of both instances finish. */
async function settle(...instances: Instance[]): Promise<void> {
  for (let i = 0; i < 5; i++) {
    await Promise.all(instances.map((x) => x.sync.settled()))
    for (let j = 0; j < 10; j++) await Promise.resolve()
  }
}

/** Every write replaced nothing, an older epoch, or the same decision (same epoch and primary). */
function brokenWrites(store: ScriptedStore): string[] {
  return store.writes
    .filter(({ before, after }) => before !== null && (after.epoch < before.epoch || (after.epoch === before.epoch && after.primary !== before.primary)))
    .map(({ before, after }) => `${before!.primary}@${before!.epoch} overwritten by ${after.primary}@${after.epoch}`)
}

describe('ClusterKnowledge.adopt', () => {
  it('keeps the epoch for the node it stands for, and moves past everything known for any other', () => {
    const k = new ClusterKnowledge('physical')
    expect(k.adopt('a', false, null)).toBe(1)
    expect(k.adopt('a', false, null)).toBe(1) // re-verified
    expect(k.adopt('b', true, null)).toBe(2)
    // The store names c at epoch 5 (another instance): following it keeps 5; anything else is 6.
    expect(k.adopt('c', true, storedRecord('c', 5, 1))).toBe(5)
    expect(k.adopt('a', true, storedRecord('c', 5, 1))).toBe(6)
    expect(k.epochPrimary).toBe('a')
  })

  it('re-electing its own previous primary after the store named another one at its epoch makes a new epoch', () => {
    const k = new ClusterKnowledge('physical')
    expect(k.adopt('b', false, null)).toBe(1)
    // Another instance recorded a at epoch 1 first (heard through the store).
    k.learnFromStore(storedRecord('a', 1, 1))
    expect(k.epochPrimary).toBe('a')
    // This pool still elects b, its own previous primary (changed: false): that is a change of primary.
    expect(k.adopt('b', false, storedRecord('a', 1, 1))).toBe(2)
  })

  it('at start the stored decision gives the epoch: its own node keeps it, another node gets the next', () => {
    const same = new ClusterKnowledge('physical')
    same.learnFromStore(storedRecord('a', 4, 9))
    expect(same.adopt('a', false, storedRecord('a', 4, 9))).toBe(4)
    const other = new ClusterKnowledge('physical')
    other.learnFromStore(storedRecord('a', 4, 9))
    expect(other.adopt('b', false, storedRecord('a', 4, 9))).toBe(5)
    expect(other.nextEpoch(storedRecord('a', 4, 9))).toBe(6)
  })
})

describe('two instances sharing a store', () => {
  it('re-electing their own previous primaries, they never overwrite each other at an equal epoch: 1, 2, 3', async () => {
    const store = new ScriptedStore()
    const a = new Instance('A', store)
    const b = new Instance('B', store)
    await Promise.all([a.start(), b.start()])
    // Both start with nothing stored and decide at once: A reaches n0, B cannot and elects n1.
    expect(a.adopt('n0')).toBe(1)
    expect(b.adopt('n1')).toBe(1)
    await settle(a, b)
    // B's epoch-1 decision lost to A's record, which B now knows.
    expect(store.record).toMatchObject({ primary: 'n0', epoch: 1 })
    expect(b.cluster.epochPrimary).toBe('n0')
    // B still cannot reach n0 and re-elects its own n1: a new epoch, recorded over A's.
    expect(b.adopt('n1')).toBe(2)
    await settle(a, b)
    expect(store.record).toMatchObject({ primary: 'n1', epoch: 2 })
    // A hears it but cannot reach n1 and re-elects its own n0: again a new epoch.
    expect(a.cluster.epochPrimary).toBe('n1')
    expect(a.adopt('n0')).toBe(3)
    await settle(a, b)
    expect(store.record).toMatchObject({ primary: 'n0', epoch: 3 })
    expect(store.writes.map((w) => `${w.after.primary}@${w.after.epoch}`)).toEqual(['n0@1', 'n1@2', 'n0@3'])
    expect(brokenWrites(store)).toEqual([])
  })

  for (const losses of [false, true]) {
    it(`a seeded random walk${losses ? ' with lost and restored records' : ''}: epochs only grow, no record is overwritten by an equal or older other primary`, async () => {
      const store = new ScriptedStore()
      const instances = [new Instance('A', store), new Instance('B', store)]
      await Promise.all(instances.map((x) => x.start()))
      const random = seeded(losses ? 7 : 3)
      const nodes = ['n0', 'n1', 'n2']
      const history: StateRecord[] = []
      for (let step = 0; step < 3_000; step++) {
        const x = instances[Math.floor(random() * 2)]!
        const roll = random()
        if (losses && roll < 0.03) store.lose()
        else if (losses && roll < 0.06 && history.length > 0) store.put(history[Math.floor(random() * history.length)]!)
        else if (roll < 0.3) x.heal()
        else x.adopt(nodes[Math.floor(random() * nodes.length)]!)
        if (random() < 0.5) await settle(...instances)
        if (store.record) history.push(store.record)
      }
      await settle(...instances)
      expect(brokenWrites(store)).toEqual([])
      for (const x of instances) {
        // Per instance: the epoch never goes down, and a change of primary has a higher one, unless
        // it follows the store's record at that epoch (its own decision at that epoch lost the tie).
        for (let i = 1; i < x.adopted.length; i++) {
          const [prev, next] = [x.adopted[i - 1]!, x.adopted[i]!]
          expect(next.epoch, `${x.name} #${i}`).toBeGreaterThanOrEqual(prev.epoch)
          if (next.primary !== prev.primary && !next.followed) expect(next.epoch, `${x.name} #${i}: ${prev.primary} -> ${next.primary}`).toBeGreaterThan(prev.epoch)
        }
      }
      if (!losses) {
        // Across instances: an epoch names one primary in everything ever stored.
        const named = new Map<number, string>()
        for (const { after } of store.writes) {
          expect(named.get(after.epoch) ?? after.primary, `epoch ${after.epoch}`).toBe(after.primary)
          named.set(after.epoch, after.primary)
        }
      }
      expect(store.writes.length).toBeGreaterThan(100)
    })
  }
})

/** A small deterministic PRNG (mulberry32): a failing walk replays exactly. */
function seeded(seed: number): () => number {
  let s = seed >>> 0
  return () => {
    s = (s + 0x6d2b79f5) >>> 0
    let t = s
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}
