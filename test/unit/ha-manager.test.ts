import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest'
import type { HaView } from '../../src/advanced.js'
import { ConfigError, patroni } from '../../src/index.js'
import type { ProbeResult } from '../../src/endpoint/role-probe.js'
import { parseCluster } from '../../src/ha/patroni.js'
import { type Candidate, elect } from '../../src/topology/election.js'
import { FakeClock } from '../support/fake-clock.js'
import { fakeTopology, flush } from '../support/fake-topology.js'

const probe = (p: Partial<ProbeResult>): ProbeResult => ({ inRecovery: false, readOnly: false, systemId: 'S1', timeline: 1, receiving: true, receivedTimeline: null, lsn: '0/1', lagMs: 0, serverVersion: 150000, latencyMs: 1, ...p })
const writable = (name: string, timeline = 1): Candidate => ({ name, outcome: { kind: 'ok', probe: probe({ timeline }) } })
const known = { systemId: 'S1', minTimeline: 1 }

describe('elect with the HA manager as a tie-breaker', () => {
  it('two writable nodes on one timeline: without a leader writes are refused; with one among them, it wins and the other is fenced', () => {
    expect(elect([writable('a'), writable('b')], known).kind).toBe('ambiguous')
    expect(elect([writable('a'), writable('b')], { ...known, leader: 'b' })).toMatchObject({ kind: 'primary', name: 'b', fenced: ['a'], byLeader: true })
  })

  it('never overrides the timeline rule, nor makes a node that is not writable the primary', () => {
    // The leader is on an older timeline than another writable node: the timeline wins.
    expect(elect([writable('a', 2), writable('b', 1)], { ...known, leader: 'b' })).toMatchObject({ kind: 'primary', name: 'a', fenced: ['b'] })
    expect(elect([writable('a', 2), writable('b', 1)], { ...known, leader: 'b' })).not.toHaveProperty('byLeader')
    // The leader is a standby: the tie stays a tie.
    const standby: Candidate = { name: 'c', outcome: { kind: 'ok', probe: probe({ inRecovery: true }) } }
    expect(elect([writable('a'), writable('b'), standby], { ...known, leader: 'c' }).kind).toBe('ambiguous')
  })
})

describe('the coordinator with an HA manager', () => {
  beforeEach(() => void vi.spyOn(Math, 'random').mockReturnValue(0.5))
  afterEach(() => vi.restoreAllMocks())

  const view = (leader: string | null): HaView => ({ leader, members: ['a', 'b'].map((name) => ({ name, host: '', port: 0, role: name === leader ? 'leader' : 'replica', state: 'running', timeline: 1, lagBytes: 0 })) })

  async function twoWritable(manager: { kind: string; view: () => Promise<HaView> } | undefined) {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, ...(manager ? { haManager: manager } : {}) })
    await t.coordinator.start()
    await flush()
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
    t.node('b').mode = 'primary' // b is writable on the same timeline
    for (let i = 0; i < 6; i++) {
      t.clock.advance(25)
      await flush()
    }
    return t
  }

  it('without one, two writable nodes on a timeline refuse writes (split brain)', async () => {
    const t = await twoWritable(undefined)
    expect(t.coordinator.state.kind).toBe('split-brain')
  })

  it("with Patroni's leader key on b, b takes writes and a is fenced (and cut)", async () => {
    const t = await twoWritable({ kind: 'fake', view: async () => view('b') })
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('b')
    expect(t.coordinator.health(t.node('a')).fenced).toBe(true)
    expect(t.node('a').actions).toContain('leave')
    expect(t.named('splitBrain')).toEqual([expect.objectContaining({ chosen: 'b', fenced: ['a'], reason: expect.stringContaining("HA manager's leader key") })])
    expect(t.coordinator.haReport).toMatchObject({ error: null, leader: t.node('b') })
  })

  it('an HA manager that cannot be reached changes nothing: writes are refused as without one', async () => {
    const t = await twoWritable({ kind: 'fake', view: async () => Promise.reject(new Error('connect ECONNREFUSED 127.0.0.1:8008')) })
    expect(t.coordinator.state.kind).toBe('split-brain')
    expect(t.coordinator.haReport?.error?.message).toContain('ECONNREFUSED')
  })

  it('a leader that is not writable is never elected for it', async () => {
    const t = fakeTopology(['a', 'b'], { healthCheckIntervalMs: 100, haManager: { kind: 'fake', view: async () => view('b') } })
    await t.coordinator.start()
    await flush()
    // b holds the leader key but is a standby: a, the only writable node, is the primary.
    expect(t.coordinator.requests.readyWriteTarget()?.endpoint.name).toBe('a')
  })
})

describe('patroni()', () => {
  let server: http.Server | undefined
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())))

  it('reads /cluster from the first URL that answers, and maps its members', async () => {
    const body = JSON.stringify({
      members: [
        { name: 'pg0', role: 'leader', state: 'running', host: '127.0.0.1', port: 5432, timeline: 3 },
        { name: 'pg1', role: 'sync_standby', state: 'streaming', host: '127.0.0.1', port: 5433, timeline: 3, lag: 0 },
        { name: 'pg2', role: 'replica', state: 'streaming', host: '127.0.0.1', port: 5434, timeline: 3, lag: 'unknown' },
      ],
    })
    server = http.createServer((req, res) => {
      if (req.url === '/cluster') res.end(body)
      else res.writeHead(404).end()
    })
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const manager = patroni({ urls: ['http://127.0.0.1:1', `http://127.0.0.1:${port}/`] })
    const result = await manager.view(1_000)
    expect(result.leader).toBe('pg0')
    expect(result.members.map((m) => [m.name, m.role, m.lagBytes])).toEqual([
      ['pg0', 'leader', null],
      ['pg1', 'sync_standby', 0],
      ['pg2', 'replica', null],
    ])
    const endpoints = [{ name: 'db0', host: '127.0.0.1', port: 5432 }, { name: 'pg1', host: 'bouncer', port: 6432 }]
    expect(manager.endpointOf!(result.members[0]!, endpoints)).toBe('db0') // by host and port
    expect(manager.endpointOf!(result.members[1]!, endpoints)).toBe('pg1') // by name
    expect(patroni({ urls: ['http://x:8008'], endpoints: { pg2: 'db2' } }).endpointOf!(result.members[2]!, [...endpoints, { name: 'db2', host: 'b', port: 1 }])).toBe('db2')
  })

  it('fails within its deadline on the injected clock when the API hangs', async () => {
    server = http.createServer(() => undefined) // accepts, never answers
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    const clock = new FakeClock()
    const manager = patroni({ urls: [`http://127.0.0.1:${(server.address() as AddressInfo).port}`], clock })
    const result = manager.view(500).then(() => 'answered', (err: Error) => err.message)
    await new Promise((resolve) => setTimeout(resolve, 50))
    clock.advance(500)
    expect(await result).toMatch(/took longer than 500 ms/)
  })

  it('never shows the REST API password: not in its errors (401, unreachable), not in a ConfigError', async () => {
    server = http.createServer((_req, res) => res.writeHead(401).end())
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    const port = (server.address() as AddressInfo).port
    const manager = patroni({ urls: ['http://admin:s3cret@127.0.0.1:1', `http://admin:s3cret@127.0.0.1:${port}`] })
    const message = await manager.view(1_000).then(() => 'answered', (err: Error) => err.message)
    expect(message).toMatch(/HTTP 401/)
    expect(message).toContain('admin:****@')
    expect(message).not.toContain('s3cret')
    let caught: unknown
    try {
      patroni({ urls: ['ftp://admin:s3cret@db1:8008'] })
    } catch (err) {
      caught = err
    }
    expect((caught instanceof ConfigError) && caught.field).toBe('haManager.urls[0]')
    expect(String((caught as Error).message)).not.toContain('s3cret')
  })

  it('refuses bad options with a ConfigError naming the field, and malformed answers with an error', () => {
    for (const [options, field] of [[{ urls: [] }, 'haManager.urls'], [{ urls: ['db1:8008'] }, 'haManager.urls[0]']] as const) {
      let caught: unknown
      try {
        patroni(options as never)
      } catch (err) {
        caught = err
      }
      expect((caught instanceof ConfigError) && caught.field).toBe(field)
    }
    expect(() => parseCluster('{"nope": 1}')).toThrow(/no members/)
    expect(() => parseCluster('not json')).toThrow()
  })
})
