/**
 * withFailover's replication config: every server listed is one endpoint, compared as the pool
 * resolves endpoints (so the same server written as a URL and as host/port is one endpoint, and
 * an IPv6 host matches its bracketed URL form). Pure option handling: the ports refuse connections.
 */
import { describe, expect, it } from 'vitest'
import { withFailover } from '../../src/integrations/typeorm.js'
import type { FailoverPool } from '../../src/failover-pool.js'

/** The endpoints of the pool TypeORM gets for the master (it passes the master's address, as here). */
function endpointNames(replication: { master: Record<string, unknown>; slaves: Array<Record<string, unknown>> }): string[] {
  const options = withFailover({ type: 'postgres', replication } as never) as unknown as { driver: { Pool: new (o: Record<string, unknown>) => FailoverPool } }
  const { url, host, port } = replication.master
  const pool = new options.driver.Pool(url !== undefined ? { connectionString: url, max: 1 } : { host, port, max: 1 })
  pool.on('error', () => undefined)
  const names = pool.status().endpoints.map((e) => e.name)
  void pool.end()
  return names
}

describe('withFailover: replication servers become distinct endpoints', () => {
  it('a slave given as a URL that names the master (host/port) is not a second endpoint', () => {
    expect(
      endpointNames({
        master: { host: '127.0.0.1', port: 5001, username: 'u', password: 'p', database: 'db' },
        slaves: [{ url: 'postgres://u:p@127.0.0.1:5001/db' }, { url: 'postgres://u:p@127.0.0.1:5002,127.0.0.1:5003/db' }],
      }),
    ).toEqual(['127.0.0.1:5001', '127.0.0.1:5002', '127.0.0.1:5003'])
  })

  it('an IPv6 host matches its bracketed form in a URL', () => {
    expect(
      endpointNames({
        master: { url: 'postgres://u:p@[::1]:5001,[::1]:5002/db' },
        slaves: [{ host: '::1', port: 5002, username: 'u', password: 'p', database: 'db' }],
      }),
    ).toEqual(['[::1]:5001', '[::1]:5002'])
  })
})
