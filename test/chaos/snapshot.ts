/**
 * Reads every row of chaos_writes from one node, straight from the server (not through the pool),
 * into typed arrays: the evidence the checks compare the ledger with.
 */
import pg from 'pg'
import type { ClusterNode } from '../support/cluster.js'
import { now } from './clock.js'

export interface Snapshot {
  readonly node: string
  readonly port: number
  /** Wall time the read started: every write acknowledged before it must be in it. */
  readonly taken: number
  readonly ids: Int32Array
  readonly ports: Uint16Array
  readonly ats: Float64Array
  /** The server's clock minus the suite's clock, ms, measured with this read, and its uncertainty (half a round trip). */
  readonly clockOffsetMs: number
  readonly clockUncertaintyMs: number
}

export async function readSnapshot(node: ClusterNode): Promise<Snapshot> {
  const client = new pg.Client({ ...node.config, application_name: 'pgfp-chaos-checker', connectionTimeoutMillis: 5_000 })
  client.on('error', () => undefined)
  await client.connect()
  try {
    // Server timestamps are compared with the suite's: measure how far apart the two clocks are.
    let clockOffsetMs = 0
    let clockUncertaintyMs = Infinity
    for (let i = 0; i < 5; i++) {
      const before = now()
      const { rows } = await client.query<{ t: number }>('SELECT extract(epoch FROM clock_timestamp()) * 1000 AS t')
      const after = now()
      if ((after - before) / 2 < clockUncertaintyMs) {
        clockUncertaintyMs = (after - before) / 2
        clockOffsetMs = rows[0]!.t - (before + after) / 2
      }
    }
    const taken = now()
    const res = await client.query<[number, number, number]>({ text: 'SELECT id::int, port, at FROM chaos_writes', rowMode: 'array' })
    const n = res.rows.length
    const ids = new Int32Array(n)
    const ports = new Uint16Array(n)
    const ats = new Float64Array(n)
    res.rows.forEach((r, i) => {
      ids[i] = r[0]
      ports[i] = r[1]
      ats[i] = r[2]
    })
    return { node: node.name, port: node.port, taken, ids, ports, ats, clockOffsetMs, clockUncertaintyMs }
  } finally {
    await client.end().catch(() => undefined)
  }
}

/** How many rows each id has (index = id), for ids up to `maxId`. */
export function rowCounts(snapshot: Snapshot, maxId: number): Uint8Array {
  const counts = new Uint8Array(maxId + 2)
  for (const id of snapshot.ids) {
    if (id >= 0 && id < counts.length) counts[id] = Math.min(255, counts[id]! + 1)
  }
  return counts
}
