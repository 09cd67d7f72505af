import { parse as parseConnectionString } from 'pg-connection-string'
import type { ClientConfig } from 'pg'
import { ConfigError, maskPassword } from '../errors.js'

/** One endpoint as the user may give it: a pg client config object with an optional name. */
export interface EndpointConfig extends ClientConfig {
  /** Name used in events, errors and `status()`. Default: `host:port`. */
  name?: string
  /** Relative share of reads this node gets as a replica (a positive number). Default 1. */
  weight?: number
}

/** What `options.endpoints` accepts. */
export type EndpointsInput = string | ReadonlyArray<string | EndpointConfig>

/** An endpoint after validation: its name, where it is, and the client config its pool gets. */
export interface ResolvedEndpoint {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly database: string | undefined
  /** Relative share of reads as a replica. */
  readonly weight: number
  /** Settings specific to this endpoint, merged over the shared pool options by the pool. */
  readonly config: ClientConfig
}

const DEFAULT_PORT = 5432

/**
 * Turns `options.endpoints` into one {@link ResolvedEndpoint} per node. Accepts a list of
 * connection strings or config objects, or one libpq-style multi-host URL
 * (`postgres://u:p@h1:5432,h2:5433/db`), which node-postgres cannot parse on its own.
 *
 * @throws ConfigError naming the field (e.g. `endpoints[1]`) for an empty list, an unparsable
 *   string, a bad port, or two endpoints that name the same server or the same name.
 */
export function resolveEndpoints(input: unknown, shared: ClientConfig, field = 'endpoints'): ResolvedEndpoint[] {
  if (typeof input === 'string') {
    const urls = splitMultiHostUrl(input, field)
    return checkUnique(urls.map((url, i) => resolveOne(url, urls.length > 1 ? `${field}[${i}]` : field, shared)))
  }
  if (!Array.isArray(input)) {
    throw new ConfigError('endpoints', input, 'expected a connection string or a non-empty array of connection strings / config objects')
  }
  if (input.length === 0) throw new ConfigError('endpoints', input, 'at least one endpoint is required')
  const resolved: ResolvedEndpoint[] = []
  input.forEach((item: unknown, i) => {
    const field = `endpoints[${i}]`
    if (typeof item === 'string') {
      const urls = splitMultiHostUrl(item, field)
      urls.forEach((url) => resolved.push(resolveOne(url, field, shared)))
    } else {
      resolved.push(resolveOne(item, field, shared))
    }
  })
  return checkUnique(resolved)
}

function resolveOne(item: unknown, field: string, shared: ClientConfig): ResolvedEndpoint {
  let config: EndpointConfig
  if (typeof item === 'string') {
    config = { connectionString: item }
  } else if (item !== null && typeof item === 'object') {
    config = { ...(item as EndpointConfig) }
    // Keep the password out of enumeration, as pg-pool does, so logging a config cannot leak it.
    if ('password' in (item as object)) hidePassword(config, (item as EndpointConfig).password)
  } else {
    throw new ConfigError(field, item, 'expected a connection string or a pg client config object')
  }

  let host = config.host ?? shared.host
  let port: unknown = config.port ?? shared.port
  let database = config.database ?? shared.database
  if (config.connectionString !== undefined) {
    if (typeof config.connectionString !== 'string' || config.connectionString.trim() === '') {
      throw new ConfigError(`${field}.connectionString`, config.connectionString, 'expected a non-empty connection string')
    }
    const parsed = parseStrict(config.connectionString, field)
    checkSessionAttrs(parsed.target_session_attrs, `${field}.target_session_attrs`)
    // The string wins over the object's own fields, as in pg (which connects where the string says).
    host = parsed.host ?? host
    port = parsed.port ?? port
    database = parsed.database ?? database
  }
  host = host || process.env.PGHOST || 'localhost'
  if (typeof host !== 'string' || !isHost(host)) {
    throw new ConfigError(`${field}.host`, host, 'expected a host name, an IPv4 or IPv6 address, or a socket directory starting with /')
  }
  const portNumber = port === undefined || port === null || port === '' ? Number(process.env.PGPORT || DEFAULT_PORT) : Number(port)
  if (!Number.isInteger(portNumber) || portNumber < 1 || portNumber > 65535) {
    throw new ConfigError(`${field}.port`, port, 'expected an integer from 1 to 65535')
  }
  // IPv6 literals in brackets, as in URLs: `[::1]:5432`, never the ambiguous `::1:5432`.
  const name = config.name ?? `${host.includes(':') ? `[${host}]` : host}:${portNumber}`
  if (typeof name !== 'string' || name.length === 0) {
    throw new ConfigError(`${field}.name`, name, 'expected a non-empty string')
  }
  const weight = config.weight ?? 1
  if (typeof weight !== 'number' || !Number.isFinite(weight) || weight <= 0) {
    throw new ConfigError(`${field}.weight`, weight, 'expected a positive number')
  }
  delete config.name
  delete config.weight
  return { name, host, port: portNumber, database: database ?? undefined, weight, config }
}

/** Parses a connection string, turning every parser failure into a ConfigError without the password. */
function parseStrict(text: string, field: string): ReturnType<typeof parseConnectionString> {
  const isUrl = /^[a-z][a-z0-9+.-]*:\/\//i.test(text)
  if (isUrl) {
    const scheme = text.slice(0, text.indexOf(':')).toLowerCase()
    if (scheme !== 'postgres' && scheme !== 'postgresql' && scheme !== 'socket') {
      throw new ConfigError(field, text, `unsupported scheme "${scheme}:" (expected postgres:// or postgresql://)`)
    }
    try {
      new URL(text.replace(/^socket:/i, 'postgres:'))
    } catch {
      throw new ConfigError(field, text, 'not a valid connection URL')
    }
  } else if (!/^\s*[a-z_]+\s*=/i.test(text)) {
    throw new ConfigError(field, text, 'not a connection URL (postgres://...) nor key=value pairs')
  }
  try {
    return parseConnectionString(text)
  } catch (err) {
    const reason = err instanceof Error ? maskPassword(err.message) : 'unparsable'
    throw new ConfigError(field, text, reason)
  }
}

/**
 * Splits `postgres://u:p@h1:5432,h2:5433/db?x=y` into one URL per host, keeping credentials, path
 * and query. A single-host string comes back unchanged.
 */
export function splitMultiHostUrl(text: string, field: string): string[] {
  const match = /^([a-z][a-z0-9+.-]*:\/\/)([^/?#]*@)?([^/?#]*)(.*)$/is.exec(text)
  if (!match) return [text]
  const [, scheme, credentials = '', hostList = '', rest = ''] = match
  if (!hostList.includes(',')) return [text]
  const hosts = hostList.split(',')
  return hosts.map((hostPort, i) => {
    if (hostPort.trim() === '') throw new ConfigError(field, text, `host #${i + 1} in the multi-host list is empty`)
    return `${scheme}${credentials}${hostPort.trim()}${rest}`
  })
}

function checkUnique(endpoints: ResolvedEndpoint[]): ResolvedEndpoint[] {
  const names = new Set<string>()
  const servers = new Set<string>()
  endpoints.forEach((e, i) => {
    const server = `${e.host}:${e.port}/${e.database ?? ''}`
    if (servers.has(server)) throw new ConfigError(`endpoints[${i}]`, `${e.host}:${e.port}`, 'duplicate endpoint (same host, port and database as an earlier one)')
    if (names.has(e.name)) throw new ConfigError(`endpoints[${i}].name`, e.name, 'duplicate endpoint name')
    names.add(e.name)
    servers.add(server)
  })
  return endpoints
}

/** Makes `password` a non-enumerable property so logging or serialising the object never shows it. */
export function hidePassword<T extends object>(target: T, password: unknown): T {
  Object.defineProperty(target, 'password', { value: password, enumerable: false, writable: true, configurable: true })
  return target
}

/**
 * A host name or IPv4 address, an IPv6 address (brackets already removed by the parser; a zone such
 * as `%eth0` allowed) or a Unix socket directory. Anything else (a stray `%`, `@`, spaces) would
 * only fail later, at connect time, with a less helpful message.
 */
function isHost(host: string): boolean {
  return /^[\p{L}\p{N}._-]+$/u.test(host) || /^[0-9a-f:.]*:[0-9a-f:.]*(%[\w.-]+)?$/i.test(host) || host.startsWith('/')
}

/**
 * libpq's `target_session_attrs`: the pool's own surfaces already choose by role (writes to the
 * verified primary, `pool.reader` to replicas), so `any`, `read-write` and `primary` say what the
 * pool does anyway; asking for a standby on the pool itself would send writes there.
 * @throws ConfigError for the standby values (pointing at `pool.reader` / `routeReads`) and unknown ones.
 */
function checkSessionAttrs(value: unknown, field: string): void {
  if (value === undefined || value === 'any' || value === 'read-write' || value === 'primary') return
  if (value === 'read-only' || value === 'standby' || value === 'prefer-standby') {
    throw new ConfigError(field, value, "the pool's queries go to the verified primary; for replicas use pool.reader, or routeReads: 'auto'")
  }
  throw new ConfigError(field, value, "expected one of 'any', 'read-write', 'primary' (libpq's target_session_attrs)")
}
