import createDebug from 'debug'
import { maskPassword } from './errors.js'

/**
 * Loggers under the `pg-failover-pool:*` namespaces (enable with `DEBUG=pg-failover-pool:*`).
 * Every line goes through {@link maskPassword} so a connection string in an error message can
 * never print its password.
 */
export interface Logger {
  (format: string, ...args: unknown[]): void
}

function logger(namespace: string): Logger {
  const debug = createDebug(`pg-failover-pool:${namespace}`)
  return (format, ...args) => {
    if (!debug.enabled) return
    debug(maskPassword(format), ...args.map((a) => (typeof a === 'string' ? maskPassword(a) : a instanceof Error ? maskPassword(a.message) : a)))
  }
}

/** Topology decisions: discovery, elections, failovers. */
export const topologyLog = logger('topology')
/** Request routing and retries. */
export const requestLog = logger('request')
/** Probes and promotion watches. */
export const probeLog = logger('probe')
