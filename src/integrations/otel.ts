/**
 * `pg-failover-pool/otel`: the pool's own facts for OpenTelemetry, through `@opentelemetry/api`
 * only (an optional peer dependency; without a registered SDK everything here is a no-op).
 *
 * Metrics follow the database client semantic conventions where they exist
 * (`db.client.connection.count` with `db.client.connection.state`, `db.client.connection.max`,
 * `db.client.connection.pending_requests`, attributed with `db.client.connection.pool.name` and the
 * endpoint's `server.address` / `server.port`), plus the pool's own: failovers, epoch, readiness,
 * and per endpoint its role and breaker state. Each failover is a span that covers the outage
 * (from the first sign of trouble to the new primary), and a split brain is a span too.
 *
 * Spans of the statements themselves come from `@opentelemetry/instrumentation-pg`, which traces
 * the pool's inner clients with the node that served each statement (see docs/operations.md).
 */
import { type Attributes, type MeterProvider, type ObservableResult, SpanStatusCode, type TracerProvider, metrics, trace } from '@opentelemetry/api'
import type { FailoverEvent, SplitBrainEvent } from '../events.js'
import type { FailoverPool } from '../failover-pool.js'
import { ENDPOINT_ROLES, type EndpointStatus } from '../observe/status.js'

/** Options of {@link instrumentPool}. */
export interface OtelOptions {
  /** Where metrics go. Default: the global MeterProvider (`metrics.getMeterProvider()`). */
  meterProvider?: MeterProvider
  /** Where failover spans go. Default: the global TracerProvider (`trace.getTracerProvider()`). */
  tracerProvider?: TracerProvider
  /** `db.client.connection.pool.name`, to tell several pools apart. Default `'pg-failover-pool'`. */
  poolName?: string
}

const SCOPE = 'pg-failover-pool'
const BREAKERS: ReadonlyArray<EndpointStatus['breaker']> = ['closed', 'half-open', 'open']

/**
 * Reports `pool` to OpenTelemetry: metrics read from the pool when the SDK collects (nothing runs
 * in between) and a span per failover and per split brain. Returns a function that stops it.
 */
export function instrumentPool(pool: FailoverPool, options: OtelOptions = {}): () => void {
  const meter = (options.meterProvider ?? metrics.getMeterProvider()).getMeter(SCOPE)
  const tracer = (options.tracerProvider ?? trace.getTracerProvider()).getTracer(SCOPE)
  const poolName = options.poolName ?? 'pg-failover-pool'
  const base = { 'db.client.connection.pool.name': poolName, 'db.system.name': 'postgresql' }

  const connections = meter.createObservableUpDownCounter('db.client.connection.count', { unit: '{connection}', description: 'Connections open on each endpoint, by state (idle or used).' })
  const max = meter.createObservableUpDownCounter('db.client.connection.max', { unit: '{connection}', description: 'Most connections each endpoint pool may open (pg.Pool max).' })
  const pending = meter.createObservableUpDownCounter('db.client.connection.pending_requests', { unit: '{request}', description: 'Requests waiting for a connection or for a verified primary.' })
  const failovers = meter.createObservableCounter('pg_failover_pool.failovers', { unit: '{failover}', description: 'Failovers completed since the pool was made.' })
  const epoch = meter.createObservableGauge('pg_failover_pool.epoch', { description: 'Topology epoch: grows with each change of primary.' })
  const ready = meter.createObservableGauge('pg_failover_pool.ready', { description: '1 while a verified primary takes writes, else 0.' })
  const role = meter.createObservableGauge('pg_failover_pool.endpoint.role', { description: "1 for the endpoint's current role (attribute pg_failover_pool.role), 0 for the others." })
  const breaker = meter.createObservableGauge('pg_failover_pool.endpoint.breaker', { description: "1 for the endpoint breaker's current state (attribute pg_failover_pool.breaker), 0 for the others." })

  const observe = (r: { observe(metric: unknown, value: number, attributes?: Attributes): void }): void => {
    const status = pool.status()
    const limit = pool.options.max ?? 10
    for (const e of status.endpoints) {
      const at = { ...base, 'server.address': e.host, 'server.port': e.port, 'pg_failover_pool.endpoint': e.name }
      r.observe(connections, e.totalCount - e.idleCount, { ...at, 'db.client.connection.state': 'used' })
      r.observe(connections, e.idleCount, { ...at, 'db.client.connection.state': 'idle' })
      r.observe(max, limit, at)
      for (const name of ENDPOINT_ROLES) r.observe(role, name === e.role ? 1 : 0, { ...at, 'pg_failover_pool.role': name })
      for (const name of BREAKERS) r.observe(breaker, name === e.breaker ? 1 : 0, { ...at, 'pg_failover_pool.breaker': name })
    }
    r.observe(pending, pool.waitingCount, base)
    r.observe(failovers, status.failovers, base)
    r.observe(epoch, status.epoch, base)
    r.observe(ready, status.ready ? 1 : 0, base)
  }
  const observables = [connections, max, pending, failovers, epoch, ready, role, breaker]
  meter.addBatchObservableCallback(observe as never, observables)

  const onFailover = (e: FailoverEvent): void => {
    const end = Date.now()
    const span = tracer.startSpan('pg-failover-pool failover', {
      startTime: end - e.durationMs,
      attributes: { ...base, 'pg_failover_pool.from': e.from ?? '', 'pg_failover_pool.to': e.to, 'pg_failover_pool.reason': e.reason, 'pg_failover_pool.epoch': e.epoch },
    })
    span.end(end)
  }
  const onSplitBrain = (e: SplitBrainEvent): void => {
    const span = tracer.startSpan('pg-failover-pool split brain', {
      attributes: { ...base, 'pg_failover_pool.endpoints': e.endpoints.join(','), 'pg_failover_pool.chosen': e.chosen ?? '', 'pg_failover_pool.fenced': e.fenced.join(','), 'pg_failover_pool.reason': e.reason },
    })
    span.setStatus(e.chosen === null ? { code: SpanStatusCode.ERROR, message: 'writes refused' } : { code: SpanStatusCode.OK })
    span.end()
  }
  pool.on('failover', onFailover)
  pool.on('splitBrain', onSplitBrain)
  return () => {
    meter.removeBatchObservableCallback(observe as never, observables)
    pool.off('failover', onFailover)
    pool.off('splitBrain', onSplitBrain)
  }
}
