import { createHash } from 'node:crypto'
import type pg from 'pg'
import type { Clock } from '../clock.js'
import { NodeMonitor, type WatchSettings } from './node-monitor.js'

/**
 * The process's node monitors, one per node and connection identity: pools over the same nodes
 * with the same credentials share one monitor session per node (see {@link NodeMonitor}). This is
 * process-wide state by definition of the feature — several FailoverPools of one process (an
 * ORM's master and slave pools, per-tenant pools) are what it joins — so it lives in this module,
 * and only here.
 */
const monitors = new Map<string, NodeMonitor>()
const objectIds = new WeakMap<object, number>()
let nextObjectId = 1

/** What identifies a monitor session: where it connects, as whom, and how (objects by identity, the password by digest). */
export interface MonitorIdentity {
  readonly host: string
  readonly port: number
  readonly config: pg.ClientConfig
  readonly clock: Clock
  readonly watch: WatchSettings
}

/** The shared monitor for `identity`, made with `create` when none exists; counted until {@link releaseMonitor}. */
export function acquireMonitor(identity: MonitorIdentity, create: () => NodeMonitor): NodeMonitor {
  const key = keyOf(identity)
  let monitor = monitors.get(key)
  if (!monitor) {
    monitor = create()
    monitors.set(key, monitor)
  }
  monitor.refs++
  return monitor
}

/** One user of `monitor` is done; the last one closes it. */
export function releaseMonitor(monitor: NodeMonitor): void {
  if (--monitor.refs > 0) return
  for (const [key, m] of monitors) if (m === monitor) monitors.delete(key)
  monitor.close()
}

/** Monitors alive in this process (for tests). */
export function liveMonitors(): number {
  return monitors.size
}

function keyOf({ host, port, config, clock, watch }: MonitorIdentity): string {
  const password = (config as { password?: unknown }).password
  const parts = [
    host,
    port,
    config.database ?? '',
    config.user ?? '',
    typeof password === 'string' ? createHash('sha256').update(password).digest('base64') : idOf(password),
    typeof config.ssl === 'object' && config.ssl !== null ? idOf(config.ssl) : String(config.ssl ?? ''),
    idOf((config as { Client?: unknown }).Client),
    idOf(clock),
    watch.windowMs,
    watch.checkMs,
  ]
  return JSON.stringify(parts)
}

function idOf(value: unknown): string | number {
  if (value === undefined || value === null) return ''
  if (typeof value !== 'object' && typeof value !== 'function') return `v:${String(value)}`
  let id = objectIds.get(value as object)
  if (id === undefined) {
    id = nextObjectId++
    objectIds.set(value as object, id)
  }
  return id
}
