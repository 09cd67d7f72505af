import { describe, expect, it } from 'vitest'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { waitUntil } from '../support/wait.js'

const res = useResources()

describe('a client whose session ended with a FATAL error', () => {
  it('released at once after its statement failed (as ORMs do), it is never handed out again: the next borrower gets a live session', async () => {
    const cluster = await res.cluster({ standbys: 0 })
    const [n0] = cluster.nodes as [ClusterNode]
    const pool = res.pool(cluster, { max: 1 })
    const a = await pool.connect()
    a.on('error', () => undefined)
    const pid = (a as unknown as { processID: number }).processID
    const running = a.query('SELECT pg_sleep(30)')
    await waitUntil(async () => (await cluster.sql<{ n: number }>(n0, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE pid = ${pid} AND state = 'active'`))[0]!.n === 1, { what: 'the sleep running' })
    // Released in the same moment the FATAL 57P01 reaches the caller, before the server's close does.
    const failed = running.then(
      () => null,
      (err: Error & { code?: string }) => {
        a.release()
        return err
      },
    )
    await cluster.sql(n0, `SELECT pg_terminate_backend(${pid})`)
    expect((await failed)?.code).toBe('57P01')
    const b = await pool.connect()
    try {
      expect((b as unknown as { processID: number }).processID).not.toBe(pid)
      expect((await b.query<{ one: number }>('SELECT 1 AS one')).rows[0]!.one).toBe(1)
    } finally {
      b.release()
    }
  })
})
