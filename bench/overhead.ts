import pg from 'pg'
import { FailoverPool } from '../dist/index.js'
import type { Cluster } from '../test/support/cluster.js'

/** Throughput of one subject at one concurrency. */
export interface ThroughputSample {
  readonly subject: 'pg.Pool' | 'FailoverPool'
  readonly concurrency: number
  readonly queriesPerSecond: number
}

/** Result of the per-query overhead benchmark at one concurrency. */
export interface OverheadResult {
  readonly concurrency: number
  /** Median throughput of the pg.Pool rounds (queries per second). */
  readonly pgPoolQps: number
  readonly failoverPoolQps: number
  /** Median over rounds of FailoverPool / pg.Pool throughput measured back to back (1.0 = no overhead). */
  readonly ratio: number
  /** Client CPU time (user + system) per query, microseconds. */
  readonly pgPoolCpuUs: number
  readonly failoverPoolCpuUs: number
}

interface Run {
  readonly qps: number
  readonly queries: number
  /** Client CPU microseconds spent during the run. */
  readonly cpuUs: number
}

async function drive(pool: pg.Pool, concurrency: number, durationMs: number): Promise<Run> {
  let count = 0
  const deadline = performance.now() + durationMs
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await pool.query('SELECT 1')
      count++
    }
  }
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  const elapsed = performance.now() - started
  const used = process.cpuUsage(cpu)
  return { qps: (count * 1000) / elapsed, queries: count, cpuUs: used.user + used.system }
}

/**
 * `SELECT 1` through a plain pg.Pool and through a FailoverPool (every cluster node as an
 * endpoint) on the same primary. This machine's throughput drifts by ±20% from one second to the
 * next (two cores shared by the client, three servers and a noisy host), so the two run back to
 * back in each round, in alternating order, and the figure is the median of the per-round ratios;
 * client CPU per query is reported as well, since that is the overhead this library adds.
 */
export async function measureOverhead(cluster: Cluster, concurrencies: readonly number[], rounds: number, roundMs: number): Promise<OverheadResult[]> {
  const results: OverheadResult[] = []
  for (const concurrency of concurrencies) {
    const plain = new pg.Pool({ connectionString: cluster.nodes[0]!.url, max: concurrency })
    const failover = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), max: concurrency })
    try {
      // Warm both: connections open, statement paths JIT-compiled.
      await drive(plain, concurrency, 500)
      await drive(failover, concurrency, 500)
      const plainRuns: Run[] = []
      const failoverRuns: Run[] = []
      const ratios: number[] = []
      for (let round = 0; round < rounds; round++) {
        let plainRun: Run
        let failoverRun: Run
        if (round % 2 === 0) {
          plainRun = await drive(plain, concurrency, roundMs)
          failoverRun = await drive(failover, concurrency, roundMs)
        } else {
          failoverRun = await drive(failover, concurrency, roundMs)
          plainRun = await drive(plain, concurrency, roundMs)
        }
        plainRuns.push(plainRun)
        failoverRuns.push(failoverRun)
        ratios.push(failoverRun.qps / plainRun.qps)
      }
      const cpuPerQuery = (runs: Run[]): number => runs.reduce((a, r) => a + r.cpuUs, 0) / runs.reduce((a, r) => a + r.queries, 0)
      results.push({
        concurrency,
        pgPoolQps: median(plainRuns.map((r) => r.qps)),
        failoverPoolQps: median(failoverRuns.map((r) => r.qps)),
        ratio: median(ratios),
        pgPoolCpuUs: cpuPerQuery(plainRuns),
        failoverPoolCpuUs: cpuPerQuery(failoverRuns),
      })
    } finally {
      await plain.end()
      await failover.end()
    }
  }
  return results
}

/** Median of a non-empty list. */
export function median(values: readonly number[]): number {
  const sorted = [...values].sort((a, b) => a - b)
  const mid = Math.floor(sorted.length / 2)
  return sorted.length % 2 ? sorted[mid]! : (sorted[mid - 1]! + sorted[mid]!) / 2
}
