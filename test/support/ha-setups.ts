/**
 * The HA setups of the scenario tests and the HA benchmark: a Patroni or repmgr cluster, optionally
 * a PgBouncer in front of every node, and a FailoverPool over them as a user of that manager would
 * configure it, with a write ledger running.
 */
import { type FailoverPool, type FailoverPoolOptions, patroni } from '../../src/index.js'
import { type PatroniCluster, startPatroni } from './ha/patroni.js'
import { type PgBouncer, type PgBouncerOptions, startPgBouncer } from './ha/pgbouncer.js'
import { type RepmgrCluster, startRepmgr } from './ha/repmgr.js'
import { recordFailovers, type TimedFailover } from './ha-scenario.js'
import { LedgerWriter } from './ledger-writer.js'
import { makePool } from './pools.js'
import { waitUntil } from './wait.js'

/** Registers something for teardown and returns it (useResources().track, or a bench's own list). */
export type Track = <T extends { destroy(): unknown } | { end(): unknown }>(resource: T) => T

/** A running scenario. */
export interface HaSetup<C> {
  readonly cluster: C
  readonly pool: FailoverPool
  readonly writer: LedgerWriter
  readonly failovers: TimedFailover[]
  /** The PostgreSQL port of a node, by endpoint name (inet_server_port() behind PgBouncer too). */
  portOf(name: string): number
}

/** Options shared by both managers' setups. */
export interface HaSetupOptions {
  /** A PgBouncer in front of every node, in this pool mode. */
  readonly bouncer?: 'session' | 'transaction'
  /** PgBouncer settings beyond the harness defaults. */
  readonly bouncerSettings?: Partial<PgBouncerOptions>
  /** Pause after each acknowledged write (ms); 0: back to back. */
  readonly intervalMs?: number
  /** Pool options beyond the scenario defaults. */
  readonly pool?: Partial<FailoverPoolOptions>
}

async function bouncersFor(nodes: ReadonlyArray<{ host: string; port: number; config: { user: string; password: string } }>, mode: 'session' | 'transaction', settings: Partial<PgBouncerOptions>, track: Track): Promise<PgBouncer[]> {
  const bouncers: PgBouncer[] = []
  for (const n of nodes) bouncers.push(track(await startPgBouncer({ target: { host: n.host, port: n.port }, user: n.config.user, password: n.config.password, poolMode: mode, ...settings })))
  return bouncers
}

async function startWriting<C>(cluster: C, pool: FailoverPool, portOf: (name: string) => number, intervalMs: number | undefined, track: Track): Promise<HaSetup<C>> {
  track(pool)
  const failovers = recordFailovers(pool)
  await LedgerWriter.create(pool)
  const writer = new LedgerWriter(pool, { concurrency: 2, ...(intervalMs ? { intervalMs } : {}) }).start()
  await waitUntil(() => writer.acked.length > 10, { what: 'writes before the fault', timeout: 30_000 })
  return { cluster, pool, writer, failovers, portOf }
}

/** Patroni (3 members on etcd), the pool with `haManager: patroni({ urls })`. */
export async function patroniSetup(track: Track, options: HaSetupOptions & { synchronousMode?: boolean } = {}): Promise<HaSetup<PatroniCluster>> {
  const cluster = track(await startPatroni({ members: 3, ...(options.synchronousMode ? { synchronousMode: true } : {}) }))
  const bouncers = options.bouncer ? await bouncersFor(cluster.members, options.bouncer, options.bouncerSettings ?? {}, track) : []
  const endpoints = cluster.members.map((m, i) => (bouncers[i] ? { ...bouncers[i].config(), name: m.name } : { ...m.config }))
  const pool = makePool([], { endpoints, haManager: patroni({ urls: cluster.members.map((m) => m.restUrl) }), healthCheckIntervalMs: 1_000, failoverTimeoutMs: 60_000, ...options.pool })
  return startWriting(cluster, pool, (name) => cluster.member(name).port, options.intervalMs, track)
}

/** repmgr (primary, two standbys, witness — all listed as endpoints). */
export async function repmgrSetup(track: Track, options: HaSetupOptions = {}): Promise<HaSetup<RepmgrCluster>> {
  const cluster = track(await startRepmgr({ standbys: 2 }))
  const bouncers = options.bouncer ? await bouncersFor(cluster.nodes, options.bouncer, options.bouncerSettings ?? {}, track) : []
  const endpoints = cluster.nodes.map((n, i) => (bouncers[i] ? { ...bouncers[i].config(), name: n.name } : { ...n.config }))
  const pool = makePool([], { endpoints, healthCheckIntervalMs: 1_000, failoverTimeoutMs: 60_000, ...options.pool })
  return startWriting(cluster, pool, (name) => cluster.node(name).port, options.intervalMs, track)
}

/** PgBouncer's own defaults for retrying a failed server login and for queueing (what users run). */
export const PGBOUNCER_DEFAULT_RETRY = { serverLoginRetry: 15, queryWaitTimeout: 120, serverConnectTimeout: 15 } as const
