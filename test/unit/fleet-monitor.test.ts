import { describe, expect, it } from 'vitest'
import type { Endpoint } from '../../src/endpoint/endpoint.js'
import type { ProbeResult } from '../../src/endpoint/role-probe.js'
import { type FleetHost, FleetMonitor, type FleetSettings } from '../../src/health/fleet-monitor.js'
import type { SharedMonitorStore } from '../../src/state/state-store.js'
import type { ProbeOutcome } from '../../src/topology/election.js'
import { FakeClock } from '../support/fake-clock.js'

/**
 * The fleet's message rules on one instance, with the store's channel played by the test: what a
 * leader publishes when followers doubt a node or it notices a promotion, and when a follower stops
 * waiting for a leader that does not answer. (Shared monitoring through real failovers, with Redis
 * and PostgreSQL: test/integration/shared-monitor.test.ts.)
 */
const SETTINGS: FleetSettings = { leaseTtlMs: 1_000, calmWaitMs: 4_000, noticeWaitMs: 2_000, urgentWaitMs: 1_500, answerWaitMs: 200 }

class Channel {
  readonly published: Array<Record<string, unknown>> = []
  #listener: ((message: string) => void) | null = null

  constructor(private readonly holdsLease: boolean) {}

  readonly store = {
    load: async () => null,
    compareAndSet: async () => true,
    acquireLease: async () => this.holdsLease,
    releaseLease: async () => undefined,
    publish: async (message: string) => void this.published.push(JSON.parse(message) as Record<string, unknown>),
    subscribe: (listener: (message: string) => void) => {
      this.#listener = listener
      return () => undefined
    },
  } as unknown as SharedMonitorStore

  /** A message from another instance. */
  deliver(message: Record<string, unknown>): void {
    this.#listener?.(JSON.stringify({ v: 1, from: 'someone-else', at: Date.now(), ...message }))
  }

  kinds(): string[] {
    return this.published.map((m) => String(m.kind))
  }
}

function recordingHost(): FleetHost & { confirms: string[]; notices: number[]; observed: number[] } {
  return {
    everVerified: true,
    calm: false,
    confirms: [],
    notices: [],
    observed: [],
    observedElsewhere(_e: Endpoint, _o: ProbeOutcome, startedAt: number) {
      this.observed.push(startedAt)
    },
    promotionNoticed(_e: Endpoint, noticedAt: number) {
      this.notices.push(noticedAt)
    },
    confirmForFleet(e: Endpoint) {
      this.confirms.push(e.name)
    },
    fleetRoleChanged() {},
  }
}

const node1 = { name: 'node1', recordProbe: () => undefined } as unknown as Endpoint
const writableRow: ProbeResult = { inRecovery: false, readOnly: false, systemId: '7', timeline: 2, latencyMs: 1 } as unknown as ProbeResult

async function started(holdsLease: boolean) {
  const clock = new FakeClock()
  const channel = new Channel(holdsLease)
  const host = recordingHost()
  const monitor = new FleetMonitor(channel.store, SETTINGS, clock)
  monitor.start(host, [node1])
  await new Promise((resolve) => setImmediate(resolve))
  expect(monitor.role).toBe(holdsLease ? 'leader' : 'follower')
  return { clock, channel, host, monitor }
}

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

describe('shared monitoring: what leader and followers say to each other', () => {
  it('a leader answers a burst of doubts with one "heard" and runs one confirm for the whole fleet', async () => {
    const { clock, channel, host, monitor } = await started(true)
    for (let i = 0; i < 40; i++) channel.deliver({ kind: 'doubt', endpoint: 'node1' })
    expect(host.confirms).toEqual(['node1'])
    expect(channel.kinds()).toEqual(['heard'])
    // The confirm's outcome clears the way for the next doubt; the next answer comes half an answer wait later.
    monitor.probedLocally(node1, { kind: 'failed', error: new Error('connect ECONNREFUSED') }, clock.now())
    clock.advance(SETTINGS.answerWaitMs / 2)
    channel.deliver({ kind: 'doubt', endpoint: 'node1' })
    expect(host.confirms).toEqual(['node1', 'node1'])
    expect(channel.kinds()).toEqual(['heard', 'probe', 'heard'])
    await monitor.stop()
  })

  it('a follower whose doubt goes unanswered probes on its own at once, until the leader is heard again', async () => {
    const { clock, channel, monitor } = await started(false)
    const waiting = monitor.take(node1, 0, 'round')
    let answer: unknown = 'pending'
    void waiting.then((a) => (answer = a))
    monitor.doubtedLocally(node1)
    expect(channel.kinds()).toEqual(['doubt'])
    clock.advance(SETTINGS.answerWaitMs - 1)
    await settle()
    expect(answer).toBe('pending')
    clock.advance(1)
    await settle()
    expect(answer).toBeNull()
    await expect(monitor.take(node1, 0, 'round')).resolves.toBeNull()
    // Heard again: rounds wait for its probes once more.
    channel.deliver({ kind: 'probe', endpoint: 'node1', probe: writableRow })
    let later: unknown = 'pending'
    void monitor.take(node1, clock.now() + 1, 'round').then((a) => (later = a))
    await settle()
    expect(later).toBe('pending')
    await monitor.stop()
  })

  it('a follower whose doubt the leader answers keeps waiting for the leader', async () => {
    const { clock, channel, monitor } = await started(false)
    let answer: unknown = 'pending'
    void monitor.take(node1, 0, 'round').then((a) => (answer = a))
    monitor.doubtedLocally(node1)
    channel.deliver({ kind: 'heard', endpoint: 'node1' })
    clock.advance(SETTINGS.answerWaitMs * 2)
    await settle()
    expect(answer).toBe('pending')
    clock.advance(SETTINGS.urgentWaitMs)
    await settle()
    expect(answer).toBeNull()
    await monitor.stop()
  })

  it('the row that showed a promotion reaches followers as of the notice, so it counts as the probe the notice asks for', async () => {
    const leader = await started(true)
    leader.monitor.promotionNoticedLocally(node1)
    leader.monitor.probedLocally(node1, { kind: 'ok', probe: { ...writableRow, evaluatedAt: leader.clock.now() - 5 } }, leader.clock.now() - 40)
    const [notice, row] = leader.channel.published
    expect(notice!.kind).toBe('promoted')
    expect(row!.kind).toBe('probe')
    expect(row!.at).toBe(notice!.at)

    const follower = await started(false)
    follower.clock.advance(3)
    follower.channel.deliver(notice!)
    follower.clock.advance(2)
    follower.channel.deliver(row!)
    expect(follower.host.notices).toHaveLength(1)
    expect(follower.host.observed).toEqual(follower.host.notices)
    await leader.monitor.stop()
    await follower.monitor.stop()
  })
})
