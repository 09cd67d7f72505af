import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import pg from 'pg'
import { describe, expect, it } from 'vitest'

// `npm test` builds first; these checks are about what gets published, not the sources.
const require = createRequire(import.meta.url)
const dist = new URL('../../dist/', import.meta.url)

describe('published package shape', () => {
  it('is built', () => {
    expect(existsSync(new URL('index.js', dist))).toBe(true)
    expect(existsSync(new URL('index.cjs', dist))).toBe(true)
  })

  it.each([
    ['ESM', async () => ({ main: await import('pg-failover-pool'), typeorm: await import('pg-failover-pool/typeorm') })],
    ['CJS', async () => ({ main: require('pg-failover-pool'), typeorm: require('pg-failover-pool/typeorm') })],
  ])('%s: pg-failover-pool/typeorm shares the main entry\'s FailoverPool class (one copy of the code per format)', async (_, load) => {
    const { main, typeorm } = (await load()) as { main: typeof import('../../src/index.js'); typeorm: typeof import('../../src/integrations/typeorm.js') }
    const driver = typeorm.failoverDriver({ promotionWatch: false })
    const pool = new driver.Pool({ connectionString: 'postgres://u:p@127.0.0.1:1/db', host: undefined, port: undefined })
    try {
      expect(pool).toBeInstanceOf(main.FailoverPool)
      expect(pool).toBeInstanceOf(pg.Pool)
    } finally {
      await pool.end()
    }
  })

  it('npm pack / npm publish build dist/ first, and publish it', () => {
    const manifest = require('../../package.json') as { scripts: Record<string, string>; files: string[] }
    expect(manifest.scripts.prepack).toMatch(/\bbuild\b/)
    expect(manifest.files).toContain('dist')
  })

  it.each([
    ['ESM', async () => (await import('pg-failover-pool')) as unknown as typeof import('../../src/index.js')],
    ['CJS', async () => require('pg-failover-pool') as typeof import('../../src/index.js')],
  ])('%s entry: the class keeps its name and extends the application\'s pg.Pool', async (_, load) => {
    const mod = await load()
    expect(mod.FailoverPool.name).toBe('FailoverPool')
    // Port 1 on loopback refuses at once; the pool is only constructed, never used.
    const pool = new mod.FailoverPool({ endpoints: ['postgres://u:p@127.0.0.1:1/db'], failoverTimeoutMs: 10 })
    try {
      expect(pool).toBeInstanceOf(pg.Pool)
      expect(pool.constructor.name).toBe('FailoverPool')
      expect('then' in pool).toBe(false)
      for (const name of ['onModuleInit', 'onModuleDestroy', 'onApplicationBootstrap', 'beforeApplicationShutdown', 'onApplicationShutdown']) {
        expect(name in pool).toBe(false)
      }
      expect(mod.isConfigError(new mod.ConfigError('x', 1, 'bad'))).toBe(true)
    } finally {
      await pool.end()
    }
  })
})
