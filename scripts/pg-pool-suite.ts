/**
 * Runs node-postgres's own pg-pool test suite (packages/pg-pool/test at a tag of a node-postgres
 * checkout) against FailoverPool with one endpoint, and against pg-pool itself on the same server,
 * and prints which tests each passes:
 *
 *   npm run pg-pool-suite -- --repo <node-postgres checkout> [--ref pg-pool@3.14.0] [--failover-timeout-ms 0|default] [--grep text] [--stack]
 *
 * Nothing of the suite is copied into this repository: its files are read from the checkout (a git
 * repository: `git show <ref>:<file>`) into a temporary directory, next to an index.js that exports
 * the pool under test where the suite requires `'../'`. Its own test dependencies (mocha,
 * expect.js, co, bluebird, lodash, at the versions its package.json names) are installed once
 * into ~/.cache/pg-failover-pool/pg-pool-suite. The server is a throw-away PostgreSQL on loopback,
 * reached through the PG* environment variables the suite's `new Pool()` relies on.
 */
import { execFileSync, spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { homedir, tmpdir } from 'node:os'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { startCluster } from '../test/support/cluster.js'

function arg(name: string): string | undefined {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? undefined : process.argv[i + 1]
}

const repo = arg('repo') ?? process.env.NODE_POSTGRES_REPO
if (!repo) {
  console.error('usage: scripts/pg-pool-suite.ts --repo <node-postgres git checkout> [--ref pg-pool@3.14.0] [--failover-timeout-ms 0|default]')
  process.exit(2)
}
const ref = arg('ref') ?? 'pg-pool@3.14.0'
const timeoutArg = arg('failover-timeout-ms') ?? '0'
const grep = arg('grep')
const root = fileURLToPath(new URL('../', import.meta.url))
const dist = join(root, 'dist', 'index.cjs')
if (!existsSync(dist)) throw new Error('dist/index.cjs is missing: run `npm run build` first')

const git = (...args: string[]): string => execFileSync('git', ['-C', repo, ...args], { encoding: 'utf8', maxBuffer: 64 << 20 })
const suiteFiles = git('ls-tree', '--name-only', ref, 'packages/pg-pool/test/').split('\n').filter((f) => f.endsWith('.js'))
const manifest = JSON.parse(git('show', `${ref}:packages/pg-pool/package.json`)) as { devDependencies: Record<string, string> }

// The suite's own test dependencies, installed once per version set.
const deps = ['mocha', 'expect.js', 'co', 'bluebird', 'lodash'].map((name) => `${name}@${manifest.devDependencies[name] ?? 'latest'}`)
const cache = join(homedir(), '.cache', 'pg-failover-pool', 'pg-pool-suite', deps.join('+').replace(/[^\w.@+-]/g, '_'))
if (!existsSync(join(cache, 'node_modules', 'mocha'))) {
  mkdirSync(cache, { recursive: true })
  execFileSync('npm', ['install', '--prefix', cache, '--no-audit', '--no-fund', '--no-save', ...deps], { stdio: 'inherit' })
}

// pg-native, for the one test that uses `require('pg').native` (node-postgres's own checkout has it as a
// workspace package). It builds against libpq (libpq-dev and a C++ toolchain); without them that test
// fails for pg-pool and FailoverPool alike, and the rest runs as before.
const nativeCache = join(homedir(), '.cache', 'pg-failover-pool', 'pg-pool-suite', 'pg-native')
if (!existsSync(join(nativeCache, 'node_modules', 'pg-native'))) {
  try {
    mkdirSync(nativeCache, { recursive: true })
    execFileSync('npm', ['install', '--prefix', nativeCache, '--no-audit', '--no-fund', '--no-save', 'pg-native@3'], { stdio: 'inherit' })
  } catch (err) {
    console.error(`pg-native could not be installed (${(err as Error).message.split('\n')[0]}): its test will fail for both pools`)
  }
}

/** A directory holding the suite at `test/` and the pool under test at `index.js` (what `require('../')` finds). */
function suiteDir(indexJs: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'pgfp-pg-pool-suite-'))
  mkdirSync(join(dir, 'test'))
  for (const file of suiteFiles) writeFileSync(join(dir, 'test', file.split('/').pop()!), git('show', `${ref}:${file}`))
  writeFileSync(join(dir, 'index.js'), indexJs)
  return dir
}

interface MochaJson {
  stats: { passes: number; failures: number; pending: number; tests: number }
  passes: { fullTitle: string }[]
  failures: { fullTitle: string; err: { message?: string; stack?: string } }[]
}

function runSuite(label: string, indexJs: string, env: NodeJS.ProcessEnv): MochaJson {
  const dir = suiteDir(indexJs)
  try {
    // Each file runs in its own mocha process, as a crash (process.exit in the suite's setup on an
    // unhandled rejection) must cost that file only; --exit as pg-pool's own runs end.
    const merged: MochaJson = { stats: { passes: 0, failures: 0, pending: 0, tests: 0 }, passes: [], failures: [] }
    for (const file of suiteFiles.map((f) => f.split('/').pop()!).filter((f) => f !== 'setup.js')) {
      const args = [join(cache, 'node_modules', 'mocha', 'bin', 'mocha.js'), '--reporter', 'json', '--timeout', '10000', '--exit', join(dir, 'test', 'setup.js'), join(dir, 'test', file)]
      if (grep) args.push('--grep', grep)
      const result = spawnSync(process.execPath, args, { cwd: dir, env: { ...env, NODE_PATH: [join(cache, 'node_modules'), join(nativeCache, 'node_modules'), join(root, 'node_modules')].join(':') }, encoding: 'utf8', timeout: 120_000, maxBuffer: 64 << 20 })
      const start = result.stdout.indexOf('{\n')
      let report: MochaJson | null = null
      try {
        report = start === -1 ? null : (JSON.parse(result.stdout.slice(start)) as MochaJson)
      } catch {
        report = null
      }
      if (!report) {
        merged.failures.push({ fullTitle: `${file} (the file did not complete: exit ${result.status}${result.signal ? `, ${result.signal}` : ''})`, err: { message: result.stderr.split('\n').slice(-5).join(' | ') } })
        merged.stats.failures++
        continue
      }
      merged.stats.passes += report.stats.passes
      merged.stats.failures += report.stats.failures
      merged.stats.pending += report.stats.pending
      merged.stats.tests += report.stats.tests
      merged.passes.push(...report.passes)
      merged.failures.push(...report.failures)
    }
    console.log(`${label}: ${merged.stats.passes} passed, ${merged.stats.failures} failed, ${merged.stats.pending} pending`)
    return merged
  } finally {
    rmSync(dir, { recursive: true, force: true })
  }
}

const cluster = await startCluster({ standbys: 0 })
try {
  const node = cluster.nodes[0]!.config
  const env = { ...process.env, PGHOST: node.host, PGPORT: String(node.port), PGUSER: node.user, PGPASSWORD: node.password, PGDATABASE: node.database }
  const reference = runSuite('pg-pool', `module.exports = require(${JSON.stringify(join(root, 'node_modules', 'pg-pool'))})\n`, env)
  const options = timeoutArg === 'default' ? '' : `failoverTimeoutMs: ${Number(timeoutArg)}, `
  const ours = runSuite(
    `FailoverPool (${timeoutArg === 'default' ? 'default options' : `failoverTimeoutMs: ${timeoutArg}`})`,
    // One endpoint, from the same PG* variables pg-pool reads; everything else as the suite passes it.
    `const { FailoverPool } = require(${JSON.stringify(dist)})\n` +
      `const oneEndpoint = (o) => (o && (o.endpoints || o.connectionString || o.host) ? {} : { host: process.env.PGHOST, port: Number(process.env.PGPORT) })\n` +
      `class Pool extends FailoverPool { constructor(options) { super({ ${options}...oneEndpoint(options), ...options }) } }\n` +
      `module.exports = Pool\n`,
    env,
  )
  const passedByReference = new Set(reference.passes.map((p) => p.fullTitle))
  const passedByUs = new Set(ours.passes.map((p) => p.fullTitle))
  const missing = [...passedByReference].filter((t) => !passedByUs.has(t))
  console.log(`FailoverPool passes ${[...passedByReference].filter((t) => passedByUs.has(t)).length} of the ${passedByReference.size} that pg-pool passes`)
  for (const title of missing) {
    const failure = ours.failures.find((f) => f.fullTitle === title)
    console.log(`  - ${title}${failure ? `: ${(failure.err.message ?? '').split('\n')[0]}` : ' (did not run)'}`)
    // --stack: where it failed (the suite's line and ours).
    if (failure && process.argv.includes('--stack')) console.log((failure.err.stack ?? '').split('\n').slice(1, 8).map((l) => `      ${l.trim()}`).join('\n'))
  }
  for (const f of ours.failures) if (!passedByReference.has(f.fullTitle)) console.log(`  (also failed: ${f.fullTitle}: ${(f.err.message ?? "").split("\n")[0]})`)
  const refFailures = reference.failures.map((f) => f.fullTitle)
  if (refFailures.length > 0) console.log(`pg-pool itself fails here: ${refFailures.join('; ')}`)
} finally {
  await cluster.destroy()
}
