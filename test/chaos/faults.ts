/**
 * Injects one planned fault into the cluster and, when it takes the primary away, performs the
 * failover as an HA tool would (ha.ts), then brings the cluster back to one primary and two
 * standbys. Returns what happened and when; judging it is checks.ts's job.
 */
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { now, sleep } from './clock.js'
import type { FlakyStateStore } from './flaky-store.js'
import type { HaTool, Promotion } from './ha.js'
import type { WriteLedger } from './ledger.js'
import type { PoolObserver } from './observer.js'
import type { FaultPlan } from './schedule.js'

/** What the suite saw on an old primary while it ran writable, before its rejoin. */
export interface StaleProbe {
  readonly node: string
  readonly port: number
  /** First write id issued after the fault took effect. */
  readonly firstIdAfterFault: number
  /** Rows with such ids visible on the old node (must be 0). */
  readonly rowsAfterFault: number
  /** When the pool had moved its writes elsewhere (its failover event), or null if it had not. */
  readonly poolMovedAt: number | null
  /**
   * Our sessions on the old node whose INSERT started after the pool had moved (must be 0). After a
   * freeze, statements sent before the freeze sit in the socket and start at the thaw, so the
   * threshold is then the thaw + 250 ms.
   */
  readonly insertsAfterMove: number | null
  /** The server-side threshold used for `insertsAfterMove`. */
  readonly insertsSince: number | null
}

export interface FaultRecord {
  readonly plan: FaultPlan
  /** The node the fault hit, and the primary when it started. */
  readonly target: string
  readonly targetPort: number
  readonly primaryBefore: string
  /** Just before the injection, once it took effect, and once the cluster was whole again. */
  start: number
  injected: number
  end: number
  promotion: Promotion | null
  /** When the old primary started its rejoin (its last moment as a possible write target). */
  rejoinAt: number | null
  stale: StaleProbe | null
  readonly notes: string[]
}

export interface FaultContext {
  readonly cluster: Cluster
  readonly ha: HaTool
  readonly store: FlakyStateStore
  readonly observer: PoolObserver
  readonly ledger: WriteLedger
  /** application_name of the pool's sessions. */
  readonly applicationName: string
  readonly note: (line: string) => void
}

export async function injectFault(plan: FaultPlan, ctx: FaultContext): Promise<FaultRecord> {
  const { cluster, ha } = ctx
  const target = ha.resolve(plan.target)
  const rec: FaultRecord = {
    plan,
    target: target.name,
    targetPort: target.port,
    primaryBefore: ha.primary.name,
    start: now(),
    injected: 0,
    end: 0,
    promotion: null,
    rejoinAt: null,
    stale: null,
    notes: [],
  }
  const isPrimary = target === ha.primary
  switch (plan.kind) {
    case 'stop-immediate':
    case 'stop-fast':
    case 'kill': {
      rec.start = now()
      if (plan.kind === 'kill') await cluster.kill(target)
      else await cluster.stop(target, plan.kind === 'stop-fast' ? 'fast' : 'immediate')
      rec.injected = now()
      if (isPrimary) {
        await failoverDead(rec, ctx, target)
        await sleep(plan.rejoinAfterMs)
        await rejoin(rec, ctx, target)
      } else {
        await sleep(plan.holdMs)
        await cluster.start(target)
      }
      break
    }
    case 'freeze': {
      rec.start = now()
      await cluster.freeze(target)
      rec.injected = now()
      await sleep(plan.holdMs)
      await cluster.thaw(target)
      break
    }
    case 'freeze-failover': {
      rec.start = now()
      await cluster.freeze(target)
      rec.injected = now()
      await failoverDead(rec, ctx, target)
      await sleep(plan.holdMs)
      await cluster.thaw(target)
      const thawedAt = now()
      rec.notes.push(`${target.name} thawed: writable on its old timeline, no standby`)
      await sleep(plan.rejoinAfterMs)
      rec.stale = await probeStale(rec, ctx, target, thawedAt + 250)
      await rejoin(rec, ctx, target)
      break
    }
    case 'terminate': {
      rec.start = now()
      const n = await cluster.terminateBackends(target)
      rec.injected = now()
      rec.notes.push(`${n} backends terminated`)
      break
    }
    case 'promote-live': {
      const old = ha.primary
      rec.start = now()
      // The planned target is the standby to promote.
      rec.promotion = await ha.failover(old, plan.target === 'standby-b' ? 1 : 0, true)
      rec.injected = rec.promotion.end
      await sleep(plan.holdMs)
      rec.stale = await probeStale(rec, ctx, old)
      await rejoin(rec, ctx, old)
      break
    }
    case 'replay-pause': {
      rec.start = now()
      await cluster.pauseReplay(target)
      rec.injected = now()
      await sleep(plan.holdMs)
      await cluster.resumeReplay(target)
      break
    }
    case 'store-down': {
      rec.start = now()
      ctx.store.setMode(plan.storeMode)
      rec.injected = now()
      let old: ClusterNode | null = null
      if (plan.storeFailover) {
        await sleep(300)
        old = ha.primary
        await cluster.stop(old, 'fast')
        rec.notes.push(`${old.name} stopped (fast) while the store is down`)
        await failoverDead(rec, ctx, old, now())
      }
      await sleep(rec.injected + plan.holdMs - now())
      ctx.store.setMode('ok')
      rec.notes.push(`store ${plan.storeMode} for ${Math.round(now() - rec.injected)} ms: ${ctx.store.stats.failed} failed / ${ctx.store.stats.hung} hung calls so far`)
      if (old) {
        await sleep(plan.rejoinAfterMs)
        await rejoin(rec, ctx, old)
      }
      break
    }
    case 'stale-return': {
      rec.start = now()
      await cluster.kill(target)
      rec.injected = now()
      const promotion = await failoverDead(rec, ctx, target)
      // A real node takes a while to come back: it returns once the pool has seen the promotion.
      const followed = await ctx.observer.failoverTo(promotion.node, rec.start, 10_000)
      if (!followed) rec.notes.push(`the pool had not followed ${promotion.node} within 10 s`)
      await cluster.startAsWritable(target)
      rec.notes.push(`${target.name} restarted writable on its old timeline (synchronous replication off)`)
      await sleep(plan.holdMs)
      rec.stale = await probeStale(rec, ctx, target)
      await rejoin(rec, ctx, target)
      break
    }
  }
  await ha.waitHealthy(20_000)
  rec.end = now()
  return rec
}

/** The primary is gone (from `lostAt`): the HA tool waits its detection delay, then promotes. */
async function failoverDead(rec: FaultRecord, ctx: FaultContext, old: ClusterNode, lostAt = rec.injected): Promise<Promotion> {
  ctx.ha.endPrimacy(old, lostAt)
  await sleep(rec.plan.haDelayMs - (now() - lostAt))
  rec.promotion = await ctx.ha.failover(old, rec.plan.prefer, false)
  return rec.promotion
}

async function rejoin(rec: FaultRecord, ctx: FaultContext, old: ClusterNode): Promise<void> {
  rec.rejoinAt = now()
  await ctx.ha.rejoin(old)
}

/** Looks at the old primary while it runs writable: nothing written after the fault may be there. */
async function probeStale(rec: FaultRecord, ctx: FaultContext, old: ClusterNode, notBefore = -Infinity): Promise<StaleProbe> {
  const firstIdAfterFault = ctx.ledger.firstIdIssuedAtOrAfter(rec.injected)
  const moved = rec.promotion ? ctx.observer.failovers.find((f) => f.at >= rec.start && f.event.to === rec.promotion!.node) : undefined
  const poolMovedAt = moved ? moved.at : null
  const [rows] = await ctx.cluster.sql<{ n: number }>(old, 'SELECT count(*)::int AS n FROM chaos_writes WHERE id >= $1', [firstIdAfterFault])
  let insertsAfterMove: number | null = null
  const insertsSince = poolMovedAt === null ? null : Math.max(poolMovedAt, notBefore)
  if (insertsSince !== null) {
    const [s] = await ctx.cluster.sql<{ n: number }>(
      old,
      `SELECT count(*)::int AS n FROM pg_stat_activity
        WHERE backend_type = 'client backend' AND application_name = $1
          AND query LIKE 'INSERT INTO chaos_writes%' AND query_start > to_timestamp($2::float8 / 1000)`,
      [ctx.applicationName, insertsSince],
    )
    insertsAfterMove = s?.n ?? 0
  }
  const probe: StaleProbe = { node: old.name, port: old.port, firstIdAfterFault, rowsAfterFault: rows?.n ?? 0, poolMovedAt, insertsAfterMove, insertsSince }
  ctx.note(`stale ${old.name}: ${probe.rowsAfterFault} rows with ids >= ${firstIdAfterFault}, ${insertsAfterMove ?? 'n/a'} inserts started after the pool moved`)
  return probe
}
