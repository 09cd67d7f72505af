import { type Clock, systemClock } from '../clock.js'
import type { EndpointConfig } from '../endpoint/endpoint-config.js'
import { ConfigError, maskPassword } from '../errors.js'
import { httpGet } from '../ha/http-get.js'
import { parseCluster } from '../ha/patroni.js'
import { type EndpointProvider, checkRefreshMs } from './endpoint-provider.js'

/** Options of {@link patroniMembers}: Patroni's REST API, and the client settings of every member. */
export interface PatroniMembersOptions extends Omit<EndpointConfig, 'host' | 'port' | 'name' | 'connectionString'> {
  /**
   * Base URLs of Patroni's REST API on one or more members (e.g. `http://db1:8008`); they are asked
   * in order until one answers `GET /cluster`. Required.
   */
  urls: readonly string[]
  /** How often the member list is read again, in milliseconds (the pool also reads it when the topology changes). Default 5000. */
  refreshMs?: number
  /** Time source for the request deadline (tests inject a fake). Default: the real clock. */
  clock?: Clock
}

/**
 * The endpoints of a Patroni cluster: one per member of `GET /cluster` (the list `patronictl list`
 * shows), named after the member, at the host and port it advertises, with the other options as its
 * client settings. A member joins when its Patroni registers in the DCS and leaves when it is
 * removed or its key expires (Patroni's `ttl`, 30 s by default, after its agent stopped).
 * An answer with no member, or a member without host or port, keeps the last good list.
 * @throws ConfigError for an empty or invalid URL list or a bad option.
 */
export function patroniMembers(options: PatroniMembersOptions): EndpointProvider {
  const { urls, refreshMs: refreshInput, clock: clockInput, ...client } = options ?? ({} as PatroniMembersOptions)
  if (!Array.isArray(urls) || urls.length === 0) throw new ConfigError('patroniMembers.urls', urls, 'expected a non-empty list of Patroni REST API URLs')
  urls.forEach((url, i) => {
    if (typeof url !== 'string' || !/^https?:\/\/[^\s]+$/.test(url)) throw new ConfigError(`patroniMembers.urls[${i}]`, url, 'expected an http:// or https:// URL')
  })
  const refreshMs = checkRefreshMs(refreshInput, 'patroniMembers.refreshMs')
  const clock = clockInput ?? systemClock
  return {
    kind: 'endpoint-provider',
    description: `Patroni members (${urls.map(maskPassword).join(', ')})`,
    refreshMs,
    async list(timeoutMs: number) {
      const failures: string[] = []
      for (const base of urls) {
        let body: string
        try {
          body = await httpGet(`${base.replace(/\/+$/, '')}/cluster`, timeoutMs, clock)
        } catch (err) {
          failures.push(`${maskPassword(base)}: ${(err as Error).message}`)
          continue
        }
        return parseCluster(body).members.map((m, i) => {
          if (m.name === '' || m.host === '' || !Number.isInteger(m.port) || m.port <= 0) {
            throw new Error(`Patroni /cluster member #${i + 1} (${m.name || 'no name'}) has no usable name, host and port`)
          }
          return { ...client, name: m.name, host: m.host, port: m.port }
        })
      }
      throw new Error(`no Patroni REST API answered /cluster (${failures.join('; ')})`)
    },
  }
}
