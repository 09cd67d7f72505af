/**
 * The suite's HA tool: it knows which node is the primary (it made it so) and when, promotes the
 * most caught-up standby after a primary-killing fault, re-points the other one, and later brings
 * the old primary back as a standby. Its primacy intervals are the ground truth for "the verified
 * primary at that moment".
 *
 * With `synchronous_standby_names = 'ANY 1 (...)'`, the follower is re-pointed to the chosen
 * standby *before* the promotion (cascading replication), so the new primary has a synchronous
 * standby from its first commit; the follower then follows the new timeline by itself.
 */
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { now, waitUntil } from './clock.js'
import type { TargetRole } from './schedule.js'

/** One node's time as the primary; `to` is Infinity while it still is. */
export interface Primacy {
  readonly node: string
  readonly port: number
  readonly from: number
  to: number
}

export interface Promotion {
  readonly node: string
  readonly port: number
  /** The primary it replaced. */
  readonly from: string
  readonly follower: string
  /** Just before `pg_ctl promote`, and once the node answered out of recovery. */
  readonly start: number
  readonly end: number
  readonly why: string
  /** Promoted while the old primary was still running and writable. */
  readonly live: boolean
}

export class HaTool {
  primary: ClusterNode
  readonly primacy: Primacy[] = []
  readonly promotions: Promotion[] = []

  constructor(
    private readonly cluster: Cluster,
    private readonly note: (line: string) => void,
  ) {
    this.primary = cluster.nodes[0]!
    this.primacy.push({ node: this.primary.name, port: this.primary.port, from: -Infinity, to: Infinity })
  }

  /** The nodes that are not the primary, sorted by name (`standby-a`, `standby-b`). */
  standbys(): [ClusterNode, ClusterNode] {
    const others = this.cluster.nodes.filter((n) => n !== this.primary).sort((a, b) => a.name.localeCompare(b.name))
    return [others[0]!, others[1]!]
  }

  resolve(role: TargetRole): ClusterNode {
    if (role === 'primary') return this.primary
    return this.standbys()[role === 'standby-a' ? 0 : 1]
  }

  /** The harness stops treating `node` as the primary at `at` (the fault that ended it). */
  endPrimacy(node: ClusterNode, at: number): void {
    const open = this.primacy.find((p) => p.node === node.name && p.to === Infinity)
    if (open) open.to = at
  }

  /**
   * Fails over from `old`: picks the standby that received the most WAL (`prefer` breaks ties; a
   * live promotion takes `prefer` and waits for it to catch up), re-points the other to it,
   * promotes it, and makes sure the follower streams on the new timeline.
   */
  async failover(old: ClusterNode, prefer: 0 | 1, live: boolean): Promise<Promotion> {
    const [a, b] = this.standbys()
    const preferred = prefer === 0 ? a : b
    const other = prefer === 0 ? b : a
    let target = preferred
    let follower = other
    let why = `preferred ${preferred.name}`
    if (!live) {
      const [lp, lo] = await Promise.all([this.#received(preferred), this.#received(other)])
      why = `WAL received ${preferred.name} ${fmt(lp)}, ${other.name} ${fmt(lo)}`
      if (lp !== null && lo !== null && lo > lp) {
        target = other
        follower = preferred
        why += `: ${other.name} is ahead`
      }
    }
    // Cascade first: the follower streams from the target before it is promoted.
    await this.cluster.repoint(follower, target)
    if (live) await this.#catchUp(target, old)
    const start = now()
    await this.cluster.promote(target)
    const end = now()
    if (live) this.endPrimacy(old, end)
    this.primacy.push({ node: target.name, port: target.port, from: start, to: Infinity })
    this.primary = target
    const promotion: Promotion = { node: target.name, port: target.port, from: old.name, follower: follower.name, start, end, why, live }
    this.promotions.push(promotion)
    this.note(`HA: promoted ${target.name} (${why}) in ${Math.round(end - start)} ms; ${follower.name} follows it`)
    await this.#ensureFollowing(follower, target)
    return promotion
  }

  /** Turns the old primary into a standby of the current primary (pg_rewind). */
  async rejoin(old: ClusterNode): Promise<void> {
    const t0 = now()
    await this.cluster.rejoinAsStandby(old, this.primary)
    this.note(`HA: ${old.name} rejoined as a standby of ${this.primary.name} in ${Math.round(now() - t0)} ms`)
  }

  /** Waits until both standbys stream from the primary and have replayed its WAL; throws after `timeoutMs`. */
  async waitHealthy(timeoutMs: number): Promise<void> {
    const names = this.standbys().map((n) => n.name)
    const ok = await waitUntil(async () => {
      const rows = await this.cluster.sql<{ application_name: string }>(this.primary, "SELECT application_name FROM pg_stat_replication WHERE state = 'streaming'")
      return names.every((n) => rows.some((r) => r.application_name === n))
    }, timeoutMs, 25)
    if (!ok) throw new Error(`HA: standbys ${names.join(', ')} not streaming from ${this.primary.name} within ${timeoutMs} ms`)
    await this.cluster.waitForReplication(this.primary, timeoutMs)
  }

  async #received(node: ClusterNode): Promise<bigint | null> {
    const [row] = await this.cluster.sql<{ lsn: string | null }>(node, 'SELECT coalesce(pg_last_wal_receive_lsn(), pg_last_wal_replay_lsn())::text AS lsn')
    return parseLsn(row?.lsn ?? null)
  }

  /** Live promotion: the target must have every WAL record the old primary wrote so far. */
  async #catchUp(target: ClusterNode, old: ClusterNode): Promise<void> {
    const [row] = await this.cluster.sql<{ lsn: string }>(old, 'SELECT pg_current_wal_lsn()::text AS lsn')
    const goal = parseLsn(row?.lsn ?? null)
    if (goal === null) return
    const ok = await waitUntil(async () => ((await this.#received(target)) ?? 0n) >= goal, 10_000, 5)
    if (!ok) throw new Error(`HA: ${target.name} did not receive ${old.name}'s WAL up to ${fmt(goal)} within 10 s`)
  }

  async #ensureFollowing(follower: ClusterNode, target: ClusterNode): Promise<void> {
    try {
      // Idempotent: waits until the follower streams from the target on its new timeline.
      await this.cluster.repoint(follower, target)
    } catch (err) {
      this.note(`HA: ${follower.name} did not follow ${target.name} (${(err as Error).message.split('\n')[0]}); rewinding it`)
      await this.cluster.rejoinAsStandby(follower, target)
    }
  }
}

function parseLsn(text: string | null): bigint | null {
  const m = /^([0-9A-F]+)\/([0-9A-F]+)$/i.exec(text ?? '')
  return m ? (BigInt(`0x${m[1]}`) << 32n) + BigInt(`0x${m[2]}`) : null
}

function fmt(lsn: bigint | null): string {
  return lsn === null ? '?' : `${(lsn >> 32n).toString(16).toUpperCase()}/${(lsn & 0xffffffffn).toString(16).toUpperCase()}`
}
