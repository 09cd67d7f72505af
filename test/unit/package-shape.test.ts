import { createRequire } from 'node:module'
import { existsSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import pg from 'pg'
import ts from 'typescript'
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
    } finally {
      await pool.end()
    }
  })

  it('the root entry names at most 35 things, types included; the rest is behind pg-failover-pool/advanced', () => {
    // What a user's editor offers after `import { } from 'pg-failover-pool'`, asked of the compiler
    // over the published declaration files (re-exports through shared chunks included).
    const names = (specifier: string): string[] => {
      const probe = fileURLToPath(new URL('../../.package-shape-probe.ts', import.meta.url))
      const host = ts.createCompilerHost({})
      const source = `export * as m from '${specifier}'\n`
      const getSourceFile = host.getSourceFile.bind(host)
      host.getSourceFile = (file, lang) => (file === probe ? ts.createSourceFile(file, source, lang) : getSourceFile(file, lang))
      host.fileExists = ((exists) => (file: string) => file === probe || exists(file))(host.fileExists.bind(host))
      const program = ts.createProgram([probe], { module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, noEmit: true, skipLibCheck: true, types: [] }, host)
      const checker = program.getTypeChecker()
      const file = program.getSourceFile(probe)!
      const declaration = file.statements[0] as ts.ExportDeclaration
      const moduleSymbol = checker.getSymbolAtLocation(declaration.moduleSpecifier!)
      expect(moduleSymbol, `${specifier} resolves to declarations`).toBeDefined()
      return checker.getExportsOfModule(moduleSymbol!).map((symbol) => symbol.name).sort()
    }
    const root = names('pg-failover-pool')
    expect(root.length, root.join(', ')).toBeLessThanOrEqual(35)
    expect(root).toEqual(expect.arrayContaining(['FailoverPool', 'FailoverPoolOptions', 'FailoverPoolStatus', 'FailoverPoolEvents', 'RoutedPool', 'StateStore', 'MemoryStateStore', 'FileStateStore', 'RedisStateStore', 'NoPrimaryError', 'OutcomeUnknownError', 'isOutcomeUnknownError', 'isSafeToRetryError', 'healthHandler', 'registerMetrics']))
    const advanced = names('pg-failover-pool/advanced')
    expect(advanced).toEqual(expect.arrayContaining(['classifyError', 'Clock', 'HaManager', 'RoleChangeEvent', 'RedisStateStoreOptions']))
    // Nothing is public twice: a name lives in one place.
    expect(advanced.filter((name) => root.includes(name))).toEqual([])
  })

  it('instanceof answers for errors from the other module format (two copies of the classes)', async () => {
    const esm = (await import('pg-failover-pool')) as unknown as typeof import('../../src/index.js')
    const cjs = require('pg-failover-pool') as typeof import('../../src/index.js')
    expect(esm.NoPrimaryError).not.toBe(cjs.NoPrimaryError)
    const fromCjs = new cjs.NoPrimaryError([], 10)
    expect(fromCjs instanceof esm.NoPrimaryError).toBe(true)
    expect(fromCjs instanceof esm.FailoverPoolError).toBe(true)
    expect(fromCjs instanceof esm.ConfigError).toBe(false)
    expect(new esm.ConfigError('max', -1, 'must be positive') instanceof cjs.ConfigError).toBe(true)
    expect(new cjs.StateStoreError('timeout', 'slow') instanceof esm.StateStoreError).toBe(true)
    expect(new cjs.StateStoreError('timeout', 'slow') instanceof esm.NoPrimaryError).toBe(false)
    // A driver error is none of ours, whatever its code.
    expect(Object.assign(new Error('x'), { code: '57P01' }) instanceof esm.FailoverPoolError).toBe(false)
  })
})
