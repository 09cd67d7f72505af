/**
 * Check 6's evidence: unhandled errors, leaked sockets and timers (every Timeout and TCP handle
 * created during the run is tracked through async_hooks, unref'd ones included, and must be gone
 * after pool.end() and cluster.destroy(); process.getActiveResourcesInfo() must be back to its
 * baseline), sessions left on the servers, and the heap sampled after a forced GC at every fault.
 */
import { createHook } from 'node:async_hooks'
import v8 from 'node:v8'
import vm from 'node:vm'
import type { FailoverPool } from '../../src/index.js'
import type { Cluster } from '../support/cluster.js'
import { CHECK_TITLES, type CheckResult } from './checks.js'
import { now, sleep, within } from './clock.js'

// ------------------------------------------------------------------------------ unhandled errors

export class UnhandledErrors {
  readonly errors: string[] = []
  readonly #onRejection = (reason: unknown): void => {
    this.errors.push(`unhandledRejection: ${describe(reason)}`)
  }
  readonly #onException = (err: unknown): void => {
    this.errors.push(`uncaughtException: ${describe(err)}`)
  }

  install(): void {
    process.on('unhandledRejection', this.#onRejection)
    process.on('uncaughtException', this.#onException)
  }

  uninstall(): void {
    process.off('unhandledRejection', this.#onRejection)
    process.off('uncaughtException', this.#onException)
  }
}

function describe(err: unknown): string {
  if (err instanceof Error) return `${err.name}: ${err.message}\n${(err.stack ?? '').split('\n').slice(1, 4).join('\n')}`
  return String(err)
}

// ------------------------------------------------------------------------------ handles and timers

const TRACKED = new Set(['Timeout', 'TCPWRAP', 'TCPCONNECTWRAP'])

interface Live {
  readonly type: string
  readonly at: number
  readonly resource: object
}

/** Tracks every Timeout and TCP handle created while enabled, until it is destroyed. */
export class HandleTracker {
  readonly #live = new Map<number, Live>()
  readonly #hook = createHook({
    init: (asyncId, type, _trigger, resource) => {
      if (TRACKED.has(type)) this.#live.set(asyncId, { type, at: now(), resource })
    },
    destroy: (asyncId) => {
      this.#live.delete(asyncId)
    },
  })
  readonly baseline = activeResources()

  enable(): void {
    this.#hook.enable()
  }

  disable(): void {
    this.#hook.disable()
  }

  /** Handles created while tracking and still alive, described. */
  leftovers(): string[] {
    // A fired or cleared Timeout is `_destroyed` at once; its destroy hook may come a tick later.
    return [...this.#live.values()].filter((l) => (l.resource as { _destroyed?: boolean })._destroyed !== true).map((l) => describeHandle(l))
  }

  /** Active (ref'd) resources beyond the baseline taken at construction, by type. */
  extraActive(): string[] {
    const nowCounts = activeResources()
    const extra: string[] = []
    for (const [type, n] of nowCounts) {
      if (!['TCPSocketWrap', 'Timeout', 'TCPWRAP', 'TCPServerWrap'].includes(type)) continue
      const before = this.baseline.get(type) ?? 0
      if (n > before) extra.push(`${n - before} x ${type}`)
    }
    return extra
  }
}

function activeResources(): Map<string, number> {
  const counts = new Map<string, number>()
  for (const type of process.getActiveResourcesInfo()) counts.set(type, (counts.get(type) ?? 0) + 1)
  return counts
}

function describeHandle(l: Live): string {
  const r = l.resource as { _onTimeout?: { name?: string; toString(): string }; _idleTimeout?: number; _repeat?: unknown; getpeername?: (out: Record<string, unknown>) => number }
  if (l.type === 'Timeout') {
    const fn = r._onTimeout
    const body = fn ? (fn.name || fn.toString().replace(/\s+/g, ' ').slice(0, 90)) : '?'
    return `Timeout ${r._idleTimeout ?? '?'} ms${r._repeat ? ' (interval)' : ''}: ${body}`
  }
  const peer: Record<string, unknown> = {}
  try {
    r.getpeername?.(peer)
  } catch {
    // closed
  }
  return `${l.type} to ${String(peer.address ?? '?')}:${String(peer.port ?? '?')}`
}

// ------------------------------------------------------------------------------ memory

let gcFn: (() => void) | null | undefined

/** A full GC: global.gc when exposed, else one obtained at run time. */
export function forceGc(): boolean {
  if (gcFn === undefined) {
    const exposed = (globalThis as { gc?: () => void }).gc
    if (exposed) gcFn = exposed
    else {
      try {
        v8.setFlagsFromString('--expose_gc')
        gcFn = vm.runInNewContext('gc') as () => void
      } catch {
        gcFn = null
      }
    }
  }
  if (!gcFn) return false
  gcFn()
  return true
}

export interface HeapSample {
  readonly label: string
  readonly heapUsed: number
}

export class HeapSampler {
  readonly samples: HeapSample[] = []
  gcAvailable = true

  sample(label: string): HeapSample {
    this.gcAvailable = forceGc() && this.gcAvailable
    const s = { label, heapUsed: process.memoryUsage().heapUsed }
    this.samples.push(s)
    return s
  }

  summary(): { first: number; last: number; max: number; growth: number } | null {
    if (this.samples.length === 0) return null
    const first = this.samples[0]!.heapUsed
    const last = this.samples[this.samples.length - 1]!.heapUsed
    const max = Math.max(...this.samples.map((s) => s.heapUsed))
    return { first, last, max, growth: (last - first) / first }
  }
}

// ------------------------------------------------------------------------------ check 6

export interface ResourceEvidence {
  readonly unhandled: readonly string[]
  /** pool.totalCount + pool.reader.totalCount + waiting, after pool.end(). */
  readonly poolClientsAfterEnd: number
  /** Our sessions still open on the servers after pool.end(), by node. */
  readonly serverSessionsAfterEnd: ReadonlyArray<{ node: string; sessions: number }>
  /** Requests still in flight when the workload was told to stop and given time to finish. */
  readonly hungRequests: number
  readonly leftoverHandles: readonly string[]
  readonly extraActive: readonly string[]
  readonly heap: { first: number; last: number; max: number; growth: number } | null
  readonly maxHeapGrowth: number
}

export function checkResources(r: ResourceEvidence): CheckResult {
  const problems: string[] = []
  for (const u of r.unhandled) problems.push(u.split('\n')[0]!)
  if (r.poolClientsAfterEnd > 0) problems.push(`${r.poolClientsAfterEnd} pool clients still counted after pool.end()`)
  for (const s of r.serverSessionsAfterEnd) if (s.sessions > 0) problems.push(`${s.sessions} sessions of the pool still open on ${s.node} after pool.end()`)
  if (r.hungRequests > 0) problems.push(`${r.hungRequests} requests still in flight after the workload stopped`)
  for (const h of r.leftoverHandles) problems.push(`leaked ${h}`)
  for (const a of r.extraActive) problems.push(`active beyond baseline: ${a}`)
  if (r.heap && r.heap.growth > r.maxHeapGrowth) problems.push(`heap grew ${(r.heap.growth * 100).toFixed(0)}% (${mb(r.heap.first)} -> ${mb(r.heap.last)})`)
  const heap = r.heap ? `heap ${mb(r.heap.first)} -> ${mb(r.heap.last)} (max ${mb(r.heap.max)}, ${r.heap.growth >= 0 ? '+' : ''}${(r.heap.growth * 100).toFixed(0)}%)` : 'heap not sampled'
  return {
    id: 6,
    title: CHECK_TITLES[6],
    pass: problems.length === 0,
    summary: problems.length === 0 ? `no unhandled error, 0 clients / sessions / handles left, ${heap}` : `${problems.length} problems; ${heap}`,
    violations: problems.slice(0, 12),
  }
}

export function mb(bytes: number): string {
  return `${(bytes / 1024 / 1024).toFixed(1)} MB`
}

/** Polls until `fn` returns an empty list (or `timeoutMs` passes); returns the last list. */
export async function settle<T>(fn: () => T[] | Promise<T[]>, timeoutMs: number): Promise<T[]> {
  const deadline = now() + timeoutMs
  let last = await fn()
  while (last.length > 0 && now() < deadline) {
    await sleep(50)
    last = await fn()
  }
  return last
}

// ------------------------------------------------------------------------------ teardown

/** The pool's sessions as the servers see them: its own, its monitor's and its promotion watches. */
const OUR_SESSIONS = `SELECT count(*)::int AS n FROM pg_stat_activity
  WHERE application_name IN ($1, $1 || ' monitor', 'pg-failover-pool promotion watch')`

/**
 * Ends the pool, counts what it left (its clients, our sessions on every running server),
 * destroys the cluster, then waits for every tracked handle to close. Never throws: a failure is
 * returned as `error`.
 */
export async function tearDown(
  pool: FailoverPool | null,
  cluster: Cluster | null,
  tracker: HandleTracker,
  applicationName: string,
): Promise<Pick<ResourceEvidence, 'poolClientsAfterEnd' | 'serverSessionsAfterEnd' | 'leftoverHandles' | 'extraActive'> & { error: string | null }> {
  let error: string | null = null
  let poolClientsAfterEnd = 0
  const serverSessionsAfterEnd: Array<{ node: string; sessions: number }> = []
  try {
    if (pool) {
      await within(pool.end(), 15_000, 'pool.end()')
      poolClientsAfterEnd = pool.totalCount + pool.reader.totalCount + pool.waitingCount
    }
    for (const n of cluster?.nodes ?? []) {
      if (cluster!.postmasterPid(n) === null) continue
      const left = await settle(async () => {
        const [row] = await cluster!.sql<{ n: number }>(n, OUR_SESSIONS, [applicationName])
        return row && row.n > 0 ? [row.n] : []
      }, 3_000)
      serverSessionsAfterEnd.push({ node: n.name, sessions: left[0] ?? 0 })
    }
  } catch (err) {
    error = `teardown: ${(err as Error).message}`
  }
  if (cluster) await within(cluster.destroy(), 30_000, 'cluster.destroy()').catch((err: Error) => (error ??= err.message))
  const leftoverHandles = await settle(() => tracker.leftovers(), 5_000)
  const extraActive = await settle(() => tracker.extraActive(), 2_000)
  tracker.disable()
  return { poolClientsAfterEnd, serverSessionsAfterEnd, leftoverHandles, extraActive, error }
}
