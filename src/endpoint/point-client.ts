import pg from 'pg'
import type { ClientConfig } from 'pg'
import { parse as parseConnectionString } from 'pg-connection-string'
import { hidePassword } from './endpoint-config.js'

/**
 * Where a client made elsewhere connects once attached to an endpoint (`connectClient`): the
 * node's address (always), and the credentials, database and TLS settings the pool was given for
 * it — in its config object or its connection string — where it was given them.
 */
export interface NodeAddress {
  readonly host: string
  readonly port: number
  readonly user: string | undefined
  readonly database: string | undefined
  /** Non-enumerable where set (see {@link nodeAddressOf}). */
  readonly password?: ClientConfig['password']
  /** As pg accepts it (`true`, an options object, `'no-verify'`), or undefined: the client's own. */
  readonly ssl: unknown
}

/**
 * The {@link NodeAddress} of the node at `host`:`port` whose pool uses `config`. A connection
 * string in `config` wins over the object's own fields, as it does in pg; fields the pool was not
 * given stay undefined, so the client keeps its own (a Sequelize database name, say).
 */
export function nodeAddressOf(host: string, port: number, config: ClientConfig): NodeAddress {
  const parsed = typeof config.connectionString === 'string' ? parseConnectionString(config.connectionString) : {}
  const pick = <K extends 'user' | 'database' | 'ssl' | 'password'>(key: K): unknown => {
    const fromString = (parsed as Record<string, unknown>)[key]
    return fromString !== undefined && fromString !== null ? fromString : (config as Record<string, unknown>)[key]
  }
  const address = { host, port, user: pick('user') as string | undefined, database: pick('database') as string | undefined, ssl: pick('ssl') }
  const password = pick('password')
  // Kept out of enumeration, as pg-pool keeps it, so logging the address cannot leak it.
  return password !== undefined ? hidePassword(address, password) : address
}

interface ClientFields {
  host: string
  port: number
  user: string
  database: string
  ssl: unknown
  sslNegotiation: unknown
  connection: pg.Connection
  connectionParameters: Record<string, unknown>
}

/**
 * Points `client` (a pg.Client made elsewhere, not connected yet) at `address`. pg fixes TLS when
 * it builds a client's protocol connection, so setting fields afterwards would not apply it: the
 * client gets a fresh connection with the node's TLS settings (or its own where the pool has none)
 * and its own TCP keepalive and encoding, and the listeners already on its old connection (a
 * library's `parameterStatus`, say) move to the new one. Everything else about the session
 * (application_name, timeouts) stays the client's.
 */
export function pointClientAt(client: pg.Client, address: NodeAddress): void {
  const fields = client as unknown as ClientFields
  const params = fields.connectionParameters
  fields.host = params.host = address.host as never
  fields.port = params.port = address.port as never
  if (address.user !== undefined) fields.user = params.user = address.user as never
  if (address.database !== undefined) fields.database = params.database = address.database as never
  if (address.password !== undefined) hidePassword(fields, address.password)
  const old = fields.connection as pg.Connection & { _keepAlive?: boolean; _keepAliveInitialDelayMillis?: number }
  // pg resolves the TLS settings ('no-verify', sslmode, a key kept out of enumeration) and builds the connection.
  const template = new pg.Client({
    ssl: (address.ssl !== undefined ? address.ssl : params.ssl) as ClientConfig['ssl'],
    keepAlive: old._keepAlive ?? false,
    keepAliveInitialDelayMillis: old._keepAliveInitialDelayMillis ?? 0,
    client_encoding: params.client_encoding as string | undefined,
  }) as unknown as ClientFields
  fields.ssl = template.ssl
  fields.sslNegotiation = template.sslNegotiation
  params.ssl = template.connectionParameters.ssl
  const fresh = template.connection
  for (const event of old.eventNames()) {
    // pg's own 'newListener' watcher is made by every connection.
    if (event === 'newListener') continue
    for (const listener of old.listeners(event)) fresh.on(event, listener as (...args: unknown[]) => void)
  }
  old.removeAllListeners()
  fields.connection = fresh
}
