/**
 * pg-failover-pool/otel through a live failover, collected by the real OpenTelemetry SDK
 * (sdk-metrics, sdk-trace-base); and what @opentelemetry/instrumentation-pg shows for a
 * FailoverPool's statements (in a child process, where it is registered before pg loads).
 */
import { execFile } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import { promisify } from 'node:util'
import { type DataPoint, MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics'
import { BasicTracerProvider, InMemorySpanExporter, SimpleSpanProcessor } from '@opentelemetry/sdk-trace-base'
import { describe, expect, it } from 'vitest'
import { instrumentPool } from '../../src/integrations/otel.js'
import type { ClusterNode } from '../support/cluster.js'
import { useResources } from '../support/pools.js'
import { nextEvent } from '../support/wait.js'

const res = useResources()

class TestReader extends MetricReader {
  protected override async onForceFlush(): Promise<void> {}
  protected override async onShutdown(): Promise<void> {}
}

/** Every data point of every metric, as `name{attr=value,...} = value`, for readable assertions. */
async function points(reader: TestReader): Promise<Map<string, Array<{ attributes: Record<string, unknown>; value: number }>>> {
  const { resourceMetrics } = await reader.collect()
  const out = new Map<string, Array<{ attributes: Record<string, unknown>; value: number }>>()
  for (const scope of resourceMetrics.scopeMetrics) {
    for (const metric of scope.metrics) {
      out.set(metric.descriptor.name, (metric.dataPoints as Array<DataPoint<number>>).map((p) => ({ attributes: p.attributes, value: p.value })))
    }
  }
  return out
}

const pick = (ps: Array<{ attributes: Record<string, unknown>; value: number }> | undefined, attrs: Record<string, unknown>): number | undefined =>
  ps?.find((p) => Object.entries(attrs).every(([k, v]) => p.attributes[k] === v))?.value

describe('OpenTelemetry', () => {
  it('instrumentPool: connection metrics per endpoint (semantic conventions), roles, breakers, failovers, and a span covering each failover', async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const pool = res.pool(cluster, { max: 5 })
    const reader = new TestReader()
    const meterProvider = new MeterProvider({ readers: [reader] })
    const spans = new InMemorySpanExporter()
    const tracerProvider = new BasicTracerProvider({ spanProcessors: [new SimpleSpanProcessor(spans)] })
    const stop = instrumentPool(pool, { meterProvider, tracerProvider, poolName: 'orders-db' })
    res.defer(stop)

    const client = await pool.connect()
    await pool.query('SELECT 1')
    let m = await points(reader)
    const at = (n: ClusterNode) => ({ 'db.client.connection.pool.name': 'orders-db', 'server.port': n.port })
    expect(pick(m.get('db.client.connection.count'), { ...at(n0), 'db.client.connection.state': 'used' })).toBe(1)
    expect(pick(m.get('db.client.connection.count'), { ...at(n0), 'db.client.connection.state': 'idle' })).toBe(1)
    expect(pick(m.get('db.client.connection.max'), at(n0))).toBe(5)
    expect(pick(m.get('pg_failover_pool.endpoint.role'), { ...at(n0), 'pg_failover_pool.role': 'primary' })).toBe(1)
    expect(pick(m.get('pg_failover_pool.endpoint.role'), { ...at(n1), 'pg_failover_pool.role': 'standby' })).toBe(1)
    expect(pick(m.get('pg_failover_pool.endpoint.breaker'), { ...at(n0), 'pg_failover_pool.breaker': 'closed' })).toBe(1)
    expect(pick(m.get('pg_failover_pool.ready'), {})).toBe(1)
    expect(pick(m.get('pg_failover_pool.failovers'), {})).toBe(0)
    client.release()

    const failover = nextEvent(pool, 'failover')
    // Wall-clock bounds of the outage: the pool cannot lose node0 before the stop begins, and the
    // span is ended (by instrumentPool's listener, registered first) before the event reaches us.
    const beforeFault = Date.now()
    await cluster.stop(n0, 'fast')
    await cluster.promote(n1)
    const event = await failover
    const afterEvent = Date.now()
    m = await points(reader)
    expect(pick(m.get('pg_failover_pool.failovers'), {})).toBe(1)
    expect(pick(m.get('pg_failover_pool.epoch'), {})).toBe(2)
    expect(pick(m.get('pg_failover_pool.endpoint.role'), { ...at(n1), 'pg_failover_pool.role': 'primary' })).toBe(1)
    expect(pick(m.get('pg_failover_pool.endpoint.role'), { ...at(n0), 'pg_failover_pool.role': 'unreachable' })).toBe(1)
    const span = spans.getFinishedSpans().find((s) => s.name === 'pg-failover-pool failover')!
    expect(span.attributes).toMatchObject({ 'pg_failover_pool.from': n0.name, 'pg_failover_pool.to': n1.name, 'pg_failover_pool.epoch': 2, 'db.client.connection.pool.name': 'orders-db' })
    // The span covers the outage: its duration is the failover's ...
    const ms = ([s, ns]: [number, number]): number => s * 1000 + ns / 1e6
    const durationMs = ms(span.duration)
    expect(Math.abs(durationMs - event.durationMs)).toBeLessThan(5)
    // ... and it sits where the outage was: it starts no earlier than the fault (the loss is timed
    // on the pool's monotonic clock and rounded to a ms, hence the slack) and ends no later than
    // the failover event; a span placed by a wrong start or end time falls outside.
    const SLACK_MS = 2
    expect(ms(span.startTime)).toBeGreaterThanOrEqual(beforeFault - SLACK_MS)
    expect(ms(span.startTime)).toBeLessThanOrEqual(afterEvent + SLACK_MS)
    expect(ms(span.endTime)).toBeGreaterThanOrEqual(beforeFault - SLACK_MS)
    expect(ms(span.endTime)).toBeLessThanOrEqual(afterEvent + SLACK_MS)
    await tracerProvider.shutdown()
    await meterProvider.shutdown()
  })

  it("instrumentation-pg, registered before pg loads, traces a FailoverPool's statements with the node that served each, across a failover", async () => {
    const cluster = await res.cluster({ standbys: 1 })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    const fixture = fileURLToPath(new URL('../fixtures/otel-traced.ts', import.meta.url))
    const { stdout } = await promisify(execFile)(process.execPath, ['--import', 'tsx', fixture, JSON.stringify(cluster.nodes.map((n) => ({ ...n.config, name: n.name })))], {
      cwd: fileURLToPath(new URL('../..', import.meta.url)),
      timeout: 60_000,
    })
    const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { before: number[]; after: number[] }
    // Every statement span names the server that ran it: the primary before, the promoted node after.
    expect(result.before.length).toBeGreaterThan(0)
    expect(new Set(result.before)).toEqual(new Set([n0.port]))
    expect(new Set(result.after)).toEqual(new Set([n1.port]))
  })
})
