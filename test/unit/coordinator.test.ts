import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { AllEndpointsDownError, NoPrimaryError, SplitBrainError } from '../../src/errors.js'
import type { Target } from '../../src/surface/routing-host.js'
import type { ProbeResult } from '../../src/endpoint/role-probe.js'
import { MemoryStateStore } from '../../src/state/memory-store.js'
import { servesReads } from '../../src/topology/endpoint-health.js'
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
  const target = t.coordinator.requests.readyWriteTarget()
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

/** Steps the fake clock `ms` at a time, at most `steps` times, until `done()` holds: the clock then, or null if it never did. */
async function stepUntil(t: Topology, done: () => boolean, steps: number, ms = 5): Promise<number | null> {
  for (let step = 0; step < steps; step++) {
    if (done()) return t.clock.now()
    await pass(t, ms, ms)
  }
  return done() ? t.clock.now() : null
}

/** A standby promoted to timeline 2 and noticed by its watch (whatever the old primary does): the pool writes there after. */
async function promoteByHand(t: Topology, node: ReturnType<Topology['node']>): Promise<void> {
  node.mode = 'primary'
  node.timeline = 2
  t.watches.promote(node.name)
  await flush()
  expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(node)
}

/** Probes `node` outside any round and lets the answer in. */
async function probeAgain(t: Topology, node: ReturnType<Topology['node']>): Promise<void> {
  t.coordinator.confirm(node)
  await pass(t, 20, 1)
}

/** A write request waiting for a primary; resolves with its endpoint's name or its error. */
function waitForPrimary(t: Topology, since = t.clock.now()): Promise<string | Error> {
  return new Promise((resolve) => t.coordinator.requests.whenPrimary(since, (err, target) => resolve(err ?? target!.endpoint.name)))
}

describe('coordinator: a failed request raises a doubt, a probe decides', () => {
  const terminated = () => Object.assign(new Error('terminating connection due to administrator command'), { code: '57P01', severity: 'FATAL' })

  it('a crash that breaks many connections is one doubt and one confirming probe: counted once, the node left once', async () => {
    const t = fakeTopology()
    const target = await booted(t)
    const a = t.node('a')
    a.mode = 'down'
    const era = t.coordinator.health(a).era
    const probes = a.probes
    // Ten pooled connections broken by one crash, all from attempts that began before it was noticed.
    for (let i = 0; i < 10; i++) t.report(target, refused('a'), era)
    // One probe confirms (the round that follows the leave probes it again): reports are never counted themselves.
    expect(t.coordinator.health(a).breaker.state).toEqual({ kind: 'closed', failures: 0 })
    await flush()
    expect(t.coordinator.health(a).breaker.state).toEqual({ kind: 'closed', failures: a.probes - probes })
    expect(a.probes - probes).toBeLessThan(3)
    expect(t.named('endpointDown')).toHaveLength(1)
    expect(t.coordinator.state).toMatchObject({ kind: 'discovering', suspect: null, loss: { from: 'a' } })
    expect(a.actions).toEqual(['leave'])
  })

  it('one lost session on a primary that still answers costs that session only: writes never stop, nothing is cut or refreshed', async () => {
    const t = fakeTopology()
    const target = await booted(t)
    t.report(target, terminated())
    // Until the probe answers, new writes still go to the primary; only a retry of the failed attempt waits.
    expect(t.coordinator.requests.readyWriteTarget()).toBe(target)
    const retry = new Promise<string | Error>((resolve) => t.coordinator.requests.whenPrimary(t.clock.now(), (err, to) => resolve(err ?? to!.endpoint.name), target))
    await flush()
    expect(await retry).toBe('a')
    expect(t.coordinator.requests.readyWriteTarget()).toBe(target)
    expect(t.node('a').actions).toEqual([])
    expect(t.named('endpointDown')).toEqual([])
  })

  it("a 25006 from the caller's own read-only transaction is not a demotion: the probe finds the node writable", async () => {
    const t = fakeTopology()
    const target = await booted(t)
    t.report(target, Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' }))
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()).toBe(target)
    expect(t.coordinator.health(t.node('a')).saidReadOnly).toBe(false)
    expect(t.node('a').actions).toEqual([])
  })

  it('a report from an attempt that began before the node came back moves nothing', async () => {
    const t = fakeTopology(['a', 'b'], { discoveryIntervalMs: 100 })
    const target = await booted(t)
    const a = t.node('a')
    const before = t.coordinator.health(a).era
    a.mode = 'down'
    t.report(target, refused('a'), before)
    await flush()
    expect(t.coordinator.state.kind).toBe('discovering')
    a.mode = 'primary'
    await pass(t, 300)
    const again = t.coordinator.requests.readyWriteTarget()
    expect(again?.endpoint).toBe(a)
    const probes = a.probes
    // A statement that began before the crash fails late: the same old event.
    t.report(again!, refused('a'), before)
    await flush()
    expect(a.probes).toBe(probes)
    expect(t.coordinator.requests.readyWriteTarget()).toBe(again)
    expect(t.named('endpointDown')).toHaveLength(1)
  })

  it('an idle client failing raises a doubt too; the probe decides', async () => {
    const t = fakeTopology()
    await booted(t)
    const a = t.node('a')
    a.mode = 'down'
    t.coordinator.requests.idleError(a, refused('a'))
    await flush()
    expect(t.coordinator.state).toMatchObject({ kind: 'discovering', loss: { from: 'a' } })
    expect(a.actions).toEqual(['leave'])
  })

  it('a replica that fails its confirming probe gets fresh pools; one that hangs has its statements cut', async () => {
    const t = fakeTopology(['a', 'b', 'c'], { probeTimeoutMs: 500 })
    await booted(t)
    const [b, c] = [t.node('b'), t.node('c')]
    const onReplica = (node: typeof b): Target => ({ endpoint: node, lane: node.read, generation: t.coordinator.generation, role: 'replica', caughtUp: true })
    b.mode = 'down'
    c.mode = 'hang'
    t.report(onReplica(b), refused('b'))
    t.report(onReplica(c), Object.assign(new Error('Connection terminated unexpectedly'), {}))
    await pass(t, 600)
    expect(b.actions).toEqual(['refresh'])
    expect(c.actions).toEqual(['cut-stalled'])
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
  })
})

describe('coordinator: discovery', () => {
  it('while no primary is verified every endpoint is probed each round, whatever its breaker says', async () => {
    const t = fakeTopology(['a', 'b'], { discoveryIntervalMs: 100, halfOpenAfterMs: 60_000, maxHalfOpenAfterMs: 60_000 })
    const target = await booted(t)
    for (const node of t.endpoints) node.mode = 'down'
    t.report(target, refused('a'))
    // Rounds every ~100 ms: after a few, both breakers are open.
    for (let i = 0; i < 5; i++) {
      t.clock.advance(120)
      await flush()
    }
    expect(t.endpoints.map((e) => t.coordinator.health(e).breaker.state.kind)).toEqual(['open', 'open'])
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
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
    expect(t.coordinator.health(t.node('a')).breaker.state.kind).toBe('closed')
  })

  it('a half-open trial ended by a refusal (too many connections) is released: the next health round tries again', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, halfOpenAfterMs: 300, maxHalfOpenAfterMs: 300 })
    await booted(t)
    const b = t.node('b')
    b.mode = 'down'
    await pass(t, 400)
    expect(t.coordinator.health(b).breaker.state.kind).toBe('open')
    // Back after a restart, but refusing connections while every client reconnects.
    b.mode = 'too-many'
    await pass(t, 500)
    expect(t.coordinator.health(b).breaker.state).toMatchObject({ kind: 'half-open', trialInFlight: false })
    const refusedProbes = b.probes
    await pass(t, 300)
    expect(b.probes).toBeGreaterThan(refusedProbes) // the trial was given back each time
    b.mode = 'standby'
    await pass(t, 200)
    expect(t.coordinator.health(b).breaker.state.kind).toBe('closed')
    expect(t.coordinator.health(b).lastError).toBeNull()
  })

  it('a node that has never answered (a replica still being built) is probed every health interval whatever its breaker, and serves reads within one of answering', async () => {
    // Found on Patroni (issue 19): a member added at runtime while still cloning had its breaker
    // open for halfOpenAfterMs (10 s by default, doubling to 60 s) when it came up, and took no read till then.
    const t = fakeTopology(['a', 'b', 'c'], { healthCheckIntervalMs: 100, halfOpenAfterMs: 60_000, maxHalfOpenAfterMs: 60_000 })
    const c = t.node('c')
    c.mode = 'down'
    await booted(t)
    await pass(t, 500)
    expect(t.coordinator.health(c).breaker.state.kind).toBe('open')
    const probes = c.probes
    await pass(t, 1_000) // ten health intervals
    expect(c.probes - probes).toBeGreaterThanOrEqual(8)
    // Its first answer is slow (a server just started): health rounds that skip it meanwhile must not shadow it.
    c.mode = 'standby'
    c.answerDelayMs = 150
    await pass(t, 275)
    expect(t.coordinator.health(c).breaker.state.kind).toBe('closed')
    expect(servesReads(c, t.coordinator.health(c))).toBe(true)
  })

  it('a node that never answers never holds up the health of the others: rounds go on at their interval while its probes hang', async () => {
    const t = fakeTopology(['a', 'b', 'c'], { healthCheckIntervalMs: 100, probeTimeoutMs: 1_000 })
    const c = t.node('c')
    c.mode = 'hang'
    const b = t.node('b')
    await t.coordinator.start()
    await pass(t, 2_000) // the first election waits for c's probe deadline
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
    const before = b.probes
    const hangs = c.probes
    await pass(t, 1_000)
    // ~10 rounds probe b; c gets one probe at a time (each hangs for the 1 s deadline).
    expect(b.probes - before).toBeGreaterThanOrEqual(8)
    expect(c.probes - hangs).toBeLessThanOrEqual(2)
  })

  it('a primary re-verified while its round still waits on a standby (a watch window, a frozen node) is health-checked from then on, so its failure is seen within probeTimeoutMs + 1.2 × healthCheckIntervalMs', async () => {
    // Found by npm run bench (frozen-primary detection, 1.9-2.0 s against a 1.6 s bound): the first
    // check of a re-verified primary waited for the round that verified it, and that round for a
    // standby answering at the end of its watch window (up to probeTimeoutMs / 2) or its deadline.
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, probeTimeoutMs: 1_000, discoveryIntervalMs: 50 })
    await booted(t)
    const a = t.node('a')
    const downs = (): number => t.named('endpointDown').filter((e: { endpoint: string }) => e.endpoint === 'a').length
    /** Steps until `a` has gone down `n` times; the clock ms then. */
    const untilDown = async (n: number): Promise<number> => {
      await stepUntil(t, () => downs() >= n, 1_000)
      expect(downs()).toBe(n)
      return t.clock.now()
    }
    // a freezes and is left; b now answers only at the end of a 900 ms window.
    t.node('b').answerDelayMs = 900
    a.mode = 'hang'
    await untilDown(1)
    a.mode = 'primary'
    await stepUntil(t, () => t.coordinator.requests.readyWriteTarget()?.endpoint === a, 1_000)
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(a)
    // Frozen again right after it was verified, while b's probe is still out.
    a.mode = 'hang'
    const frozenAt = t.clock.now()
    const downAt = await untilDown(2)
    expect(downAt - frozenAt).toBeLessThanOrEqual(1_000 + 1.2 * 100 + 10)
  })

  it('a node that stops answering while its promotion hook runs is not handed the writes when the hook times out (onPromoteFailure: proceed)', async () => {
    // Found by the simulator with its detection bound (seed 5088 of --members --faults
    // freeze,crash-primary): the candidate froze during a hook that then hit onPromoteTimeoutMs; its
    // probe had failed meanwhile, yet the pool adopted it and wrote to a frozen node.
    const t = fakeTopology(['a', 'b'], { probeTimeoutMs: 200, discoveryIntervalMs: 50, healthCheckIntervalMs: 100, onPromote: async () => undefined, onPromoteTimeoutMs: 500, onPromoteFailure: 'proceed' })
    await booted(t)
    const [a, b] = [t.node('a'), t.node('b')]
    // The hook's session on b never connects: the hook runs until its deadline.
    ;(b.write as unknown as { acquire: (cb: unknown) => void }).acquire = () => undefined
    a.mode = 'down'
    b.mode = 'primary'
    await stepUntil(t, () => t.coordinator.state.kind === 'adopting', 400)
    expect(t.coordinator.state).toMatchObject({ kind: 'adopting', candidate: b })
    b.mode = 'hang'
    await pass(t, 1_000, 5)
    expect(t.named('failover').filter((e: { to: string }) => e.to === 'b')).toEqual([])
    // Back: adopted again (its hook runs again).
    b.mode = 'primary'
    await stepUntil(t, () => t.coordinator.requests.readyWriteTarget()?.endpoint === b, 600)
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(b)
  })

  it("a verified primary whose breaker is open is still health-checked, so its failure is seen within the detection bound", async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, probeTimeoutMs: 1_000, halfOpenAfterMs: 10_000, maxHalfOpenAfterMs: 10_000 })
    await booted(t)
    const a = t.node('a')
    // Failed requests opened it; the pool still writes to a (nothing has probed it since).
    for (let i = 0; i < 10 && t.coordinator.health(a).breaker.allowsTraffic; i++) t.coordinator.health(a).breaker.recordFailure()
    expect(t.coordinator.health(a).breaker.allowsTraffic).toBe(false)
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(a)
    a.mode = 'hang'
    const frozenAt = t.clock.now()
    const downAt = await stepUntil(t, () => t.coordinator.requests.readyWriteTarget()?.endpoint !== a, 600)
    expect(downAt).not.toBeNull()
    expect(downAt! - frozenAt).toBeLessThanOrEqual(1_000 + 1.2 * 100 + 10)
  })

  it('a doubt raised while a health probe of the primary is out, the primary frozen: that probe timing out confirms the doubt, within the detection bound (seed 692 of --faults freeze)', async () => {
    // The confirming probe queues behind the one in flight (one monitor session per node), and the
    // doubt made that one's era stale: its timeout counted for nothing, and the frozen primary was
    // left only when the confirm timed out too, a probe deadline later.
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, probeTimeoutMs: 1_000 })
    const target = await booted(t)
    const a = t.node('a')
    a.mode = 'hang'
    const frozenAt = t.clock.now()
    const sent = a.probes
    await stepUntil(t, () => a.probes !== sent, 100)
    expect(a.probes).toBe(sent + 1)
    // The application's own BEGIN READ ONLY transaction fails a write meanwhile: a doubt.
    t.report(target, Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' }))
    await flush()
    expect(t.coordinator.health(a).doubt).not.toBeNull()
    const leftAt = await stepUntil(t, () => t.coordinator.requests.readyWriteTarget()?.endpoint !== a, 1_000)
    expect(leftAt).not.toBeNull()
    expect(leftAt! - frozenAt).toBeLessThanOrEqual(1_000 + 1.2 * 100 + 10)
  })

  it('a frozen standby delays neither the health checks of the primary nor their interval (seed 35385523: one held the next check for a probe deadline)', async () => {
    const t = fakeTopology(['a', 'b', 'c'], { healthCheckIntervalMs: 100, probeTimeoutMs: 1_000, failureThreshold: 3 })
    await booted(t)
    const a = t.node('a')
    t.node('b').mode = 'hang'
    const before = a.probes
    await pass(t, 1_000)
    // ~10 checks of the primary in a second, while every probe of b hangs for its 1 s deadline.
    expect(a.probes - before).toBeGreaterThanOrEqual(8)
    expect(t.node('b').probes).toBeLessThanOrEqual(3)
  })

  it('while a primary is verified, an open breaker keeps health probes away until its half-open trial', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, halfOpenAfterMs: 1_000, maxHalfOpenAfterMs: 1_000 })
    await booted(t)
    const b = t.node('b')
    b.mode = 'down'
    await pass(t, 400)
    expect(t.coordinator.health(b).breaker.state.kind).toBe('open')
    const probes = b.probes
    await pass(t, 600) // health rounds every ~100 ms meanwhile
    expect(b.probes).toBe(probes)
    b.mode = 'standby'
    await pass(t, 700) // past halfOpenAfterMs (±20%): the trial probe closes it
    expect(t.coordinator.health(b).breaker.state.kind).toBe('closed')
    expect(b.probes).toBeGreaterThan(probes)
    expect(t.named('breakerStateChange').filter((e) => e.endpoint === 'b').map((e) => e.to)).toEqual(['open', 'half-open', 'closed'])
  })

  it('a primary restarted in place is written to again within one discovery interval, whatever its breaker says meanwhile', async () => {
    const t = fakeTopology(['a', 'b'], { discoveryIntervalMs: 250 })
    const target = await booted(t)
    const a = t.node('a')
    a.mode = 'down'
    const era = t.coordinator.health(a).era
    // The crash breaks every pooled connection: many reports, one event, one count.
    const probes = a.probes
    for (let i = 0; i < 4; i++) t.report(target, refused('a'), era)
    await flush()
    expect(t.coordinator.health(a).breaker.state).toEqual({ kind: 'closed', failures: a.probes - probes })
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
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(a)
    expect(t.clock.now() - back).toBeLessThanOrEqual(300)
    expect(t.coordinator.health(a).breaker.state.kind).toBe('closed')
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
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(b)
    expect(t.named('failover')).toEqual([expect.objectContaining({ from: 'a', to: 'b', epoch: 2 })])
    // The pool left a: everything still running there was cut.
    expect(a.actions).toContain('leave')
  })

  it('the row that showed the promotion verifies the promoted node: no second round trip to it before adopting', async () => {
    const t = fakeTopology(['a', 'b'])
    await booted(t)
    const [a, b] = [t.node('a'), t.node('b')]
    a.mode = 'down'
    // Its next probe would take the whole probe timeout: only the watch's row can verify it now.
    b.mode = 'hang'
    t.watches.promote('b', { inRecovery: false, readOnly: false, systemId: 'S1', timeline: 2, latencyMs: 1 } as ProbeResult)
    await flush() // no time passes
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(b)
    expect(t.named('failover')).toEqual([expect.objectContaining({ from: 'a', to: 'b' })])
  })

  it('the first discovery waits for every endpoint before trusting any cluster identity', async () => {
    const t = fakeTopology(['a', 'b'])
    t.node('b').mode = 'hang'
    await t.coordinator.start()
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()).toBeNull()
    t.clock.advance(3_000) // b's probe times out
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
  })
})

describe('coordinator: leaving a primary', () => {
  it('a demotion seen by a health probe leaves the primary at once (cut, its running statements given probeTimeoutMs to answer) and elects the promoted node', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100 })
    await booted(t)
    t.node('a').mode = 'read-only'
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    t.clock.advance(120)
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.node('a').actions).toContain('leave')
    expect(t.node('a').cutGraces).toEqual([t.options.probeTimeoutMs])
    expect(t.named('roleChange')).toContainEqual(expect.objectContaining({ endpoint: 'a', from: 'primary', to: 'read-only' }))
  })

  it('a standby on an older timeline that does not stream serves no reads from the moment a primary on a newer one is elected, not from its next probe', async () => {
    // Found by the simulator (seed 604 of --members --faults freeze,crash-primary): the promoted node
    // was out of the pool's sight when it was promoted; once it was elected, a standby that had
    // replayed past its fork point still served a read until its next health check.
    const t = fakeTopology(['a', 'b', 'c'], { healthCheckIntervalMs: 10_000, discoveryIntervalMs: 50 })
    await booted(t)
    const [a, b, c] = [t.node('a'), t.node('b'), t.node('c')]
    expect(servesReads(b, t.coordinator.health(b))).toBe(true)
    b.receiving = false
    a.mode = 'down'
    c.mode = 'primary'
    c.timeline = 2
    // c answers after b in every round: b's probe is judged while the cluster's timeline is still 1.
    c.answerDelayMs = 10
    t.report(t.coordinator.requests.readyWriteTarget()!, refused('a'))
    await stepUntil(t, () => t.coordinator.requests.readyWriteTarget()?.endpoint === c, 400, 1)
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint).toBe(c)
    expect(b.lastProbe?.timeline).toBe(1)
    expect(t.coordinator.health(b).readFence).toMatch(/older than the primary's 2/)
    expect(servesReads(b, t.coordinator.health(b))).toBe(false)
    // The new primary itself is judged by its winning answer, not its last probe as a standby.
    expect(t.coordinator.health(c).readFence).toBeNull()
    // Once it follows the new primary, its next probe lifts the fence.
    b.receiving = true
    b.timeline = 2
    await probeAgain(t, b)
    expect(t.coordinator.health(b).readFence).toBeNull()
    expect(servesReads(b, t.coordinator.health(b))).toBe(true)
  })

  it('a standby streaming the timeline the cluster left (promoted by hand, nobody repointed it) serves no reads from the election on, and again once it streams the new one', async () => {
    // Found by the simulator (--faults promote-by-hand) and on PostgreSQL 15 (data-path.test.ts):
    // it streamed timeline 1 from the old primary, lag 0, and answered every read without a row the
    // new primary had acknowledged.
    const t = fakeTopology(['a', 'b', 'c'], { healthCheckIntervalMs: 10_000 })
    await booted(t)
    const [a, b, c] = [t.node('a'), t.node('b'), t.node('c')]
    b.receivedTimeline = 1
    await probeAgain(t, b)
    expect(servesReads(b, t.coordinator.health(b))).toBe(true)
    // a stays up and writable on timeline 1.
    await promoteByHand(t, c)
    expect(a.actions).toContain('leave')
    expect(t.coordinator.health(b).readFence).toMatch(/streams timeline 1 from a primary the cluster left/)
    expect(servesReads(b, t.coordinator.health(b))).toBe(false)
    // Repointed, it streams timeline 2: its next probe lifts the fence.
    b.receivedTimeline = 2
    b.timeline = 2
    await probeAgain(t, b)
    expect(t.coordinator.health(b).readFence).toBeNull()
    expect(servesReads(b, t.coordinator.health(b))).toBe(true)
  })

  it('where the role may not read pg_stat_wal_receiver, a streaming standby on an older timeline is not fenced (it may be streaming the new one before its next restartpoint)', async () => {
    const t = fakeTopology(['a', 'b', 'c'], { healthCheckIntervalMs: 10_000 })
    await booted(t)
    const [b, c] = [t.node('b'), t.node('c')]
    expect(b.receivedTimeline).toBeNull()
    await promoteByHand(t, c)
    expect(t.coordinator.health(b).readFence).toBeNull()
    expect(servesReads(b, t.coordinator.health(b))).toBe(true)
  })

  it('a 25006 from a demoted primary is confirmed by the probe: the node is left with the answer grace, a failed one is cut at once', async () => {
    const t = fakeTopology(['a', 'b'], { probeTimeoutMs: 700 })
    const target = await booted(t)
    t.node('a').mode = 'read-only'
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    t.report(target, Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' }))
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.node('a').cutGraces).toEqual([700])
    // b, verified writable, then fails: nothing it said makes its statements worth waiting for.
    const onB = t.coordinator.requests.readyWriteTarget()!
    t.node('b').mode = 'down'
    t.report(onB, refused('b'))
    await flush()
    expect(t.node('b').cutGraces).toEqual([0])
  })

  it('leaving assigns the new writer state before any connection is cut: a checkout the cut aborts is routed again after, never to the node left', async () => {
    const t = fakeTopology(['a', 'b'])
    await booted(t)
    const a = t.node('a')
    const seen: string[] = []
    const originalLeave = a.leave.bind(a)
    a.leave = (graceMs?: number) => {
      seen.push(t.coordinator.state.kind)
      originalLeave(graceMs)
    }
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    t.watches.promote('b')
    // When a's connections were cut, nothing routed writes to a any more.
    expect(seen).toEqual(['discovering'])
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('b')
  })

  it('a standby made primary by switchTo leaves no answer grace behind', async () => {
    const t = fakeTopology(['a', 'b'], { probeTimeoutMs: 700 })
    await booted(t)
    // b was a standby (it takes no writes); promoted and chosen by switchTo, it is writable.
    expect(t.coordinator.health(t.node('b')).saidReadOnly).toBe(true)
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    await new Maintenance(t.coordinator, t.options).switchTo('b')
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.coordinator.health(t.node('b')).saidReadOnly).toBe(false)
    t.node('a').mode = 'primary'
    t.node('a').timeline = 3
    t.coordinator.promotionNoticed(t.node('a'))
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
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
    t.report(t.coordinator.requests.readyWriteTarget()!, refused('a'))
    await flush() // the probe confirms a is down: the pool leaves it
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
    expect(t.node('a').actions).toContain('leave')
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
    t.report(target, refused('a'))
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
    expect(t.coordinator.requests.readyWriteTarget()).toBeNull()
    expect(t.coordinator.state.kind).toBe('discovering')
    // Only once b has answered (here: failed) may anyone else be elected.
    await pass(t, 2_100)
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
    expect(t.coordinator.cluster.epoch).toBe(4)
  })
})

describe('coordinator: the state store heals', () => {
  it('a record the store lost between two failovers is written again within 30 s of health checks', async () => {
    const store = new MemoryStateStore()
    const t = fakeTopology(['a', 'b'], { stateStore: store, healthCheckIntervalMs: 2_000 })
    await booted(t)
    await pass(t, 100)
    expect((await store.load())?.primary).toBe('a')
    // A Redis restart without persistence, a deleted file: the record is gone.
    ;(store as unknown as { reset(): void }).reset?.()
    await store.compareAndSet((await store.load())?.version ?? null, { primary: 'b', systemId: 'S1', timeline: 1, epoch: 0, updatedAt: new Date().toISOString(), reason: 'an older record put back' })
    await pass(t, 31_000, 500)
    const healed = await store.load()
    expect(healed).toMatchObject({ primary: 'a', epoch: t.coordinator.cluster.epoch })
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
  })
})
