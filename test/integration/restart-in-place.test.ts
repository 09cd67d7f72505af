import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { LedgerWriter } from '../support/ledger-writer.js'
import { useResources } from '../support/pools.js'
import { restartInPlace } from '../support/restart-in-place.js'

const res = useResources()

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!

describe('a primary restarted in place (the most common event in a database\'s life)', () => {
  it('takes writes again within 500 ms of answering writable (median of 3), with no acknowledged write lost', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0] = cluster.nodes as [ClusterNode, ClusterNode]
    // The library's own timings (not the test defaults): what a user gets without tuning anything.
    const pool = res.pool(cluster, { healthCheckIntervalMs: 2_000, failoverTimeoutMs: 30_000 })
    await LedgerWriter.create(pool)
    const writer = new LedgerWriter(pool, { concurrency: 2 }).start()
    const samples = []
    for (let i = 0; i < 3; i++) samples.push(await restartInPlace(cluster, n0, writer))
    await writer.stop()

    const resumed = samples.map((s) => s.writableToWriteMs)
    expect(median(resumed), `writable -> first write: ${resumed.map((ms) => ms.toFixed(0)).join(', ')} ms`).toBeLessThanOrEqual(500)
    // The same node all along: no failover, and its breaker ends closed.
    expect(pool.status()).toMatchObject({ primary: n0.name, failovers: 0 })
    expect(pool.status().endpoints[0]!.breaker).toBe('closed')

    const counts = writer.counts()
    // Writes went on before, between and after the restarts (each restart waited for one after it).
    expect(counts.acked).toBeGreaterThanOrEqual(samples.length + 1)
    // A crash can kill a backend after its commit is durable and before it replies: such a write is
    // outcome-unknown, never a plain failure, and never acknowledged by a node that lost it.
    expect(writer.entries.filter((e) => e.outcome === 'failed').map((e) => e.error?.message)).toEqual([])
    const check = await writer.check(n0.config)
    expect(check).toMatchObject({ lost: [], duplicated: [], unexpected: [] })
  })
})
