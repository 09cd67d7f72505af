import { afterAll, describe, expect, it } from 'vitest'
import { dnsSrv } from '../../src/membership/dns-srv.js'
import { DnsServer } from '../support/dnsmasq.js'

/** dnsSrv against a real DNS server (dnsmasq on loopback) whose records change. */
describe('dnsSrv: endpoints from DNS SRV records', () => {
  let dns: DnsServer | null = null
  afterAll(async () => dns?.stop())

  it('lists one endpoint per record, follows the records as they change, and fails when there are none or no server answers', async () => {
    const name = '_postgresql._tcp.db.pgfp.test'
    dns = await DnsServer.start([
      { name, target: '127.0.0.1', port: 5434, priority: 10, weight: 0 },
      { name, target: '127.0.0.1', port: 5433, priority: 0, weight: 3 },
    ])
    const provider = dnsSrv(name, { servers: [dns.address], user: 'app', database: 'shop', refreshMs: 1_000 })
    expect(provider.description).toBe(`DNS SRV ${name}`)
    expect(await provider.list(2_000)).toEqual([
      { user: 'app', database: 'shop', host: '127.0.0.1', port: 5433, name: '127.0.0.1:5433', weight: 3 },
      { user: 'app', database: 'shop', host: '127.0.0.1', port: 5434, name: '127.0.0.1:5434', weight: 1 },
    ])

    await dns.setRecords([...dns.records, { name, target: '127.0.0.1', port: 5435, priority: 10, weight: 1 }])
    expect((await provider.list(2_000)).map((e) => (e as { name?: string }).name)).toEqual(['127.0.0.1:5433', '127.0.0.1:5434', '127.0.0.1:5435'])

    await dns.setRecords([{ name: '_other._tcp.pgfp.test', target: '127.0.0.1', port: 5433 }])
    await expect(provider.list(2_000)).rejects.toThrow(/ENOTFOUND|ENODATA|EREFUSED/)

    await dns.stop()
    await expect(provider.list(500)).rejects.toThrow(/ECONNREFUSED|ETIMEOUT|no answer within 500 ms/)
  })
})
