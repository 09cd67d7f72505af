import http from 'node:http'
import type { AddressInfo } from 'node:net'
import { afterEach, describe, expect, it } from 'vitest'
import { EndpointSourceError } from '../../src/errors.js'
import { type EndpointList, endpointsFrom } from '../../src/membership/endpoint-provider.js'
import { MembershipFeed } from '../../src/membership/membership-feed.js'
import { patroniMembers } from '../../src/membership/patroni-members.js'
import type { ResolvedEndpoint } from '../../src/endpoint/endpoint-config.js'
import { ConfigError } from '../../src/errors.js'
import { dnsSrv } from '../../src/membership/dns-srv.js'
import { FakeClock } from '../support/fake-clock.js'

const settle = (): Promise<void> => new Promise((resolve) => setImmediate(resolve))

/** Moves the fake clock on by `ms` in small steps, letting each answer arrive before the next timer. */
async function pass(clock: FakeClock, ms: number): Promise<void> {
  for (let left = ms; left > 0; left -= 50) {
    clock.advance(Math.min(50, left))
    await settle()
  }
}

/** A feed over a provider whose next answer the test sets. */
function feedOf(answer: () => EndpointList | Promise<EndpointList>, refreshMs = 1_000) {
  const clock = new FakeClock()
  const applied: string[][] = []
  const rejected: EndpointSourceError[] = []
  let asked = 0
  const provider = endpointsFrom(
    () => {
      asked++
      return answer()
    },
    { refreshMs, description: 'test source' },
  )
  const feed = new MembershipFeed(provider, { user: 'app', password: 'sekret' }, 500, clock, {
    changed: (list: readonly ResolvedEndpoint[]) => applied.push(list.map((e) => e.name)),
    rejected: (err) => rejected.push(err),
  })
  return { clock, feed, applied, rejected, asked: () => asked }
}

describe('endpoint providers: a changing list, applied only when usable', () => {
  it('applies the first good list and each change, not an unchanged answer', async () => {
    let list: EndpointList = ['postgres://db1:5432/app', 'postgres://db2:5432/app']
    const { clock, feed, applied } = feedOf(() => list)
    feed.start()
    await settle()
    expect(applied).toEqual([['db1:5432', 'db2:5432']])
    await pass(clock, 1_200)
    expect(applied).toHaveLength(1)
    list = ['postgres://db1:5432/app', 'postgres://db2:5432/app', 'postgres://db3:5432/app']
    await pass(clock, 1_200)
    expect(applied).toEqual([
      ['db1:5432', 'db2:5432'],
      ['db1:5432', 'db2:5432', 'db3:5432'],
    ])
    feed.stop()
  })

  const bad: Array<[string, () => EndpointList | Promise<EndpointList>, RegExp]> = [
    ['an unreachable source', () => Promise.reject(new Error('connect ECONNREFUSED 10.0.0.1:8008')), /ECONNREFUSED/],
    ['an empty list', () => [], /the list is empty/],
    ['not a list', () => ({ hosts: [] }) as unknown as EndpointList, /expected a list of endpoints/],
    ['two entries for one server', () => ['postgres://db1:5432/app', 'postgres://db1:5432/app'], /duplicate endpoint/],
    ['two entries with one name', () => [{ host: 'db1', name: 'a' }, { host: 'db2', name: 'a' }], /duplicate endpoint name/],
    ['a malformed entry', () => ['postgres://app:hunter2@db1:notaport/app'], /endpoints\[0\]/],
    ['no answer in time', () => new Promise<EndpointList>(() => undefined), /no answer within 500 ms/],
  ]
  for (const [what, answer, reason] of bad) {
    it(`keeps the last good list on ${what}, and says why`, async () => {
      let current: () => EndpointList | Promise<EndpointList> = () => ['postgres://db1:5432/app']
      const { clock, feed, applied, rejected } = feedOf(() => current())
      feed.start()
      await settle()
      current = answer
      await pass(clock, 1_200)
      await pass(clock, 600)
      expect(applied).toEqual([['db1:5432']])
      expect(rejected).toHaveLength(1)
      expect(rejected[0]).toBeInstanceOf(EndpointSourceError)
      expect(rejected[0]!.source).toBe('test source')
      expect(rejected[0]!.message).toMatch(reason)
      expect(rejected[0]!.message).not.toContain('hunter2')
      expect(feed.lastError).toBe(rejected[0])
      // A good answer again: nothing to apply (it is the list in use), and the error is cleared.
      current = () => ['postgres://db1:5432/app']
      await pass(clock, 1_200)
      expect(applied).toEqual([['db1:5432']])
      expect(feed.lastError).toBeNull()
      feed.stop()
    })
  }

  it('asks one question at a time: refreshes asked for meanwhile become one more question', async () => {
    let release: (() => void) | null = null
    const { feed, asked } = feedOf(() => new Promise<EndpointList>((resolve) => (release = () => resolve(['postgres://db1:5432/app']))))
    feed.start()
    await settle()
    for (let i = 0; i < 5; i++) feed.refreshNow()
    expect(asked()).toBe(1)
    release!()
    await settle()
    await settle()
    expect(asked()).toBe(2)
    feed.stop()
  })

  it('rejects bad provider options with the field named', () => {
    expect(() => endpointsFrom('no' as never)).toThrow(ConfigError)
    expect(() => endpointsFrom(() => [], { refreshMs: 0 })).toThrow(/endpointsFrom\.refreshMs/)
    expect(() => dnsSrv('')).toThrow(/dnsSrv\.name/)
    expect(() => dnsSrv('_pg._tcp.db', { servers: [] })).toThrow(/dnsSrv\.servers/)
    expect(() => patroniMembers({ urls: [] })).toThrow(/patroniMembers\.urls/)
    expect(() => patroniMembers({ urls: ['db1:8008'] })).toThrow(/patroniMembers\.urls\[0\]/)
  })
})

describe("patroniMembers: Patroni's /cluster member list", () => {
  let server: http.Server | null = null
  afterEach(() => new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve())))

  async function patroniAnswering(body: () => unknown): Promise<string> {
    server = http.createServer((req, res) => {
      if (req.url !== '/cluster') return void res.writeHead(404).end()
      res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(body()))
    })
    await new Promise<void>((resolve) => server!.listen(0, '127.0.0.1', resolve))
    return `http://127.0.0.1:${(server!.address() as AddressInfo).port}`
  }

  it('lists every member at its advertised host and port, named after it, with the given client settings', async () => {
    const url = await patroniAnswering(() => ({
      members: [
        { name: 'pg1', role: 'leader', state: 'running', host: '127.0.0.1', port: 5433, timeline: 2 },
        { name: 'pg2', role: 'replica', state: 'streaming', host: '127.0.0.1', port: 5434, timeline: 2, lag: 0 },
      ],
    }))
    const list = await patroniMembers({ urls: ['http://127.0.0.1:1', url], user: 'app', database: 'shop' }).list(1_000)
    expect(list).toEqual([
      { user: 'app', database: 'shop', name: 'pg1', host: '127.0.0.1', port: 5433 },
      { user: 'app', database: 'shop', name: 'pg2', host: '127.0.0.1', port: 5434 },
    ])
  })

  it('fails on a member without host or port, and when no API answers', async () => {
    const url = await patroniAnswering(() => ({ members: [{ name: 'pg1', role: 'leader', host: '127.0.0.1' }] }))
    await expect(patroniMembers({ urls: [url] }).list(1_000)).rejects.toThrow(/member #1 \(pg1\) has no usable name, host and port/)
    await expect(patroniMembers({ urls: ['http://127.0.0.1:1'] }).list(1_000)).rejects.toThrow(/no Patroni REST API answered/)
  })
})
