import { FailoverPool } from '../dist/index.js'
import { type ClusterNode, startCluster } from '../test/support/cluster.js'
import { LedgerWriter } from '../test/support/ledger-writer.js'
import { type RestartSample, restartInPlace } from '../test/support/restart-in-place.js'

/** The restarts of one run, and what the write ledger found afterwards. */
export interface RestartResult {
  readonly samples: readonly RestartSample[]
  readonly acked: number
  readonly unknown: number
  readonly failed: number
  /** Acknowledged writes missing from the primary at the end. */
  readonly lost: number
  readonly duplicated: number
}

/**
 * The primary is stopped immediately (`pg_ctl stop -m immediate`, as a crash) and started again in
 * place, `runs` times, while two writers keep writing through a FailoverPool with default options.
 * Measured from the node first answering writable (fresh connections polled every 2 ms) to the
 * first write the pool acknowledged after that.
 */
export async function measureRestartInPlace(runs: number): Promise<RestartResult> {
  const cluster = await startCluster({ standbys: 1 })
  const [primary] = cluster.nodes as [ClusterNode, ClusterNode]
  const pool = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), max: 4 })
  pool.on('error', () => undefined)
  try {
    await LedgerWriter.create(pool)
    const writer = new LedgerWriter(pool, { concurrency: 2 }).start()
    const samples: RestartSample[] = []
    for (let i = 0; i < runs; i++) samples.push(await restartInPlace(cluster, primary, writer))
    await writer.stop()
    const counts = writer.counts()
    const check = await writer.check(primary.config)
    return { samples, ...counts, lost: check.lost.length, duplicated: check.duplicated.length }
  } finally {
    await pool.end().catch(() => undefined)
    await cluster.destroy()
  }
}
