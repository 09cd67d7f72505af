import pg from 'pg'
import { FailoverPool } from '../dist/index.js'
import { type ClusterNode, startCluster } from '../test/support/cluster.js'

/** One measured failover. */
export interface PromotionSample {
  /** From the standby first answering `pg_is_in_recovery() = false` to the first write acknowledged through the pool, ms. */
  readonly promotionToWriteMs: number
  /** `durationMs` of the pool's failover event (first sign of trouble to new primary verified), ms. */
  readonly failoverEventMs: number
  /** From the same moment to the pool's `failover` event (the new primary adopted), ms. */
  readonly promotionToAdoptedMs: number
  /**
   * A plain pg.Client started at the same moment: connect to the promoted node and INSERT, ms. What
   * one fresh connection and first write cost the node right after its promotion, without the pool.
   */
  readonly plainClientWriteMs: number
}

/**
 * Stops the primary, promotes a standby while a writer keeps writing through the pool, and
 * measures from the promotion completing (polled every millisecond on a separate session) to the
 * first acknowledged write. A fresh cluster per run, so every run starts from the same state.
 */
export async function measurePromotionToWrite(): Promise<PromotionSample> {
  const cluster = await startCluster({ standbys: 1 })
  const [primary, standby] = cluster.nodes as [ClusterNode, ClusterNode]
  const pool = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), max: 4, failoverTimeoutMs: 30_000 })
  const watcher = new pg.Client(standby.config)
  watcher.on('error', () => undefined)
  let failoverEventMs = Number.NaN
  let adoptedAt = Number.NaN
  pool.on('failover', (e) => {
    failoverEventMs = e.durationMs
    adoptedAt = performance.now()
  })
  try {
    await pool.query('CREATE TABLE bench_writes (id serial PRIMARY KEY, at timestamptz DEFAULT clock_timestamp())')
    await watcher.connect()
    await cluster.stop(primary, 'immediate')

    let stop = false
    let firstAckAfter: number | null = null
    let promotedAt: number | null = null
    const writer = (async () => {
      while (!stop) {
        try {
          await pool.query('INSERT INTO bench_writes DEFAULT VALUES')
          const now = performance.now()
          if (promotedAt !== null && firstAckAfter === null) firstAckAfter = now
          if (firstAckAfter !== null) return
        } catch {
          // The old primary's in-flight writes fail; the writer simply tries again.
        }
      }
    })()

    const promoting = cluster.promote(standby)
    while (promotedAt === null) {
      const { rows } = await watcher.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')
      if (rows[0]!.r === false) promotedAt = performance.now()
      else await new Promise((r) => setTimeout(r, 1))
    }
    const plain = plainClientWrite(standby)
    await promoting
    await Promise.race([writer, new Promise((r) => setTimeout(r, 30_000))])
    stop = true
    if (firstAckAfter === null) throw new Error('no write was acknowledged within 30 s of the promotion')
    return { promotionToWriteMs: (firstAckAfter as number) - promotedAt, failoverEventMs, promotionToAdoptedMs: adoptedAt - promotedAt, plainClientWriteMs: await plain }
  } finally {
    await watcher.end().catch(() => undefined)
    await pool.end().catch(() => undefined)
    await cluster.destroy()
  }
}

/** Connect + INSERT on a fresh pg.Client, ms. */
async function plainClientWrite(node: ClusterNode): Promise<number> {
  const started = performance.now()
  const client = new pg.Client(node.config)
  client.on('error', () => undefined)
  try {
    await client.connect()
    await client.query('INSERT INTO bench_writes DEFAULT VALUES')
    return performance.now() - started
  } finally {
    await client.end().catch(() => undefined)
  }
}
