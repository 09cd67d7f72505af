/**
 * FailoverPools against test clusters, with one set of defaults, and automatic teardown of
 * everything a test starts.
 *
 *   const res = useResources()                   // afterEach: end pools, destroy clusters, ...
 *   const c = await res.cluster({ standbys: 1 })
 *   const pool = res.pool(c, { failoverTimeoutMs: 800 })   // a test's deliberate override
 *
 * `useResources('all')` tears down in afterAll instead, for a cluster shared by a describe block.
 * Call it at the top of a file or inside a describe callback (where vitest hooks may be
 * registered), never inside a test.
 */
import { mkdtempSync, rmSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterAll, afterEach } from 'vitest'
import { type EndpointConfig, FailoverPool, type FailoverPoolOptions } from '../../src/index.js'
import { type Cluster, type ClusterNode, type ClusterOptions, startCluster } from './cluster.js'
import { waitUntil } from './wait.js'

/**
 * The defaults every test pool gets, unless a test says otherwise at the call site:
 * - `max: 4`: enough for the concurrency the tests create, small enough to bound what a fault can hit;
 * - `connectionTimeoutMillis: 2_000`: a refused or frozen node fails fast, a loaded machine still connects;
 * - `failoverTimeoutMs: 20_000`: a request outwaits a slow promotion on a loaded 2-core machine and
 *   still fails with NoPrimaryError well inside vitest's 60 s test timeout;
 * - `healthCheckIntervalMs: 100`: the pool sees role changes within a fraction of the tests'
 *   5 s polls (the library's 2 s default would make them slow and timing-dependent);
 * - `application_name: 'pgfp-test'`: the pool's own sessions can be counted on a server.
 * Tests that need the library's defaults or another value pass it explicitly.
 */
export const POOL_DEFAULTS = {
  max: 4,
  connectionTimeoutMillis: 2_000,
  failoverTimeoutMs: 20_000,
  healthCheckIntervalMs: 100,
  application_name: 'pgfp-test',
} as const satisfies Partial<FailoverPoolOptions>

/** The application_name of test pools' sessions (see {@link POOL_DEFAULTS}). */
export const TEST_APPLICATION_NAME = POOL_DEFAULTS.application_name

/** Backend pids of the sessions named `applicationName` on `node` (a pool's monitor session is named `<name> monitor`: not counted). */
export async function sessionPids(cluster: { sql<T>(node: ClusterNode, text: string): Promise<T[]> }, node: ClusterNode, applicationName: string = TEST_APPLICATION_NAME): Promise<number[]> {
  const rows = await cluster.sql<{ pid: number }>(node, `SELECT pid FROM pg_stat_activity WHERE application_name = '${applicationName}' ORDER BY pid`)
  return rows.map((r) => r.pid)
}

/** Endpoint configs for nodes, named after them (`node0`, ...) so status() and events name nodes as the tests do. */
export function endpointsOf(nodes: readonly ClusterNode[]): EndpointConfig[] {
  return nodes.map((n) => ({ ...n.config, name: n.name }))
}

/**
 * A FailoverPool over a cluster's nodes (or the given nodes, in that order) with {@link POOL_DEFAULTS}
 * and `options` over them. Idle-client errors are expected in these tests (nodes are stopped under
 * the pool), so the pool and its reader get an 'error' listener. Not tracked: prefer `useResources().pool`.
 */
export function makePool(target: Cluster | readonly ClusterNode[], options: Partial<FailoverPoolOptions> = {}): FailoverPool {
  const nodes = Array.isArray(target) ? (target as readonly ClusterNode[]) : (target as Cluster).nodes
  const pool = new FailoverPool({ endpoints: endpointsOf(nodes), ...POOL_DEFAULTS, ...options })
  pool.on('error', () => undefined)
  pool.reader.on('error', () => undefined)
  return pool
}

/**
 * Waits until the pool's health checks have verified `count` standbys (role standby, no error on
 * the last check). Reads only go to verified replicas: before that a read (or a read connection,
 * placed when it is made) falls back to the primary by `readFallback`, so a test that checks where
 * reads land must wait for this first. Fails after `timeout` ms with the pool's status.
 */
export async function replicasKnown(pool: FailoverPool, count: number, timeout = 10_000): Promise<void> {
  const known = (): number => pool.status().endpoints.filter((e) => e.role === 'standby' && e.lastError === null).length
  await waitUntil(() => known() === count, { what: `${count} verified standbys`, timeout, diagnostics: () => `status: ${JSON.stringify(pool.status())}` })
}

/** What `track()` can tear down: pools (`end`), clusters and servers (`destroy`), stores (`close`). */
export type Closable = { end(): unknown; readonly ending?: boolean } | { destroy(): unknown } | { close(): unknown }

export interface Resources {
  /** Registers `resource` for teardown (`end()` unless already ending, else `destroy()`, else `close()`) and returns it. */
  track<T extends Closable>(resource: T): T
  /** Registers any other teardown step. */
  defer(teardown: () => unknown): void
  /** Starts a cluster (test/support/cluster.ts) that is destroyed at teardown. */
  cluster(options?: ClusterOptions): Promise<Cluster>
  /** {@link makePool}, ended at teardown. */
  pool(target: Cluster | readonly ClusterNode[], options?: Partial<FailoverPoolOptions>): FailoverPool
  /** A fresh temporary directory, removed at teardown. */
  tempDir(prefix?: string): string
  /** Runs the teardown now (the registered hook does this); later registrations start a new round. */
  teardown(): Promise<void>
}

/**
 * A pool's end() may take this long before teardown moves on anyway: a pool whose end() waits
 * for a client that a failed test never released must not keep its cluster alive.
 */
const STEP_TIMEOUT_MS = 5_000

/**
 * Registers an afterEach (scope 'each', default) or afterAll (scope 'all') hook in the current
 * file or describe block that tears down, newest first, everything registered through the
 * returned object: pools before the clusters they point at. Teardown errors of pools are ignored
 * (a test may have ended them, or broken them on purpose); the first error of any other step is
 * thrown after every step has run.
 */
export function useResources(scope: 'each' | 'all' = 'each'): Resources {
  let steps: Array<{ what: string; run: () => unknown; ignoreErrors: boolean }> = []

  const resources: Resources = {
    track(resource) {
      if ('end' in resource && typeof resource.end === 'function') {
        const pool = resource as { end(): unknown; readonly ending?: boolean }
        steps.push({ what: 'end a pool', ignoreErrors: true, run: () => (pool.ending === true ? undefined : pool.end()) })
      } else if ('destroy' in resource && typeof resource.destroy === 'function') {
        steps.push({ what: 'destroy', ignoreErrors: false, run: () => (resource as { destroy(): unknown }).destroy() })
      } else {
        steps.push({ what: 'close', ignoreErrors: false, run: () => (resource as { close(): unknown }).close() })
      }
      return resource
    },
    defer(teardown) {
      steps.push({ what: 'a deferred teardown', ignoreErrors: false, run: teardown })
    },
    async cluster(options = {}) {
      return resources.track(await startCluster(options))
    },
    pool(target, options = {}) {
      return resources.track(makePool(target, options))
    },
    tempDir(prefix = 'pgfp-test-') {
      const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
      resources.defer(() => rmSync(dir, { recursive: true, force: true }))
      return dir
    },
    async teardown() {
      const todo = steps.reverse()
      steps = []
      let firstError: unknown
      for (const step of todo) {
        let timer: NodeJS.Timeout | undefined
        const timedOut = new Promise<void>((resolve) => {
          timer = setTimeout(resolve, STEP_TIMEOUT_MS)
        })
        try {
          const running = Promise.resolve().then(step.run)
          // Only pools are cut short; a cluster's destroy() must finish before the next test starts.
          await (step.ignoreErrors ? Promise.race([running, timedOut]) : running)
        } catch (err) {
          if (!step.ignoreErrors) firstError ??= new Error(`teardown: ${step.what} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err })
        } finally {
          clearTimeout(timer)
        }
      }
      if (firstError !== undefined) throw firstError
    },
  }

  if (scope === 'each') afterEach(() => resources.teardown())
  else afterAll(() => resources.teardown())
  return resources
}
