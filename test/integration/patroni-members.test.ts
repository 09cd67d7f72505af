import { describe, expect, it } from 'vitest'
import { FailoverPool, patroniMembers } from '../../src/index.js'
import { startPatroni } from '../support/ha/patroni.js'
import { POOL_DEFAULTS, useResources } from '../support/pools.js'
import { waitUntil } from '../support/wait.js'

const res = useResources()

/** Reads through the pool's reader until one is answered on `port`; resolves with how long that took (ms). */
async function readReaches(pool: FailoverPool, port: number, timeout: number): Promise<number> {
  const started = Date.now()
  await waitUntil(async () => (await pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port === port, { what: `a read answered on port ${port}`, timeout })
  return Date.now() - started
}

describe("endpoints: patroniMembers() — a Patroni cluster's members join and leave without a restart", () => {
  it('a member added at runtime takes reads within a refresh of streaming; a member that leaves /cluster leaves the pool within a refresh and gets no new read', { timeout: 240_000 }, async () => {
    const patroni = res.track(await startPatroni({ members: 3, initialMembers: 2 }))
    const [pg0, pg1, pg2] = patroni.members as [(typeof patroni.members)[0], (typeof patroni.members)[0], (typeof patroni.members)[0]]
    const pool = res.track(
      new FailoverPool({
        ...POOL_DEFAULTS,
        endpoints: patroniMembers({ urls: patroni.members.map((m) => m.restUrl), user: 'postgres', password: patroni.password, database: 'postgres', refreshMs: 500 }),
        routeReads: 'auto',
      }),
    )
    pool.on('error', () => undefined)
    pool.reader.on('error', () => undefined)
    const changes: Array<{ added: readonly string[]; removed: readonly string[] }> = []
    pool.on('endpointsChanged', (e) => changes.push({ added: e.added, removed: e.removed }))
    await pool.query('SELECT 1')
    expect(pool.status().endpoints.map((e) => e.name).sort()).toEqual(['pg0', 'pg1'])

    // pg2 is in /cluster from the moment its Patroni starts, long before its PostgreSQL accepts
    // connections (cloning): the pool probes it on its own until it answers, so once it streams a
    // read reaches it within a refresh (500 ms) and a health interval, not after a breaker's backoff
    // (8-10 s here before: the wait that made this test flaky).
    await patroni.joinMember(pg2)
    const joinMs = await readReaches(pool, pg2.port, 5_000)
    expect(joinMs, 'ms from streaming to the first read on it').toBeLessThan(2_000)
    expect(changes.at(-1)).toEqual({ added: ['pg2'], removed: [] })

    const leader = (await patroni.leader())!
    const leaving = [pg1, pg2].find((m) => m !== leader)!
    await patroni.stopMember(leaving)
    // Its member key expires after the DCS ttl (10 s here): gone from /cluster, then from the pool within a refresh.
    const stoppedAt = Date.now()
    await waitUntil(async () => !(await patroni.cluster()).members.some((m) => m.name === leaving.name), { what: `${leaving.name} gone from /cluster`, timeout: 20_000 })
    const goneFromClusterAt = Date.now()
    await waitUntil(() => !pool.status().endpoints.some((e) => e.name === leaving.name), { what: `${leaving.name} gone from the pool`, timeout: 5_000 })
    // Within one refresh (500 ms) and the question itself.
    expect(Date.now() - goneFromClusterAt, `stopped ${goneFromClusterAt - stoppedAt} ms before it left /cluster`).toBeLessThan(1_500)
    const removedAt = Date.now()
    const ports: number[] = []
    while (Date.now() - removedAt < 1_000) ports.push((await pool.reader.query<{ port: number }>('SELECT inet_server_port() AS port')).rows[0]!.port)
    expect(ports).not.toContain(leaving.port)
    expect(changes.at(-1)).toEqual({ added: [], removed: [leaving.name] })
    expect(pool.status().primary).toBe(leader.name)
  })
})
