import pg from 'pg'
import { FailoverPool } from '../src/index.js'
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
  readonly pgPoolQps: number
  readonly failoverPoolQps: number
  /** FailoverPool throughput / pg.Pool throughput (1.0 = no overhead). */
  readonly ratio: number
}

async function drive(pool: pg.Pool, concurrency: number, durationMs: number): Promise<number> {
  let count = 0
  const deadline = performance.now() + durationMs
  const worker = async (): Promise<void> => {
    while (performance.now() < deadline) {
      await pool.query('SELECT 1')
      count++
    }
  }
  const started = performance.now()
  await Promise.all(Array.from({ length: concurrency }, worker))
  return (count * 1000) / (performance.now() - started)
}

/**
 * `SELECT 1` through a plain pg.Pool and through a FailoverPool (every cluster node as an
 * endpoint) on the same primary, interleaved in rounds so drift on the machine hits both alike.
 * The figure is the median round of each.
 */
export async function measureOverhead(cluster: Cluster, concurrencies: readonly number[], rounds: number, roundMs: number): Promise<OverheadResult[]> {
  const results: OverheadResult[] = []
  for (const concurrency of concurrencies) {
    const plain = new pg.Pool({ connectionString: cluster.nodes[0]!.url, max: concurrency })
    const failover = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), max: concurrency })
    try {
      // Warm both: connections open, statement paths JIT-compiled.
      await drive(plain, concurrency, 300)
      await drive(failover, concurrency, 300)
      const plainRuns: number[] = []
      const failoverRuns: number[] = []
      for (let round = 0; round < rounds; round++) {
        plainRuns.push(await drive(plain, concurrency, roundMs))
        failoverRuns.push(await drive(failover, concurrency, roundMs))
      }
      const pgPoolQps = median(plainRuns)
      const failoverPoolQps = median(failoverRuns)
      results.push({ concurrency, pgPoolQps, failoverPoolQps, ratio: failoverPoolQps / pgPoolQps })
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
