import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { ConfigError } from '../../src/errors.js'
import { FailoverPool } from '../../src/index.js'
import { resolveOptions } from '../../src/options.js'

// Only loopback hosts (and garbage that cannot resolve anywhere): constructing a pool starts probes.
const LOOPBACK = ['127.0.0.1', 'localhost', '127.0.0.9', '[::1]']
const PASSWORD = 'Zq9-secret-Xv'

const host = fc.oneof(fc.constantFrom(...LOOPBACK), fc.constantFrom('', ',', '@', ':', '/', '%zz', ' '))
const port = fc.oneof(fc.integer({ min: -5, max: 70_000 }).map(String), fc.constantFrom('', 'abc', '5432', '0'))
const url = fc
  .record({
    scheme: fc.constantFrom('postgres://', 'postgresql://', 'mysql://', '', 'postgres:/'),
    user: fc.constantFrom('app', '', 'u%20x'),
    password: fc.constantFrom(PASSWORD, ''),
    hosts: fc.array(fc.tuple(host, fc.option(port)), { minLength: 1, maxLength: 3 }),
    db: fc.constantFrom('/app', '', '/', '/a%2Fb'),
    query: fc.constantFrom('', '?sslmode=disable', '?application_name=x&connect_timeout=1', '?%%'),
  })
  .map(({ scheme, user, password, hosts, db, query }) => {
    const cred = user || password ? `${user}${password ? `:${password}` : ''}@` : ''
    return `${scheme}${cred}${hosts.map(([h, p]) => (p === null ? h : `${h}:${p}`)).join(',')}${db}${query}`
  })
const configObject = fc.record(
  {
    host: fc.constantFrom(...LOOPBACK.map((h) => h.replace(/[[\]]/g, ''))),
    port: fc.oneof(fc.integer({ min: -1, max: 70_000 }), fc.constant('5432' as unknown as number)),
    name: fc.oneof(fc.string({ maxLength: 5 }), fc.constant(undefined)),
    password: fc.constant(PASSWORD),
    weight: fc.oneof(fc.double(), fc.constant(undefined)),
    bogus: fc.constant(1),
  },
  { requiredKeys: ['host'] },
)
const anyValue = fc.oneof(fc.integer({ min: -10, max: 100_000 }), fc.double(), fc.string({ maxLength: 6 }), fc.boolean(), fc.constant(null), fc.constant(undefined), fc.constant(Infinity), fc.constant(Number.NaN))
const options = fc.record(
  {
    endpoints: fc.oneof(url, fc.array(fc.oneof(url, configObject), { maxLength: 3 }), anyValue),
    max: anyValue,
    connectionTimeoutMillis: anyValue,
    idleTimeoutMillis: anyValue,
    failoverTimeoutMs: anyValue,
    probeTimeoutMs: anyValue,
    routeReads: fc.constantFrom('off', 'auto', 'sometimes'),
    readStrategy: fc.constantFrom('random', 'fastest'),
    maxUses: anyValue,
    retryBudget: fc.oneof(fc.record({ burst: anyValue, perSecond: anyValue }), anyValue),
    [fc.sample(fc.constantFrom('maxx', 'timeout', 'hosts'), 1)[0]!]: anyValue,
  },
  { requiredKeys: [] },
)

// Mostly-valid inputs too, so the accepting path is explored as much as the rejecting one.
const validUrl = fc
  .record({ hosts: fc.uniqueArray(fc.tuple(fc.constantFrom(...LOOPBACK), fc.integer({ min: 1, max: 65_535 })), { minLength: 1, maxLength: 3, selector: ([h, p]) => `${h}:${p}` }), db: fc.constantFrom('app', 'x') })
  .map(({ hosts, db }) => `postgres://app:${PASSWORD}@${hosts.map(([h, p]) => `${h}:${p}`).join(',')}/${db}`)
const validOptions = fc.record(
  {
    endpoints: validUrl,
    max: fc.integer({ min: 1, max: 50 }),
    connectionTimeoutMillis: fc.integer({ min: 0, max: 10_000 }),
    idleTimeoutMillis: fc.oneof(fc.integer({ min: 0, max: 10_000 }), fc.constant(null)),
    failoverTimeoutMs: fc.integer({ min: 0, max: 60_000 }),
    routeReads: fc.constantFrom('off', 'auto'),
    readStrategy: fc.constantFrom('round-robin', 'random', 'least-busy', 'lowest-latency'),
    maxUses: fc.oneof(fc.integer({ min: 1, max: 100 }), fc.constant(Infinity)),
    retryBudget: fc.record({ burst: fc.nat(), perSecond: fc.nat() }, { requiredKeys: [] }),
  },
  { requiredKeys: ['endpoints'] },
)
const anyOptions = fc.oneof(options, validOptions)

describe('option and connection-string fuzzing', () => {
  it('every input either resolves or throws a ConfigError that never shows the password', () => {
    let accepted = 0
    let rejected = 0
    fc.assert(
      fc.property(anyOptions, (input) => {
        try {
          const resolved = resolveOptions(input)
          accepted++
          for (const e of resolved.endpoints) expect(LOOPBACK.map((h) => h.replace(/[[\]]/g, ''))).toContain(e.host)
        } catch (err) {
          rejected++
          if (!(err instanceof ConfigError)) throw new Error(`not a ConfigError for ${JSON.stringify(input)}: ${String(err)}`)
          expect(err.message).not.toContain(PASSWORD)
          expect(JSON.stringify(err)).not.toContain(PASSWORD)
          expect(err.field.length).toBeGreaterThan(0)
        }
      }),
      { numRuns: 2000 },
    )
    // Both paths must really be explored, or the property proves little.
    expect(accepted).toBeGreaterThan(50)
    expect(rejected).toBeGreaterThan(50)
  })

  it('every accepted input constructs a pool that ends promptly (nothing hangs)', async () => {
    await fc.assert(
      fc.asyncProperty(anyOptions, async (input) => {
        let pool: FailoverPool
        try {
          pool = new FailoverPool({ ...(input as object), failoverTimeoutMs: 50 } as never)
        } catch (err) {
          if (!(err instanceof ConfigError)) throw err
          return
        }
        await Promise.race([pool.end(), new Promise((_, reject) => setTimeout(() => reject(new Error('end() hung')), 2_000))])
        expect(pool.ended).toBe(true)
      }),
      { numRuns: 150 },
    )
  })
})
