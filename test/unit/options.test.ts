import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { resolveOptions } from '../../src/options.js'
import { splitMultiHostUrl } from '../../src/endpoint/endpoint-config.js'

function configError(options: unknown): ConfigError {
  try {
    resolveOptions(options)
  } catch (err) {
    expect((err instanceof ConfigError)).toBe(true)
    expect((err as ConfigError).code).toBe('PGFP_CONFIG')
    return err as ConfigError
  }
  throw new Error('expected a ConfigError')
}

describe('resolveOptions', () => {
  it('accepts connection strings and names endpoints host:port', () => {
    const o = resolveOptions({ endpoints: ['postgres://app:pw@db1:5432/app', 'postgres://app:pw@db2:6543/app'], max: 5 })
    expect(o.endpoints.map((e) => e.name)).toEqual(['db1:5432', 'db2:6543'])
    expect(o.poolConfig.max).toBe(5)
    expect(o.failoverTimeoutMs).toBe(30_000)
    expect(o.probeTimeoutMs).toBe(3_000)
  })

  it('splits a libpq multi-host URL into one endpoint per host, keeping credentials and query', () => {
    const o = resolveOptions({ endpoints: 'postgres://u:secret@h1:5432,h2:5433/db?application_name=x' })
    expect(o.endpoints.map((e) => [e.name, e.host, e.port, e.database])).toEqual([
      ['h1:5432', 'h1', 5432, 'db'],
      ['h2:5433', 'h2', 5433, 'db'],
    ])
    expect(splitMultiHostUrl('postgres://u:secret@h1,h2:7/db', 'f')).toEqual(['postgres://u:secret@h1/db', 'postgres://u:secret@h2:7/db'])
  })

  it('accepts config objects with names and keeps their password out of enumeration', () => {
    const o = resolveOptions({ endpoints: [{ name: 'a', host: 'h', port: 1, password: 'topsecret' }], password: 'shared-secret' })
    expect(o.endpoints[0]!.name).toBe('a')
    expect(JSON.stringify(o.endpoints)).not.toContain('topsecret')
    expect(JSON.stringify(o.poolConfig)).not.toContain('shared-secret')
    expect((o.endpoints[0]!.config as { password?: string }).password).toBe('topsecret')
  })

  it.each([
    [{}, 'endpoints'],
    [{ endpoints: [] }, 'endpoints'],
    [{ endpoints: 42 }, 'endpoints'],
    [{ endpoints: ['postgres://a:5432/x', 'postgres://a:5432/x'] }, 'endpoints[1]'],
    [{ endpoints: [{ name: 'x', host: 'a' }, { name: 'x', host: 'b' }] }, 'endpoints[1].name'],
    [{ endpoints: ['not a url'] }, 'endpoints[0]'],
    [{ endpoints: ['mysql://u:pw@h/db'] }, 'endpoints[0]'],
    [{ endpoints: ['postgres://h:99999/db'] }, 'endpoints[0]'],
    [{ endpoints: ['postgres://h:0/db'] }, 'endpoints[0].port'],
    [{ endpoints: ['postgres://h/db'], connectionTimeoutMillis: -1 }, 'connectionTimeoutMillis'],
    [{ endpoints: ['postgres://h/db'], idleTimeoutMillis: 'soon' }, 'idleTimeoutMillis'],
    [{ endpoints: ['postgres://h/db'], failoverTimeoutMs: Number.NaN }, 'failoverTimeoutMs'],
    [{ endpoints: ['postgres://h/db'], max: 2.5 }, 'max'],
    [{ endpoints: ['postgres://h/db'], maxx: 3 }, 'maxx'],
    [{ endpoints: ['postgres://h/db'], host: 'h' }, 'host'],
    [{ endpoints: [{ host: 'h', bogus: 1 }] }, 'endpoints[0].bogus'],
    [{ endpoints: [{ host: 'h', statement_timeout: -5 }] }, 'endpoints[0].statement_timeout'],
    [{ endpoints: 'postgres://u:pw@h1,,h2/db' }, 'endpoints'],
    [{ endpoints: ['postgres://u:pw@h1,,h2/db'] }, 'endpoints[0]'],
    [null, 'options'],
    [{ endpoints: ['postgres://h/db'], retryBudget: { burst: -1 } }, 'retryBudget.burst'],
    [{ endpoints: ['postgres://h/db'], retryBudget: { bursts: 1 } }, 'retryBudget.bursts'],
    [{ endpoints: ['postgres://h/db'], routeReads: 'always' }, 'routeReads'],
    [{ endpoints: ['postgres://h/db'], readStrategy: 'fastest' }, 'readStrategy'],
    [{ endpoints: [{ host: 'h', weight: 0 }] }, 'endpoints[0].weight'],
    // Found by the fuzz test: an undecodable percent escape was accepted as a host name.
    [{ endpoints: 'postgres://app:pw@%zz,127.0.0.1/app' }, 'endpoints[0].host'],
    [{ endpoints: [{ host: 'db 1' }] }, 'endpoints[0].host'],
    [{ endpoints: ['postgres://h/db'], warmStandbys: 'yes' }, 'warmStandbys'],
  ])('rejects %j with a ConfigError naming %s', (options, field) => {
    const err = configError(options)
    expect(err.field).toBe(field)
    expect(err.message).toContain(field)
  })

  it.each(['never', 'manual', 'auto'])('refuses the removed failback option (%s), saying what to do instead', (value) => {
    const err = configError({ endpoints: ['postgres://h/db'], failback: value })
    expect(err.field).toBe('failback')
    expect(err.message).toContain(value)
    expect(err.message).toContain('switchTo(name)')
  })

  it('never echoes a password in the error', () => {
    const err = configError({ endpoints: ['postgres://app:hunter2@db:5432/x', 'postgres://app:hunter2@db:5432/x'] })
    expect(err.message).not.toContain('hunter2')
    const err2 = configError({ endpoints: ['postgres://app:hunter2@db:notaport/x'] })
    expect(err2.message).not.toContain('hunter2')
    expect(JSON.stringify(err2)).not.toContain('hunter2')
    const err3 = configError({ endpoints: [{ host: 'h', password: 'hunter2', bogus: true }] })
    expect(err3.message).not.toContain('hunter2')
    // Found by the fuzz test: malformed URLs (one slash, none) must not show theirs either.
    for (const url of ['postgres:/app:hunter2@/app', 'postgres:app:hunter2@db/app', 'app:hunter2@db/app', ':hunter2@db/app']) expect(configError({ endpoints: url }).message).not.toContain('hunter2')
  })

  it('accepts host names, IPv4, IPv6 and socket directories', () => {
    const o = resolveOptions({ endpoints: ['postgres://u@db-1.example.com/x', 'postgres://u@10.0.0.1/x', 'postgres://u@[::1]:5433/x', 'postgres://u@%2Fvar%2Frun%2Fpostgresql/x'] })
    expect(o.endpoints.map((e) => e.host)).toEqual(['db-1.example.com', '10.0.0.1', '::1', '/var/run/postgresql'])
  })

  it('ignores address keys that frameworks pass unset (TypeORM: host: undefined, port: undefined)', () => {
    const o = resolveOptions({ endpoints: ['postgres://db1/app'], host: undefined, port: undefined, connectionString: undefined })
    expect(o.endpoints.map((e) => e.name)).toEqual(['db1:5432'])
    expect(o.poolConfig).not.toHaveProperty('host')
  })

  it("an endpoint's connection string wins over its object's host, port and database, as in pg (which connects where the string says)", () => {
    const [e] = resolveOptions({ endpoints: [{ connectionString: 'postgres://u:pw@db1:5433/app', host: 'db9', port: 1, database: 'other' }] }).endpoints
    expect([e!.host, e!.port, e!.database, e!.name]).toEqual(['db1', 5433, 'app', 'db1:5433'])
  })

  it('takes a pool-level connectionString (single or libpq multi-host) or host list for the endpoints, as pg.Pool would', () => {
    expect(resolveOptions({ connectionString: 'postgres://u:pw@db1:5432,db2:5433/app?target_session_attrs=read-write' }).endpoints.map((e) => [e.name, e.database])).toEqual([
      ['db1:5432', 'app'],
      ['db2:5433', 'app'],
    ])
    expect(resolveOptions({ connectionString: 'postgres://u:pw@db1/app' }).endpoints.map((e) => e.name)).toEqual(['db1:5432'])
    expect(resolveOptions({ host: 'db1,db2', port: 6432, database: 'app' }).endpoints.map((e) => e.name)).toEqual(['db1:6432', 'db2:6432'])
    expect(resolveOptions({ host: 'db1,db2', port: '5432,5433' }).endpoints.map((e) => e.name)).toEqual(['db1:5432', 'db2:5433'])
  })

  it.each([
    [{ connectionString: 'postgres://u:pw@db1,db2/app?target_session_attrs=prefer-standby' }, 'connectionString[0].target_session_attrs', 'pool.reader'],
    [{ connectionString: 'postgres://u:pw@db1/app?target_session_attrs=bogus' }, 'connectionString.target_session_attrs', "'read-write'"],
    [{ endpoints: ['postgres://db1/app'], connectionString: 'postgres://db2/app' }, 'connectionString', 'either'],
    [{ host: 'db1,db2', port: '5432,5433,5434' }, 'port', 'one per host'],
  ])('refuses %j naming %s', (options, field, words) => {
    const err = configError(options)
    expect(err.field).toBe(field)
    expect(err.message).toContain(words)
  })

  it('names IPv6 endpoints with brackets', () => {
    expect(resolveOptions({ endpoints: ['postgres://u@[::1]:5433/x', { host: 'fe80::2' }] }).endpoints.map((e) => e.name)).toEqual(['[::1]:5433', '[fe80::2]:5432'])
  })

  it('accepts every documented pg.Pool option', () => {
    const o = resolveOptions({
      endpoints: ['postgres://h/db'],
      max: 3, min: 0, idleTimeoutMillis: 1000, connectionTimeoutMillis: 500, maxUses: Infinity,
      allowExitOnIdle: true, maxLifetimeSeconds: 60, application_name: 'app', ssl: false,
      statement_timeout: false, query_timeout: 1000, keepAlive: true,
    })
    expect(o.poolConfig.allowExitOnIdle).toBe(true)
    expect(o.poolConfig.application_name).toBe('app')
  })
})
