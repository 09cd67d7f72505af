import type { Cluster, ClusterNode } from './cluster.js'
import { type LedgerWriter, whenWritable } from './ledger-writer.js'

/** One restart in place, measured. */
export interface RestartSample {
  /** From the node first answering writable (fresh connections, polled every 2 ms) to the first write the pool acknowledged after that, ms. */
  readonly writableToWriteMs: number
  /** From the immediate stop to the node answering writable again, ms (the database's own outage). */
  readonly databaseOutageMs: number
}

/**
 * Stops `node` immediately (as a crash would) and starts the same node again while `writer` keeps
 * writing through the pool, and measures when writes resumed.
 */
export async function restartInPlace(cluster: Cluster, node: ClusterNode, writer: LedgerWriter, timeoutMs = 15_000): Promise<RestartSample> {
  const stoppedAt = performance.now()
  await cluster.stop(node, 'immediate')
  const writable = whenWritable(node.config, timeoutMs)
  await cluster.start(node)
  const writableAt = await writable
  const deadline = writableAt + timeoutMs
  for (;;) {
    const first = writer.firstAckAfter(writableAt)
    if (first) return { writableToWriteMs: first.endedAt - writableAt, databaseOutageMs: writableAt - stoppedAt }
    if (performance.now() > deadline) throw new Error(`no write acknowledged within ${timeoutMs} ms of ${node.name} answering writable again`)
    await new Promise((resolve) => setTimeout(resolve, 2))
  }
}
