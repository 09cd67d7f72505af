import pg from 'pg'
import { FailoverPool } from '../dist/index.js'
import { type ClusterNode, startCluster } from '../test/support/cluster.js'

/** Frozen-primary detection: how long from SIGSTOP to the pool leaving the node, against its deadline. */
export interface FreezeSample {
  readonly detectedMs: number
  /** probeTimeoutMs + healthCheckIntervalMs × 1.2 (the interval's jitter): the documented worst case. */
  readonly deadlineMs: number
}

/**
 * Freezes the primary (SIGSTOP: sockets stay open, nothing answers) `runs` times on one cluster
 * and times the pool's `endpointDown` for it. Between runs the node is thawed and re-verified.
 */
export async function measureFrozenDetection(runs: number, probeTimeoutMs: number, healthCheckIntervalMs: number): Promise<FreezeSample[]> {
  const cluster = await startCluster({ standbys: 1 })
  const [primary] = cluster.nodes as [ClusterNode, ClusterNode]
  const pool = new FailoverPool({ endpoints: cluster.nodes.map((n) => ({ ...n.config, name: n.name })), probeTimeoutMs, healthCheckIntervalMs, halfOpenAfterMs: 100, maxHalfOpenAfterMs: 100 })
  pool.on('error', () => undefined)
  const samples: FreezeSample[] = []
  try {
    await pool.query('SELECT 1')
    for (let i = 0; i < runs; i++) {
      const down = new Promise<void>((resolve) => {
        const listener = (e: { endpoint: string }): void => {
          if (e.endpoint !== primary.name) return
          pool.off('endpointDown', listener)
          resolve()
        }
        pool.on('endpointDown', listener)
      })
      const frozenAt = performance.now()
      await cluster.freeze(primary)
      await down
      samples.push({ detectedMs: performance.now() - frozenAt, deadlineMs: probeTimeoutMs + healthCheckIntervalMs * 1.2 })
      await cluster.thaw(primary)
      // Wait until the pool trusts the node again before the next run.
      while (pool.status().primary !== primary.name) await new Promise((r) => setTimeout(r, 20))
    }
    return samples
  } finally {
    await pool.end()
    await cluster.destroy()
  }
}

/**
 * Idle promotion notice: the primary is stopped, the pool sits idle with polling slowed to 10 s,
 * a standby is promoted; measured from the standby first answering `pg_is_in_recovery() = false`
 * (polled every millisecond) to the pool's `failover` event. A fresh cluster per run.
 */
export async function measureIdlePromotionNotice(): Promise<number> {
  const cluster = await startCluster({ standbys: 1 })
  const [primary, standby] = cluster.nodes as [ClusterNode, ClusterNode]
  const pool = new FailoverPool({ endpoints: cluster.nodes.map((n) => ({ ...n.config, name: n.name })), discoveryIntervalMs: 10_000, healthCheckIntervalMs: 10_000 })
  pool.on('error', () => undefined)
  const watcher = new pg.Client(standby.config)
  watcher.on('error', () => undefined)
  try {
    await pool.query('SELECT 1')
    await watcher.connect()
    await cluster.stop(primary, 'immediate')
    await new Promise((r) => setTimeout(r, 300))
    const failover = new Promise<number>((resolve) => pool.once('failover', () => resolve(performance.now())))
    const promoting = cluster.promote(standby)
    let promotedAt = 0
    while (promotedAt === 0) {
      const { rows } = await watcher.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')
      if (!rows[0]!.r) promotedAt = performance.now()
      else await new Promise((r) => setTimeout(r, 1))
    }
    const noticedAt = await failover
    await promoting
    return noticedAt - promotedAt
  } finally {
    await watcher.end().catch(() => undefined)
    await pool.end()
    await cluster.destroy()
  }
}
