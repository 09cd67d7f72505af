import { ENDPOINT_ROLES, type FailoverPoolStatus } from './status.js'

/**
 * The parts of `prom-client` this adapter uses (pass the module itself: it stays an optional peer).
 * `Registry` is prom-client's registry class, inferred from the module you pass.
 */
export interface PromClientLike<Registry = unknown> {
  Gauge: new (config: { name: string; help: string; labelNames?: readonly string[]; registers?: Registry[]; collect?: () => void }) => {
    set(labels: Record<string, string>, value: number): void
    reset(): void
  }
  register: Registry
}

/** Options of {@link registerMetrics}. */
export interface MetricsOptions<Registry = unknown> {
  /** The `prom-client` module (`import * as promClient from 'prom-client'`). Required. */
  client: PromClientLike<Registry>
  /** Registry to register in. Default: prom-client's global registry. */
  registry?: Registry
  /** Metric name prefix. Default `pg_failover_pool_`. */
  prefix?: string
  /** Value of the `pool` label, to tell several pools apart. Default `default`. */
  pool?: string
}

const BREAKER_VALUE = { closed: 0, 'half-open': 1, open: 2 } as const

/**
 * Exposes a pool's state to Prometheus through `prom-client`, read from `status()` at scrape time
 * (nothing runs between scrapes): per-endpoint role, breaker state, probe latency, lag, statements
 * and errors, plus failovers and readiness. `prom-client` is an optional peer dependency: this
 * module never imports it; you pass it in.
 */
export function registerMetrics<Registry>(pool: { status(): FailoverPoolStatus }, options: MetricsOptions<Registry>): void {
  const { client } = options
  const prefix = options.prefix ?? 'pg_failover_pool_'
  const registers = [options.registry ?? client.register]
  const poolLabel = options.pool ?? 'default'
  let snapshot: FailoverPoolStatus | null = null
  // Every gauge's collect() runs at scrape; the first refreshes the snapshot the others read.
  const fresh = (): FailoverPoolStatus => (snapshot = pool.status())
  const current = (): FailoverPoolStatus => snapshot ?? fresh()

  const gauge = (name: string, help: string, labelNames: readonly string[], collect: (g: InstanceType<PromClientLike<Registry>['Gauge']>) => void, first = false) => {
    const g: InstanceType<PromClientLike<Registry>['Gauge']> = new client.Gauge({
      name: prefix + name,
      help,
      labelNames: ['pool', ...labelNames],
      registers,
      collect() {
        if (first) fresh()
        g.reset()
        collect(g)
      },
    })
    return g
  }

  gauge('ready', '1 when a verified primary is known', [], (g) => g.set({ pool: poolLabel }, current().ready ? 1 : 0), true)
  gauge('failovers_total', 'Failovers completed since the pool started', [], (g) => g.set({ pool: poolLabel }, current().failovers))
  gauge('epoch', 'Topology epoch (grows with every change of primary)', [], (g) => g.set({ pool: poolLabel }, current().epoch))
  gauge('state_store_degraded', '1 while the state store cannot record the pool\'s decision', [], (g) => g.set({ pool: poolLabel }, current().stateStore.degraded ? 1 : 0))
  gauge('endpoint_role', '1 for the role each endpoint is in now', ['endpoint', 'role'], (g) => {
    for (const e of current().endpoints) for (const role of ENDPOINT_ROLES) g.set({ pool: poolLabel, endpoint: e.name, role }, e.role === role ? 1 : 0)
  })
  gauge('endpoint_breaker_state', 'Circuit breaker: 0 closed, 1 half-open, 2 open', ['endpoint'], (g) => {
    for (const e of current().endpoints) g.set({ pool: poolLabel, endpoint: e.name }, BREAKER_VALUE[e.breaker])
  })
  gauge('endpoint_probe_latency_seconds', 'Round trip of the last successful probe', ['endpoint'], (g) => {
    for (const e of current().endpoints) if (e.probeLatencyMs !== null) g.set({ pool: poolLabel, endpoint: e.name }, e.probeLatencyMs / 1000)
  })
  gauge('endpoint_replica_lag_seconds', 'Replay lag reported by the last probe', ['endpoint'], (g) => {
    for (const e of current().endpoints) if (e.lagMs !== null) g.set({ pool: poolLabel, endpoint: e.name }, e.lagMs / 1000)
  })
  gauge('endpoint_queries_total', 'Statements routed to each endpoint since start', ['endpoint', 'kind'], (g) => {
    for (const e of current().endpoints) {
      g.set({ pool: poolLabel, endpoint: e.name, kind: 'write' }, e.queries.writes)
      g.set({ pool: poolLabel, endpoint: e.name, kind: 'read' }, e.queries.reads)
    }
  })
  gauge('endpoint_errors_total', 'Statements that failed on each endpoint since start', ['endpoint'], (g) => {
    for (const e of current().endpoints) g.set({ pool: poolLabel, endpoint: e.name }, e.queries.errors)
  })
}
