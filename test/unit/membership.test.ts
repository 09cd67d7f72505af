import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import { SwitchoverRefusedError } from '../../src/errors.js'
import { resolveEndpoints } from '../../src/endpoint/endpoint-config.js'
import { Maintenance } from '../../src/topology/maintenance.js'
import { Membership } from '../../src/topology/membership.js'
import { ReadTargets } from '../../src/routing/read-targets.js'
import { FakeEndpoint, fakeTopology, flush } from '../support/fake-topology.js'

beforeEach(() => {
  vi.spyOn(Math, 'random').mockReturnValue(0.5)
})
afterEach(() => {
  vi.restoreAllMocks()
})

/** The coordinator's rules for a changing endpoint list, on fake nodes and a fake clock. */
function setup(modeOf: (name: string) => FakeEndpoint['mode'] = () => 'standby') {
  const t = fakeTopology(['a', 'b'])
  const made: FakeEndpoint[] = []
  const membership = new Membership(t.coordinator, new Maintenance(t.coordinator, t.options), t.options, (r) => {
    const e = new FakeEndpoint(r, t.options.poolConfig, t.clock)
    e.mode = modeOf(r.name)
    made.push(e)
    return e
  })
  const list = (names: string[]) => resolveEndpoints(names.map((name) => ({ name, host: `10.0.0.${name.charCodeAt(0) - 96}`, port: 5432 })), t.options.poolConfig)
  return { t, made, membership, list }
}

async function booted(t: ReturnType<typeof fakeTopology>): Promise<void> {
  await t.coordinator.start()
  await flush()
  expect(t.coordinator.state.kind).toBe('verified')
}

describe('membership changes', () => {
  it('a byte lag limit still holds once the lost primary is removed from the list: standbys are measured against where it was last seen', async () => {
    const t = fakeTopology(['a', 'b', 'c'], { maxReplicaLagBytes: 1024 })
    const membership = new Membership(t.coordinator, new Maintenance(t.coordinator, t.options), t.options, () => {
      throw new Error('no endpoint is made here')
    })
    const reads = new ReadTargets(t.coordinator, t.options)
    const [a, b, c] = t.endpoints as [FakeEndpoint, FakeEndpoint, FakeEndpoint]
    c.lsn = '0/2000000' // 16 MiB behind the primary (detached long ago, say)
    await booted(t)
    expect(reads.lagBytes(c)).toBe(0x1000000n)
    a.mode = 'down'
    t.report(t.coordinator.requests.readyWriteTarget()!, Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
    await flush()
    expect(t.coordinator.state).toMatchObject({ kind: 'discovering', loss: { from: 'a' } })
    await membership.change(t.options.endpoints.filter((r) => r.name !== 'a'), 'test')
    expect(t.coordinator.endpoints.map((e) => e.name)).toEqual(['b', 'c'])
    expect(reads.lagBytes(c)).toBe(0x1000000n)
    for (let i = 0; i < 10; i++) expect(reads.choose({ exclude: new Set(), maxStalenessMs: undefined, minLsn: null })).toMatchObject({ kind: 'replica', endpoint: b })
  })

  it('keeps unchanged endpoints as they are, probes a new one at once, and forgets a removed one', async () => {
    const { t, made, membership, list } = setup()
    await booted(t)
    const [a, b] = t.endpoints
    await membership.change(list(['a', 'b', 'c']), 'test')
    expect(t.coordinator.endpoints.slice(0, 2)).toEqual([a, b])
    expect(made.map((e) => e.name)).toEqual(['c'])
    await flush()
    expect(made[0]!.probes).toBeGreaterThan(0)
    expect(t.coordinator.roleOf(made[0]!)).toBe('standby')

    await membership.change(list(['a', 'c']), 'test')
    expect(t.coordinator.endpoints.map((e) => e.name)).toEqual(['a', 'c'])
    expect(t.coordinator.isMember(b!)).toBe(false)
    // A late outcome of the removed node moves nothing (and does not throw).
    const probesBefore = b!.probes
    t.report({ endpoint: b!, lane: b!.read, generation: t.coordinator.generation, role: 'replica', caughtUp: true }, Object.assign(new Error('connect ECONNREFUSED'), { code: 'ECONNREFUSED' }))
    await flush()
    expect(t.coordinator.state.kind).toBe('verified')
    // No round probes it any more.
    t.coordinator.startRound('test')
    await flush()
    expect(b!.probes).toBe(probesBefore)
  })

  it('refuses to remove the primary while the new list has no verified primary, and changes nothing', async () => {
    const { t, made, membership, list } = setup()
    await booted(t)
    const before = t.coordinator.endpoints
    const refusal = await membership.change(list(['b', 'c']), 'test').catch((err: unknown) => err)
    expect(refusal).toBeInstanceOf(SwitchoverRefusedError)
    expect((refusal as Error).message).toBe('Cannot remove a, the primary: no endpoint of the new list is a verified primary (b: standby, c: standby)')
    expect(t.coordinator.endpoints).toBe(before)
    expect(made).toHaveLength(1) // c, made for the check and closed again
  })

  it('removing the primary switches writes to the verified primary of the new list first', async () => {
    const { t, membership, list } = setup()
    await booted(t)
    t.node('b').mode = 'primary'
    t.node('b').timeline = 2
    t.node('a').mode = 'down'
    await membership.change(list(['b']), 'test')
    expect(t.coordinator.endpoints.map((e) => e.name)).toEqual(['b'])
    const s = t.coordinator.state
    expect(s.kind === 'verified' && s.primary.name).toBe('b')
    expect(t.named('failover').map((f: { from: string; to: string }) => `${f.from}->${f.to}`)).toEqual(['a->b'])
  })

  it('runs changes one at a time', async () => {
    const { t, membership, list } = setup()
    await booted(t)
    const first = membership.change(list(['a', 'b', 'c']), 'first')
    const second = membership.change(list(['a', 'c']), 'second')
    await Promise.all([first, second])
    expect(t.coordinator.endpoints.map((e) => e.name)).toEqual(['a', 'c'])
  })

  it("new settings for the primary (same name) move writes to the re-made endpoint, by the object, and retire the old one", async () => {
    // The same node, reached with the new settings, answers as the primary it is.
    const { t, made, membership } = setup((name) => (name === 'a' ? 'primary' : 'standby'))
    await booted(t)
    const [oldA] = t.endpoints
    const changed = resolveEndpoints(
      [
        { name: 'a', host: '10.0.0.1', port: 5432, application_name: 'renamed' },
        { name: 'b', host: '10.0.0.2', port: 5432 },
      ],
      t.options.poolConfig,
    )
    await membership.change(changed, 'test')
    const s = t.coordinator.state
    expect(s.kind === 'verified' && s.primary).toBe(made[0])
    expect(t.coordinator.endpoints.map((e) => e.name)).toEqual(['a', 'b'])
    expect(t.coordinator.isMember(oldA!)).toBe(false)
    expect(oldA!.actions).toContain('leave')
  })
})
