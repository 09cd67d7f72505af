import { type Clock, systemClock } from '../clock.js'
import { ConfigError, maskPassword } from '../errors.js'
import { type HaManager, type HaMember, type HaView, matchEndpoint } from './ha-manager.js'
import { httpGet } from './http-get.js'

/** Options of {@link patroni}. */
export interface PatroniOptions {
  /**
   * Base URLs of Patroni's REST API, one or more members (e.g. `http://db1:8008`); they are asked
   * in order until one answers `GET /cluster`. Required.
   */
  urls: readonly string[]
  /**
   * Member name → endpoint name, for endpoints that are not named after their Patroni member and
   * do not have its host and port (for example behind PgBouncer). Default: match by name, then by
   * host and port.
   */
  endpoints?: Readonly<Record<string, string>>
  /** Time source for the request deadline (tests inject a fake). Default: the real clock. */
  clock?: Clock
}

interface PatroniClusterJson {
  members?: Array<{ name?: unknown; role?: unknown; state?: unknown; host?: unknown; port?: unknown; timeline?: unknown; lag?: unknown }>
}

/**
 * Patroni as an HA manager: reads `GET /cluster` (leader, members, lag, timeline) as a second
 * opinion for elections. Use it as `new FailoverPool({ endpoints, haManager: patroni({ urls }) })`.
 * @throws ConfigError for an empty or invalid URL list.
 */
export function patroni(options: PatroniOptions): HaManager {
  const urls = options?.urls
  if (!Array.isArray(urls) || urls.length === 0) throw new ConfigError('haManager.urls', urls, 'expected a non-empty list of Patroni REST API URLs')
  urls.forEach((url, i) => {
    if (typeof url !== 'string' || !/^https?:\/\/[^\s]+$/.test(url)) throw new ConfigError(`haManager.urls[${i}]`, url, 'expected an http:// or https:// URL')
  })
  const clock = options.clock ?? systemClock
  const names = options.endpoints ?? {}
  return {
    kind: 'patroni',
    async view(timeoutMs: number): Promise<HaView> {
      const failures: string[] = []
      for (const base of urls) {
        try {
          return parseCluster(await httpGet(`${base.replace(/\/+$/, '')}/cluster`, timeoutMs, clock))
        } catch (err) {
          failures.push(`${maskPassword(base)}: ${(err as Error).message}`)
        }
      }
      throw new Error(`no Patroni REST API answered /cluster (${failures.join('; ')})`)
    },
    endpointOf(member, endpoints) {
      const mapped = names[member.name]
      if (mapped !== undefined) return endpoints.some((e) => e.name === mapped) ? mapped : null
      return matchEndpoint(member, endpoints)
    },
  }
}

/** Parses Patroni's `/cluster` answer. @throws when it is not one. */
export function parseCluster(body: string): HaView {
  const json = JSON.parse(body) as PatroniClusterJson
  if (!json || !Array.isArray(json.members)) throw new Error('Patroni /cluster answer has no members list')
  const members: HaMember[] = json.members.map((m) => ({
    name: String(m.name ?? ''),
    host: String(m.host ?? ''),
    port: Number(m.port ?? 0),
    role: String(m.role ?? 'unknown'),
    state: String(m.state ?? 'unknown'),
    timeline: typeof m.timeline === 'number' ? m.timeline : null,
    lagBytes: typeof m.lag === 'number' ? m.lag : null,
  }))
  const leader = members.find((m) => m.role === 'leader' || m.role === 'standby_leader')
  return { leader: leader?.name ?? null, members }
}
