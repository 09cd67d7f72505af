import { FailoverPool } from '../../src/failover-pool.js'
import { Apps } from './apps.js'
import { simClientClass } from './client.js'
import { SimClock } from './clock.js'
import { SimNode } from './node.js'
import { ListenerError, type Violation, World } from './world.js'

/** What the soak measured: resources the pool retains, first and last, and the failovers between. */
export interface SoakResult {
  readonly seed: number
  readonly failovers: number
  readonly violation: Violation | null
  readonly first: Retained
  readonly last: Retained
  readonly peak: Retained
}

/** Resources the pool holds that would grow with every failover if anything leaked. */
export interface Retained {
  /** Inner pg.Pools referenced by every lane of every endpoint. */
  readonly innerPools: number
  /** Simulated connections not closed (the pool's, the applications' included). */
  readonly openClients: number
  /** Timers set on the clock (the pool's, the nodes' and the applications'). */
  readonly timers: number
  /** Listeners on the pool for all its events. */
  readonly listeners: number
  /** Requests waiting for a primary. */
  readonly waiting: number
}

/** How much a resource may exceed its first measurement by the end before it counts as a leak. */
const SLACK: Retained = { innerPools: 6, openClients: 24, timers: 60, listeners: 0, waiting: 40 }

/**
 * Thousands of failovers in one pool's life: two nodes promoted in turn, the old primary left up
 * and writable each time until it rejoins, writers and readers running throughout. The pool's
 * retained resources are measured after the first failovers and at the end: nothing kept per
 * retired pool or per failover may grow.
 */
export async function runSoak(seed: number, failovers: number): Promise<SoakResult> {
  const clock = new SimClock(seed)
  const world = new World(clock)
  const a = new SimNode(world, 'n1', 'n1.sim', 5432, 'primary', '7100000000000000001')
  const b = new SimNode(world, 'n2', 'n2.sim', 5432, 'standby', '7100000000000000001')
  world.nodes.push(a, b)
  b.follow(a)
  const pool = new FailoverPool(
    {
      endpoints: world.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, user: 'app', password: 'secret', database: 'app' })),
      Client: simClientClass(world, 'pg') as never,
      clock,
      max: 2,
      idleTimeoutMillis: 0,
      failoverTimeoutMs: 2_000,
      probeTimeoutMs: 300,
      healthCheckIntervalMs: 100,
      discoveryIntervalMs: 50,
    },
    { observe: (c) => world.observe(c) },
  )
  const crashes: unknown[] = []
  const onUncaught = (err: unknown): void => {
    if (!(err instanceof ListenerError)) crashes.push(err)
  }
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)
  let count = 0
  pool.on('failover', () => void count++)
  const apps = new Apps(world, pool)
  apps.writers(2)
  apps.txWriters(1)
  apps.readers(1)
  const retained = (): Retained => {
    const endpoints = world.pool.coordinator!.endpoints
    return {
      innerPools: endpoints.reduce((n, e) => n + e.write.retainedPools + e.read.retainedPools, 0),
      openClients: [...world.clients].filter((c) => !c.closed).length,
      timers: clock.pending,
      listeners: pool.eventNames().reduce((n, e) => n + pool.listenerCount(e), 0),
      waiting: world.pool.coordinator!.waiting,
    }
  }
  const step = async (): Promise<void> => {
    await new Promise<void>((resolve) => setImmediate(resolve))
    if (crashes.length > 0) world.fail('uncaught', String(crashes[0]))
    clock.fireNext()
  }
  const until = async (done: () => boolean, maxMs: number): Promise<boolean> => {
    const deadline = clock.now() + maxMs
    while (!done() && clock.now() < deadline && !world.violation) await step()
    return done()
  }
  let first: Retained | null = null
  const peak: Record<keyof Retained, number> = { innerPools: 0, openClients: 0, timers: 0, listeners: 0, waiting: 0 }
  try {
    await until(() => pool.status().ready, 1_000)
    for (let i = 0; i < failovers && !world.violation; i++) {
      const [primary, standby] = a.role === 'primary' ? [a, b] : [b, a]
      const before = count
      standby.promote()
      if (!(await until(() => count > before, 3_000))) {
        world.fail('soak-stalled', `failover ${i + 1} did not happen within 3 s (${pool.status().lastElection})`)
        break
      }
      // The old primary stayed writable meanwhile; now it rejoins, rewound.
      primary.rejoinAsStandby(standby, true)
      await until(() => false, clock.between(20, 60))
      const now = retained()
      if (i === Math.min(20, failovers - 1)) first = now
      for (const key of Object.keys(peak) as Array<keyof Retained>) peak[key] = Math.max(peak[key], now[key])
    }
    const last = retained()
    if (first && !world.violation) {
      for (const key of Object.keys(SLACK) as Array<keyof Retained>) {
        if (last[key] > first[key] + SLACK[key]) world.fail('retention-grows', `${key}: ${first[key]} after 20 failovers, ${last[key]} after ${count}`)
      }
    }
    apps.stopping = true
    let ended = false
    void pool.end().then(() => (ended = true))
    await until(() => ended, 10_000)
    if (!ended && !world.violation) world.fail('end-unbounded', 'end() did not complete after the soak')
    return { seed, failovers: count, violation: world.violation, first: first ?? last, last, peak }
  } finally {
    await new Promise<void>((resolve) => setImmediate(resolve))
    process.off('uncaughtException', onUncaught)
    process.off('unhandledRejection', onUncaught)
  }
}
