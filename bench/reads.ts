import pg from 'pg'
import { FailoverPool } from '../dist/index.js'
import type { Cluster } from '../test/support/cluster.js'
import { median } from './overhead.js'

/** Read throughput through pool.reader against a plain pg.Pool on one replica, and the cost of read-your-writes. */
export interface ReadResult {
  readonly concurrency: number
  readonly plainOneReplicaQps: number
  readonly readerTwoReplicasQps: number
  /** readerTwoReplicasQps / plainOneReplicaQps. */
  readonly ratio: number
  /** Client CPU per read, microseconds: pg.Pool on one replica, and pool.reader. */
  readonly plainCpuUs: number
  readonly readerCpuUs: number
  /** Mean latency of a read inside withReadYourWrites right after a write, minus that of a plain reader read, in ms. */
  readonly readYourWritesExtraMs: number
  readonly plainReadMs: number
  readonly rywReadMs: number
}

const READ_SQL = 'SELECT count(*) FROM pg_class'

async function drive(pool: pg.Pool, concurrency: number, durationMs: number): Promise<{ qps: number; cpuUsPerQuery: number }> {
  let count = 0
  const deadline = performance.now() + durationMs
  const cpu = process.cpuUsage()
  const started = performance.now()
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (performance.now() < deadline) {
        await pool.query(READ_SQL)
        count++
      }
    }),
  )
  const used = process.cpuUsage(cpu)
  return { qps: (count * 1000) / (performance.now() - started), cpuUsPerQuery: (used.user + used.system) / count }
}

/**
 * Interleaved rounds of a catalog read (`SELECT count(*) FROM pg_class`, enough work that the
 * server, not the client, is the bottleneck) through `pool.reader` over two replicas and through a
 * plain pg.Pool on one replica; then the latency of reads with and without read-your-writes.
 */
export async function measureReads(cluster: Cluster, concurrency: number, rounds: number, roundMs: number): Promise<ReadResult> {
  const [, replica] = cluster.nodes
  const plain = new pg.Pool({ connectionString: replica!.url, max: concurrency })
  const pool = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), max: concurrency, healthCheckIntervalMs: 1000 })
  try {
    await pool.query('CREATE TABLE IF NOT EXISTS bench_ryw (id serial PRIMARY KEY)')
    await new Promise((r) => setTimeout(r, 300)) // let the first health check verify both standbys
    await drive(plain, concurrency, 300)
    await drive(pool.reader, concurrency, 300)
    const plainRuns: Array<{ qps: number; cpuUsPerQuery: number }> = []
    const readerRuns: Array<{ qps: number; cpuUsPerQuery: number }> = []
    const ratios: number[] = []
    for (let i = 0; i < rounds; i++) {
      // Back to back, alternating which goes first, so drift on the machine hits both alike.
      let one, reader
      if (i % 2 === 0) {
        one = await drive(plain, concurrency, roundMs)
        reader = await drive(pool.reader, concurrency, roundMs)
      } else {
        reader = await drive(pool.reader, concurrency, roundMs)
        one = await drive(plain, concurrency, roundMs)
      }
      plainRuns.push(one)
      readerRuns.push(reader)
      ratios.push(reader.qps / one.qps)
    }
    const plainReadMs = await meanLatency(200, () => pool.reader.query('SELECT 1'))
    const writeMs = await meanLatency(200, () => pool.query('INSERT INTO bench_ryw DEFAULT VALUES'))
    const writeThenRyw = await meanLatency(200, () =>
      pool.withReadYourWrites(async () => {
        await pool.query('INSERT INTO bench_ryw DEFAULT VALUES')
        await pool.reader.query('SELECT 1')
      }),
    )
    const rywReadMs = writeThenRyw - writeMs
    return {
      concurrency,
      plainOneReplicaQps: median(plainRuns.map((r) => r.qps)),
      readerTwoReplicasQps: median(readerRuns.map((r) => r.qps)),
      ratio: median(ratios),
      plainCpuUs: median(plainRuns.map((r) => r.cpuUsPerQuery)),
      readerCpuUs: median(readerRuns.map((r) => r.cpuUsPerQuery)),
      readYourWritesExtraMs: rywReadMs - plainReadMs,
      plainReadMs,
      rywReadMs,
    }
  } finally {
    await plain.end()
    await pool.end()
  }
}

async function meanLatency(n: number, op: () => Promise<unknown>): Promise<number> {
  const started = performance.now()
  for (let i = 0; i < n; i++) await op()
  return (performance.now() - started) / n
}
