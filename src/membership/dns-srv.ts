import { promises as dns } from 'node:dns'
import { type Clock, systemClock, withDeadline } from '../clock.js'
import type { EndpointConfig } from '../endpoint/endpoint-config.js'
import { ConfigError } from '../errors.js'
import { type EndpointProvider, checkRefreshMs } from './endpoint-provider.js'

/** Options of {@link dnsSrv}: when to ask, whom, and the client settings of every host it finds. */
export interface DnsSrvOptions extends Omit<EndpointConfig, 'host' | 'port' | 'name' | 'connectionString' | 'weight'> {
  /** How often the records are resolved again, in milliseconds. Default 5000. */
  refreshMs?: number
  /**
   * DNS servers to ask (`'10.0.0.10'`, `'127.0.0.1:5353'`, `'[::1]:53'`). Default: the system's
   * (`/etc/resolv.conf`), as `dns.resolveSrv` uses.
   */
  servers?: readonly string[]
  /** Time source for the query deadline (tests inject a fake). Default: the real clock. */
  clock?: Clock
}

/**
 * The endpoints named by the DNS SRV records of `name` (e.g. `_postgresql._tcp.db.example.com`, or a
 * Kubernetes headless service's `_postgres._tcp.db.ns.svc.cluster.local`), resolved again every
 * `refreshMs`: one endpoint per record, at its target and port, named `target:port`, with the
 * record's weight as its share of reads (weight 0 counts as 1) and the other options as its client
 * settings (user, password, database, ssl...). Records are ordered by priority, then target.
 * An answer with no record, or one that fails, keeps the last good list.
 * @throws ConfigError for an empty name or a bad option.
 */
export function dnsSrv(name: string, options: DnsSrvOptions = {}): EndpointProvider {
  if (typeof name !== 'string' || name.trim() === '' || /\s/.test(name)) throw new ConfigError('dnsSrv.name', name, 'expected a DNS name such as _postgresql._tcp.db.example.com')
  const { refreshMs: refreshInput, servers, clock: clockInput, ...client } = options
  const refreshMs = checkRefreshMs(refreshInput, 'dnsSrv.refreshMs')
  if (servers !== undefined && (!Array.isArray(servers) || servers.length === 0 || servers.some((s) => typeof s !== 'string' || s === ''))) {
    throw new ConfigError('dnsSrv.servers', servers, 'expected a non-empty list of DNS server addresses')
  }
  const clock = clockInput ?? systemClock
  return {
    kind: 'endpoint-provider',
    description: `DNS SRV ${name}`,
    refreshMs,
    async list(timeoutMs: number) {
      const resolver = new dns.Resolver({ timeout: Math.max(1, Math.round(timeoutMs)), tries: 1 })
      if (servers !== undefined) resolver.setServers([...servers])
      const lookup = resolver.resolveSrv(name)
      const records = await withDeadline(lookup, timeoutMs, () => new Error(`DNS SRV ${name}: no answer within ${timeoutMs} ms`), clock).finally(() => resolver.cancel())
      return [...records]
        .sort((a, b) => a.priority - b.priority || a.name.localeCompare(b.name) || a.port - b.port)
        .map((r) => ({ ...client, host: r.name, port: r.port, name: `${r.name}:${r.port}`, weight: r.weight > 0 ? r.weight : 1 }))
    },
  }
}
