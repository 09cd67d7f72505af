import { EventEmitter } from 'node:events'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AllEndpointsDownError, NoPrimaryError, SplitBrainError } from '../../src/errors.js'
import type { Target } from '../../src/surface/routing-host.js'
import { MemoryStateStore } from '../../src/state/memory-store.js'
import { Maintenance } from '../../src/topology/maintenance.js'
import { fakeTopology, flush } from '../support/fake-topology.js'

type Topology = ReturnType<typeof fakeTopology>

// Jitter (timers ±20%, breaker waits ±20%) comes from Math.random: pinned to the middle, every
// schedule in these tests is exact (jitter(ms) === ms), so no test depends on a lucky draw.
beforeEach(() => {
  vi.spyOn(Math, 'random').mockReturnValue(0.5)
})
afterEach(() => {
  vi.restoreAllMocks()
})

const refused = (name: string) => Object.assign(new Error(`connect ECONNREFUSED ${name}`), { code: 'ECONNREFUSED' })

/** Starts the coordinator and lets the first discovery elect `a`. */
async function booted(t: Topology): Promise<Target> {
  await t.coordinator.start()
  await flush()
  const target = t.coordinator.readyWriteTarget()
  if (!target) throw new Error(`no primary after boot: ${t.coordinator.state.kind}`)
  return target
}

/** Lets `ms` pass in steps, letting probe answers (promises) run between timers as they would in real time. */
async function pass(t: Topology, ms: number, step = 25): Promise<void> {
  for (let left = ms; left > 0; left -= step) {
    t.clock.advance(Math.min(step, left))
    await flush()
  }
}

/** A write request waiting for a primary; resolves with its endpoint's name or its error. */
function waitForPrimary(t: Topology, since = t.clock.now()): Promise<string | Error> {
  return new Promise((resolve) => t.coordinator.whenPrimary(since, (err, target) => resolve(err ?? target!.endpoint.name)))
}

describe('coordinator: one report per failure', () => {
  it('failures that one event causes on many connections count once against the breaker', async () => {
    const t = fakeTopology()
    const target = await booted(t)
    const a = t.node('a')
    const before = t.clock.now()
    t.clock.advance(5)
    // A crash breaks ten pooled connections whose statements all began before it was noticed.
    for (let i = 0; i < 10; i++) t.coordinator.report({ target, error: refused('a'), errorClass: 'connection', startedAt: before })
    expect(a.breaker.state).toEqual({ kind: 'closed', failures: 1 })
    expect(t.named('endpointDown')).toHaveLength(1)
    expect(t.named('breakerStateChange')).toHaveLength(0)
    // It is suspected, not left: fresh pools, nothing cut yet.
    expect(t.coordinator.state).toMatchObject({ kind: 'discovering', suspect: a })
    expect(a.retires).toEqual([false])
  })

  it('a result from before a state change never moves anything: a late failure after the node came back, a late success after it went down', async () => {
    const t = fakeTopology()
    const target = await booted(t)
    const a = t.node('a')
    const longAgo = t.clock.now()
    t.clock.advance(10)
    t.coordinator.report({ target, error: refused('a'), errorClass: 'connection', startedAt: t.clock.now() })
    await flush()
    t.clock.advance(10)
    a.mode = 'primary'
    t.clock.advance(300) // the next discovery round finds it again
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint).toBe(a)
    expect(t.coordinator.standing(a).downSince).toBeNull()
    const failuresBefore = a.breaker.state
    // A statement that began before the node came back fails late: the same old event.
    const again = t.coordinator.readyWriteTarget()!
    t.coordinator.report({ target: again, error: refused('a'), errorClass: 'connection', startedAt: longAgo })
    expect(a.breaker.state).toEqual(failuresBefore)
    expect(t.coordinator.readyWriteTarget()?.endpoint).toBe(a)
    expect(t.named('endpointDown')).toHaveLength(1)
  })

  it('reports from a previous generation move no topology', async () => {
    const t = fakeTopology()
    const stale = await booted(t)
    t.coordinator.report({ target: stale, error: refused('a'), errorClass: 'connection', startedAt: t.clock.now() })
    t.node('a').mode = 'primary'
    t.clock.advance(300)
    await flush()
    const current = t.coordinator.readyWriteTarget()!
    expect(current.generation).toBeGreaterThan(stale.generation)
    t.clock.advance(10)
    // A 25006 seen by a request routed before the change: not a demotion of the current primary.
    t.coordinator.report({ target: stale, error: Object.assign(new Error('read-only'), { code: '25006' }), errorClass: 'read-only', startedAt: t.clock.now() })
    expect(t.coordinator.readyWriteTarget()).toBe(current)
  })
})

describe('coordinator: discovery', () => {
  it('while no primary is verified every endpoint is probed each round, whatever its breaker says', async () => {
    const t = fakeTopology(['a', 'b'], { discoveryIntervalMs: 100, halfOpenAfterMs: 60_000, maxHalfOpenAfterMs: 60_000 })
    const target = await booted(t)
    for (const node of t.endpoints) node.mode = 'down'
    t.coordinator.report({ target, error: refused('a'), errorClass: 'connection', startedAt: t.clock.now() })
    // Rounds every ~100 ms: after a few, both breakers are open.
    for (let i = 0; i < 5; i++) {
      t.clock.advance(120)
      await flush()
    }
    expect(t.endpoints.map((e) => e.breaker.state.kind)).toEqual(['open', 'open'])
    const probes = t.endpoints.map((e) => e.probes)
    for (let i = 0; i < 4; i++) {
      t.clock.advance(120)
      await flush()
    }
    // Four more rounds, four more probes of each node: the open breakers did not stop discovery.
    expect(t.endpoints.map((e, i) => e.probes - probes[i]!)).toEqual([4, 4])
    // The node returns: the next round closes its breaker and adopts it, long before halfOpenAfterMs.
    t.node('a').mode = 'primary'
    t.clock.advance(120)
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('a')
    expect(t.node('a').breaker.state.kind).toBe('closed')
  })

  it('while a primary is verified, an open breaker keeps health probes away until its half-open trial', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, halfOpenAfterMs: 1_000, maxHalfOpenAfterMs: 1_000 })
    await booted(t)
    const b = t.node('b')
    b.mode = 'down'
    await pass(t, 400)
    expect(b.breaker.state.kind).toBe('open')
    const probes = b.probes
    await pass(t, 600) // health rounds every ~100 ms meanwhile
    expect(b.probes).toBe(probes)
    b.mode = 'standby'
    await pass(t, 700) // past halfOpenAfterMs (±20%): the trial probe closes it
    expect(b.breaker.state.kind).toBe('closed')
    expect(b.probes).toBeGreaterThan(probes)
    expect(t.named('breakerStateChange').filter((e) => e.endpoint === 'b').map((e) => e.to)).toEqual(['open', 'half-open', 'closed'])
  })

  it('a primary restarted in place is written to again within one discovery interval, whatever its breaker says meanwhile', async () => {
    const t = fakeTopology(['a', 'b'], { discoveryIntervalMs: 250 })
    const target = await booted(t)
    const a = t.node('a')
    a.mode = 'down'
    const crashed = t.clock.now()
    t.clock.advance(1)
    // The crash breaks every pooled connection: many reports, one event, one count.
    for (let i = 0; i < 4; i++) t.coordinator.report({ target, error: refused('a'), errorClass: 'connection', startedAt: crashed })
    expect(a.breaker.state).toEqual({ kind: 'closed', failures: 1 })
    await flush()
    const waiting = waitForPrimary(t)
    // Down for one second (crash recovery), probed every ~250 ms meanwhile.
    for (let i = 0; i < 4; i++) {
      t.clock.advance(250)
      await flush()
    }
    a.mode = 'primary'
    const back = t.clock.now()
    t.clock.advance(300) // at most one interval (+20% jitter)
    await flush()
    expect(await waiting).toBe('a')
    expect(t.coordinator.readyWriteTarget()?.endpoint).toBe(a)
    expect(t.clock.now() - back).toBeLessThanOrEqual(300)
    expect(a.breaker.state.kind).toBe('closed')
    // The same node again: no failover, same epoch.
    expect(t.named('failover')).toEqual([])
    expect(t.coordinator.cluster.epoch).toBe(1)
  })

  it('a promotion notice is acted on at once, never behind a probe still waiting for a frozen node', async () => {
    const t = fakeTopology(['a', 'b', 'c'], { probeTimeoutMs: 3_000, healthCheckIntervalMs: 1_000 })
    await booted(t)
    expect(t.watches.armed).toEqual(new Set(['b', 'c']))
    const [a, b] = [t.node('a'), t.node('b')]
    a.mode = 'hang' // frozen: its next probe waits the whole probe timeout
    t.clock.advance(1_300) // a health round starts and hangs on a
    await flush()
    expect(t.coordinator.discovering).toBe(true)
    b.mode = 'primary'
    b.timeline = 2
    t.watches.promote('b')
    await flush() // no time passes: the frozen probe is still pending
    expect(t.coordinator.readyWriteTarget()?.endpoint).toBe(b)
    expect(t.named('failover')).toEqual([expect.objectContaining({ from: 'a', to: 'b', epoch: 2 })])
    // The pool left a: everything still running there was cut.
    expect(a.retires).toContain(true)
  })

  it('the first discovery waits for every endpoint before trusting any cluster identity', async () => {
    const t = fakeTopology(['a', 'b'])
    t.node('b').mode = 'hang'
    await t.coordinator.start()
    await flush()
    expect(t.coordinator.readyWriteTarget()).toBeNull()
    t.clock.advance(3_000) // b's probe times out
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('a')
  })
})

describe('coordinator: leaving a primary', () => {
  it('a failure only suspects the primary: if it verifies again nothing is cut', async () => {
    const t = fakeTopology()
    const target = await booted(t)
    t.coordinator.report({ target, error: Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), errorClass: 'connection', startedAt: t.clock.now() })
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('a')
    expect(t.node('a').retires).toEqual([false])
  })

  it('a suspect that fails its verification is left, and everything still running there is cut', async () => {
    const t = fakeTopology()
    const target = await booted(t)
    t.node('a').mode = 'down'
    t.coordinator.report({ target, error: refused('a'), errorClass: 'connection', startedAt: t.clock.now() })
    await flush()
    expect(t.coordinator.state).toMatchObject({ kind: 'discovering', suspect: null, loss: { from: 'a' } })
    expect(t.node('a').retires).toEqual([false, true])
  })

  it('a demotion seen by a health probe leaves the primary at once (cut, its running statements given probeTimeoutMs to answer) and elects the promoted node', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100 })
    await booted(t)
    t.node('a').mode = 'read-only'
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    t.clock.advance(120)
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.node('a').retires).toContain(true)
    expect(t.node('a').cutGraces).toEqual([t.options.probeTimeoutMs])
    expect(t.named('roleChange')).toContainEqual(expect.objectContaining({ endpoint: 'a', from: 'primary', to: 'read-only' }))
  })
})

describe('coordinator: leaving a node that said it takes no writes', () => {
  const readOnly = () => Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' })

  it('a primary that answered 25006 is left with probeTimeoutMs for its running statements to answer; a failed one is cut at once', async () => {
    const t = fakeTopology(['a', 'b'], { probeTimeoutMs: 700 })
    const target = await booted(t)
    // a's probe does not answer before b wins: the 25006 alone says a takes no writes.
    t.node('a').mode = 'hang'
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    t.coordinator.report({ target, error: readOnly(), errorClass: 'read-only', startedAt: t.clock.now() })
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.node('a').cutGraces).toEqual([700])

    // b, verified writable, then fails: nothing it said makes its statements worth waiting for.
    const onB = t.coordinator.readyWriteTarget()!
    t.node('b').mode = 'down'
    t.coordinator.report({ target: onB, error: refused('b'), errorClass: 'connection', startedAt: t.clock.now() })
    await flush()
    expect(t.node('b').cutGraces).toEqual([0])
  })

  it('a late 25006 from before the node was verified again, and a standby made primary by switchTo, leave no grace behind', async () => {
    const t = fakeTopology(['a', 'b'], { probeTimeoutMs: 700 })
    const stale = await booted(t)
    // a is suspected (a terminated backend) and verified again: the old target's generation is gone.
    t.coordinator.report({ target: stale, error: Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01' }), errorClass: 'connection', startedAt: t.clock.now() })
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('a')
    t.coordinator.report({ target: stale, error: readOnly(), errorClass: 'read-only', startedAt: t.clock.now() })
    expect(t.coordinator.standing(t.node('a')).saidReadOnly).toBe(false)

    // b was a standby (it takes no writes); promoted and chosen by switchTo, it is writable.
    expect(t.coordinator.standing(t.node('b')).saidReadOnly).toBe(true)
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    await new Maintenance(t.coordinator, t.options, new EventEmitter()).switchTo('b')
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.coordinator.standing(t.node('b')).saidReadOnly).toBe(false)
    t.node('a').mode = 'primary'
    t.node('a').timeline = 3
    t.coordinator.promotionNoticed(t.node('a'))
    await flush()
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('a')
    expect(t.node('b').cutGraces).toEqual([0])
  })
})

describe('coordinator: waiting requests are settled from the state', () => {
  it('waiters go to the primary once one is verified, and fail with NoPrimaryError at their own deadline', async () => {
    const t = fakeTopology(['a', 'b'], { failoverTimeoutMs: 1_000 })
    const early = waitForPrimary(t) // before the store was read
    await booted(t)
    expect(await early).toBe('a')
    for (const node of t.endpoints) node.mode = node.name === 'a' ? 'down' : 'standby'
    t.coordinator.report({ target: t.coordinator.readyWriteTarget()!, error: refused('a'), errorClass: 'connection', startedAt: t.clock.now() })
    const late = waitForPrimary(t)
    await pass(t, 1_000)
    const err = await late
    expect(err).toBeInstanceOf(NoPrimaryError)
    expect((err as NoPrimaryError).answers.map((x) => [x.endpoint, x.role])).toEqual([
      ['a', 'unreachable'],
      ['b', 'standby'],
    ])
  })

  it('two writable nodes on one timeline: writes are refused with SplitBrainError, waiting ones too', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100 })
    await booted(t)
    t.node('b').mode = 'primary'
    t.clock.advance(120)
    await flush()
    expect(t.coordinator.state.kind).toBe('split-brain')
    expect(await waitForPrimary(t)).toBeInstanceOf(SplitBrainError)
    expect(t.named('splitBrain')).toEqual([expect.objectContaining({ chosen: null })])
    expect(t.node('a').retires).toContain(true)
  })

  it('every endpoint refusing our credentials fails waiting requests at once with the server error', async () => {
    const t = fakeTopology(['a', 'b'])
    for (const node of t.endpoints) node.mode = 'auth'
    const waiting = waitForPrimary(t)
    await t.coordinator.start()
    await flush()
    const err = await waiting
    expect((err as { code?: string }).code).toBe('28P01')
  })

  it('with every breaker open a new request fails at once, naming each endpoint', async () => {
    const t = fakeTopology(['a', 'b'], { discoveryIntervalMs: 50, failureThreshold: 1 })
    const target = await booted(t)
    for (const node of t.endpoints) node.mode = 'down'
    t.coordinator.report({ target, error: refused('a'), errorClass: 'connection', startedAt: t.clock.now() })
    t.clock.advance(60)
    await flush()
    const err = await waitForPrimary(t)
    expect(err).toBeInstanceOf(AllEndpointsDownError)
  })

  it('the stored primary is waited for at start: nobody else wins before it has answered', async () => {
    const store = new MemoryStateStore()
    await store.compareAndSet(null, { primary: 'b', systemId: 'S1', timeline: 2, epoch: 3, updatedAt: new Date().toISOString(), reason: 'test' })
    const t = fakeTopology(['a', 'b'], { stateStore: store, probeTimeoutMs: 3_000 })
    // a answers first and is writable on the recorded timeline too; b, the recorded primary, is slow.
    t.node('a').timeline = 2
    t.node('b').mode = 'hang'
    await t.coordinator.start()
    await pass(t, 1_000)
    expect(t.coordinator.readyWriteTarget()).toBeNull()
    expect(t.coordinator.state.kind).toBe('discovering')
    // Only once b has answered (here: failed) may anyone else be elected.
    await pass(t, 2_100)
    expect(t.coordinator.readyWriteTarget()?.endpoint.name).toBe('a')
    expect(t.coordinator.cluster.epoch).toBe(4)
  })
})
