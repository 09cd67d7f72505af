import { EventEmitter } from 'node:events'
import pg from 'pg'
import { FailoverPool } from '../dist/index.js'
import type { Cluster } from '../test/support/cluster.js'
import { median } from './overhead.js'

/** Client CPU per query spent in the pool layer alone (no network), FailoverPool (writes and reads) against pg.Pool. */
export interface LayerCost {
  readonly pgPoolUs: number
  readonly failoverPoolUs: number
  /** The same through `pool.reader` (replica routing, lag limits, the send-time check). */
  readonly readerUs: number
  readonly rounds: number
}

/**
 * What the library itself costs per `pool.query`, with the network taken out: once the
 * FailoverPool has verified its primary, every inner pg.Pool checkout (and the plain pg.Pool's)
 * gets a client that answers at once, so the figures are pg.Pool's own queueing and promise work
 * against the same plus routing, the request object, reporting and events. Interleaved rounds,
 * median; the first two rounds warm the JIT and are dropped.
 */
export async function measureLayerCost(cluster: Cluster, perRound = 50_000, rounds = 12): Promise<LayerCost> {
  // A lag limit the run cannot outlast: the replicas' probes (one, at start) stay fresh enough to read from.
  const failover = new FailoverPool({ endpoints: cluster.nodes.map((n) => n.url), max: 1, promotionWatch: false, healthCheckIntervalMs: 600_000, maxReplicaLagMs: 3_600_000 })
  const plain = new pg.Pool({ connectionString: cluster.nodes[0]!.url, max: 1 })
  await failover.query('SELECT 1')
  await failover.reader.query('SELECT 1')
  await plain.query('SELECT 1')
  if (!failover.status().endpoints.some((e) => e.servesReads)) throw new Error('layer cost: no replica serves reads')
  const result = { rows: [{ n: 1 }], rowCount: 1, command: 'SELECT', fields: [] }
  const client = Object.assign(new EventEmitter(), {
    query: (_text: unknown, _values: unknown, cb: (err: Error | null, res: unknown) => void) => queueMicrotask(() => cb(null, result)),
    release: () => undefined,
  })
  const realConnect = pg.Pool.prototype.connect
  pg.Pool.prototype.connect = function (this: pg.Pool, cb?: (err: Error | undefined, c: unknown, release: () => void) => void) {
    if (!cb) return Promise.resolve(client)
    cb(undefined, client, () => undefined)
  } as typeof realConnect
  const costs = { pg: [] as number[], failover: [] as number[], reader: [] as number[] }
  const subjects: Array<['pg' | 'failover' | 'reader', Pick<pg.Pool, 'query'>]> = [['pg', plain], ['failover', failover], ['reader', failover.reader]]
  try {
    for (let round = 0; round < rounds; round++) {
      for (const [name, pool] of round % 2 ? [...subjects].reverse() : subjects) {
        const cpu = process.cpuUsage()
        for (let i = 0; i < perRound; i++) await pool.query('SELECT 1')
        const used = process.cpuUsage(cpu)
        if (round >= 2) costs[name].push((used.user + used.system) / perRound)
      }
    }
  } finally {
    pg.Pool.prototype.connect = realConnect
    await failover.end()
    await plain.end()
  }
  return { pgPoolUs: median(costs.pg), failoverPoolUs: median(costs.failover), readerUs: median(costs.reader), rounds: rounds - 2 }
}
