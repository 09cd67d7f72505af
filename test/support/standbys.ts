/**
 * Failing over the way an HA manager does: after the primary is lost, promote the standby that
 * received the most WAL, and point the others at it.
 *
 * With `synchronous: true` (ANY 1 of the other nodes) an acknowledged commit is flushed on at
 * least one standby, not necessarily on a given one: promoting the most advanced standby is what
 * makes "no acknowledged write is lost" hold, as it does under Patroni or repmgr.
 */
import type { Cluster, ClusterNode } from './cluster.js'
import { waitUntil } from './wait.js'

/** `pg_last_wal_receive_lsn()` of a standby as a number (0 when it has received nothing). */
export async function receivedLsn(cluster: Cluster, node: ClusterNode): Promise<bigint> {
  const [row] = await cluster.sql<{ lsn: string | null }>(node, 'SELECT pg_last_wal_receive_lsn()::text AS lsn')
  const lsn = row?.lsn
  if (!lsn) return 0n
  const [hi = '0', lo = '0'] = lsn.split('/')
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`)
}

/**
 * Promotes the standby among `standbys` that received the most WAL (the first of equals) and
 * re-points the others at it. Returns the new primary and the standbys left.
 */
export async function promoteMostAdvanced(cluster: Cluster, standbys: readonly ClusterNode[]): Promise<{ primary: ClusterNode; standbys: ClusterNode[] }> {
  // A WAL receiver keeps reading what the lost primary had sent until its socket ends; a receiver
  // starved of CPU may not have yet, and the standby compared as behind would end up ahead. Wait
  // (bounded: a frozen primary's socket does not end) until no receiver still streams.
  await waitUntil(async () => !(await Promise.all(standbys.map((n) => stillStreaming(cluster, n)))).some(Boolean), { what: 'the standbys\' WAL receivers to reach the end of the stream', timeout: 10_000 }).catch(() => undefined)
  const received = await Promise.all(standbys.map((n) => receivedLsn(cluster, n)))
  let best = 0
  for (let i = 1; i < standbys.length; i++) if (received[i]! > received[best]!) best = i
  const primary = standbys[best]!
  await cluster.promote(primary)
  const rest = standbys.filter((n) => n !== primary)
  for (const n of rest) await cluster.repoint(n, primary)
  return { primary, standbys: rest }
}

/** True while `node`'s WAL receiver still reports streaming. */
async function stillStreaming(cluster: Cluster, node: ClusterNode): Promise<boolean> {
  const rows = await cluster.sql<{ status: string }>(node, 'SELECT status FROM pg_stat_wal_receiver')
  return rows.some((r) => r.status === 'streaming')
}
