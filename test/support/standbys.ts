/**
 * Failing over the way an HA manager does: after the primary is lost, promote the standby that
 * received the most WAL, and point the others at it.
 *
 * With `synchronous: true` (ANY 1 of the other nodes) an acknowledged commit is flushed on at
 * least one standby, not necessarily on a given one: promoting the most advanced standby is what
 * makes "no acknowledged write is lost" hold, as it does under Patroni or repmgr.
 */
import type { Cluster, ClusterNode } from './cluster.js'

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
  const received = await Promise.all(standbys.map((n) => receivedLsn(cluster, n)))
  let best = 0
  for (let i = 1; i < standbys.length; i++) if (received[i]! > received[best]!) best = i
  const primary = standbys[best]!
  await cluster.promote(primary)
  const rest = standbys.filter((n) => n !== primary)
  for (const n of rest) await cluster.repoint(n, primary)
  return { primary, standbys: rest }
}
