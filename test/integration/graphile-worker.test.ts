/**
 * graphile-worker (0.17) on a FailoverPool (`pgPool: pool`), against real clusters.
 *
 * 1. One runner (`run()` with a task list) and its `addJob` through a killed primary and a
 *    promoted standby: jobs added before, during and after all run exactly once, a job whose task
 *    runs across the failover completes on the new primary, and the runner's LISTEN client — a
 *    client it checks out for its whole life — is lost with the old primary and LISTENs again on
 *    the new one (polling is set far beyond the test's deadlines, so the jobs added after the
 *    failover can only be picked up through its NOTIFY).
 * 2. graphile-worker's pool check (`assertPool`, dist/lib.js) prints "Your pool doesn't have error
 *    handlers!" when the pool has no 'error' listener and "...doesn't have all of the error
 *    handlers!" when it has one but no 'connect' listener. Neither may be printed for a
 *    FailoverPool. The check writes with console.warn, not through the `logger` option, so both
 *    are captured.
 */
import { EventEmitter } from 'node:events'
import { Logger, makeWorkerUtils, run, type Runner, type WorkerEvents } from 'graphile-worker'
import { describe, expect, it, vi } from 'vitest'
import { FailoverPool } from '../../src/index.js'
import type { Cluster, ClusterNode } from '../support/cluster.js'
import { type Attempt, JobRuns, NO_VIOLATIONS } from '../support/job-runs.js'
import { POOL_DEFAULTS, endpointsOf, useResources } from '../support/pools.js'
import { nextEvent, waitUntil } from '../support/wait.js'

const res = useResources()

/** A graphile-worker logger that keeps every line. */
function capturingLogger(lines: string[]): Logger {
  return new Logger(() => (level, message) => {
    lines.push(`${level}: ${message}`)
  })
}

const POOL_WARNING = /doesn't have (all of the )?error handlers/

describe('graphile-worker on a FailoverPool', () => {
  it('a runner and its addJob through a killed primary: every job runs once, the LISTEN client listens on the new primary', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 6 })
    const logs: string[] = []
    const events: WorkerEvents = new EventEmitter()
    /** The clients the runner LISTENs on, in order. */
    const listenClients: unknown[] = []
    events.on('pool:listen:success', ({ client }) => listenClients.push(client))
    // What woke the worker, in order: a jobs:insert NOTIFY (graphile-worker reports only those of
    // its current LISTEN client; 'notify' when that is a re-LISTENed one, not the first), its asking
    // for a job, and its finding none (it is then idle until a NOTIFY or the poll interval).
    const trail: Array<'notify' | 'notify-first-client' | 'getJob' | 'empty'> = []
    events.on('pool:listen:notification', ({ client, message }) => {
      if (message.channel === 'jobs:insert') trail.push(client === listenClients.at(-1) && client !== listenClients[0] ? 'notify' : 'notify-first-client')
    })
    events.on('worker:getJob:start', () => trail.push('getJob'))
    events.on('worker:getJob:empty', () => trail.push('empty'))

    const jobRuns = new JobRuns()
    const runner: Runner = await run({
      pgPool: pool,
      concurrency: 1,
      // Far beyond every wait below: a job is picked up through LISTEN/NOTIFY or not in time.
      pollInterval: 600_000,
      noHandleSignals: true,
      logger: capturingLogger(logs),
      events,
      taskList: {
        record: async (payload) => {
          const { key, gate } = payload as { key: string; gate?: boolean }
          await jobRuns.record(key, gate)
        },
      },
    })
    // Stopped before the pool ends (teardown runs newest first), with the gate open so it can finish.
    res.defer(async () => {
      jobRuns.openGate()
      await runner.stop()
    })
    await waitUntil(() => listenClients.length === 1, { what: 'the runner to LISTEN', timeout: 15_000 })
    // The event comes before the LISTEN is sent; a NOTIFY before it completes would be missed.
    await expect.poll(() => listeningSessions(cluster, n0), { timeout: 10_000 }).toBe(1)

    const add = (key: string, gated = false): Promise<Attempt> =>
      runner.addJob('record', gated ? { key, gate: true } : { key }).then(
        () => ({ key, error: null }),
        (error: unknown) => ({ key, error }),
      )
    const addAll = (phase: string, n: number): Promise<Attempt[]> => Promise.all(Array.from({ length: n }, (_, i) => add(`${phase}-${i}`)))

    // Before: added and run on node0.
    const before = await addAll('before', 5)
    expect(before.map((a) => a.error)).toEqual(before.map(() => null))
    await waitUntil(() => before.every((a) => jobRuns.runs.get(a.key) === 1), { what: 'the jobs added before the failover to run', timeout: 15_000 })

    // A task running across the failover, and jobs queued behind it (concurrency 1).
    const entered = jobRuns.entered()
    const gated = await add('gated', true)
    expect(gated.error).toBeNull()
    await entered
    const queued = await addAll('queued', 5)
    expect(queued.map((a) => a.error)).toEqual(queued.map(() => null))
    // Asynchronous replication: what node0 acknowledged is on node1 before node0 dies.
    await cluster.waitForReplication(n0)

    // The failover: node0 killed (SIGKILL), jobs added while no primary exists, node1 promoted.
    const failover = nextEvent(pool, 'failover')
    await cluster.kill(n0)
    await expect.poll(() => pool.status().primary, { timeout: 10_000 }).toBeNull()
    const duringAdds = addAll('during', 5)
    await cluster.promote(n1)
    expect(await failover).toMatchObject({ from: n0.name, to: n1.name })
    const during = await duringAdds

    // The runner's LISTEN client was lost with node0 and listens again, on node1.
    await waitUntil(() => listenClients.length >= 2, { what: 'the runner to LISTEN again', timeout: 30_000, diagnostics: () => logs.slice(-20).join('\n') })
    await expect.poll(() => listeningSessions(cluster, n1), { timeout: 10_000 }).toBe(1)

    jobRuns.openGate()
    // The gated task completes on node1 and the worker works through the queue (it keeps fetching after a job).
    await waitUntil(() => [gated, ...queued, ...during].every((a) => a.error !== null || jobRuns.runs.get(a.key) === 1), {
      what: 'the gated, queued and during jobs to run',
      timeout: 20_000,
      diagnostics: () => JSON.stringify([...jobRuns.runs]) + '\n' + logs.slice(-20).join('\n'),
    })

    // After: once the worker is idle (it asked for a job after the last one and found none: a job
    // is counted when its handler starts, and the worker fetches again after completing it), only
    // a NOTIFY on the new LISTEN client can wake it in time.
    await waitUntil(() => trail.at(-1) === 'empty', { what: 'the worker to find no job and idle', timeout: 20_000, diagnostics: () => trail.slice(-20).join(',') })
    const idleAt = trail.length
    const after = await addAll('after', 5)
    expect(after.map((a) => a.error)).toEqual(after.map(() => null))
    await waitUntil(() => after.every((a) => jobRuns.runs.get(a.key) === 1), {
      what: 'the jobs added after the failover to run (woken by NOTIFY)',
      timeout: 20_000,
      diagnostics: () => JSON.stringify([...jobRuns.runs]) + '\n' + trail.slice(idleAt).join(',') + '\n' + logs.slice(-20).join('\n'),
    })
    // The first thing after idling was a jobs:insert NOTIFY on the re-LISTENed client, and every
    // NOTIFY since came on it.
    const sinceIdle = trail.slice(idleAt)
    expect(sinceIdle[0]).toBe('notify')
    expect(sinceIdle.filter((t) => t.startsWith('notify')).every((t) => t === 'notify')).toBe(true)

    const all = [...before, gated, ...queued, ...during, ...after]
    // Only an add issued during the failover may have failed.
    expect(all.filter((a) => a.error !== null).length).toBeLessThanOrEqual(during.length)
    // An add failed only as outcome-unknown or for want of a primary, and then its job (which may
    // exist: it may have been written before the loss) ran at most once; every acknowledged job
    // ran exactly once; nothing ran that was never added.
    expect(jobRuns.violations(all)).toEqual(NO_VIOLATIONS)
    // Nothing is left over on the new primary: every job completed (graphile-worker deletes completed jobs).
    // (Polled: a job's handler is counted before the worker's query that completes it.)
    await expect.poll(() => remainingJobs(cluster, n1), { timeout: 10_000 }).toBe(0)
  })

  it('graphile-worker prints no pool warning for a FailoverPool (with or without a user error listener)', async () => {
    const cluster = await res.cluster({ standbys: 0 })
    const warn = vi.spyOn(console, 'warn')
    res.defer(() => warn.mockRestore())
    const logs: string[] = []

    // As an application makes it: no listener of its own ...
    const bare = res.track(new FailoverPool({ endpoints: endpointsOf(cluster.nodes), ...POOL_DEFAULTS }))
    // ... or only the optional 'error' listener the README shows.
    const withErrorListener = res.track(new FailoverPool({ endpoints: endpointsOf(cluster.nodes), ...POOL_DEFAULTS }))
    withErrorListener.on('error', () => undefined)

    for (const pool of [bare, withErrorListener]) {
      const utils = await makeWorkerUtils({ pgPool: pool, logger: capturingLogger(logs) })
      await utils.addJob('noop', {})
      await utils.release()
    }
    const printed = warn.mock.calls.map((args) => args.map(String).join(' '))
    expect(printed.filter((line) => POOL_WARNING.test(line))).toEqual([])
    expect(logs.filter((line) => POOL_WARNING.test(line))).toEqual([])
  })
})

/** Sessions on `node` whose last statement was graphile-worker's LISTEN, completed. */
async function listeningSessions(cluster: Cluster, node: ClusterNode): Promise<number> {
  const rows = await cluster.sql<{ n: number }>(node, `SELECT count(*)::int AS n FROM pg_stat_activity WHERE query LIKE 'LISTEN "jobs:insert"%' AND state = 'idle'`)
  return rows[0]!.n
}

/** Jobs still in graphile-worker's table on `node`. */
async function remainingJobs(cluster: Cluster, node: ClusterNode): Promise<number> {
  const rows = await cluster.sql<{ n: number }>(node, 'SELECT count(*)::int AS n FROM graphile_worker._private_jobs')
  return rows[0]!.n
}
