/**
 * `pg-failover-pool/typeorm`: TypeORM's postgres `driver` option built on a FailoverPool. TypeORM
 * makes each pool itself (`new driver.Pool(options)`, from its own options); this driver turns that
 * into a FailoverPool — and with `replication`, into one FailoverPool for the master and a reader
 * view of it for each slave.
 */
import pg from 'pg'
import { resolveEndpoints, splitMultiHostUrl } from '../endpoint/endpoint-config.js'
import { FailoverPool } from '../failover-pool.js'
import type { FailoverPoolOptions } from '../options.js'

/** One server as TypeORM's options give it (`url`, or `host`/`port` with credentials). */
export interface TypeormCredentials {
  readonly url?: string
  readonly host?: string
  readonly port?: number
  readonly username?: string
  readonly password?: string | (() => string | Promise<string>)
  readonly database?: string
}

/** The parts of TypeORM's postgres DataSource options this driver reads. */
export interface TypeormPostgresOptions extends TypeormCredentials {
  readonly type: 'postgres'
  readonly replication?: { readonly master: TypeormCredentials; readonly slaves: readonly TypeormCredentials[] }
}

/** What TypeORM's `driver` option takes for postgres: a module with a `Pool` constructor and pg's `defaults`. */
export interface TypeormPgDriver {
  /** Called by TypeORM as `new Pool(options)`; returns a FailoverPool (or a reader view of it). */
  readonly Pool: new (options: Record<string, unknown>) => pg.Pool
  /** pg's own defaults (TypeORM sets `parseInt8` there). */
  readonly defaults: typeof pg.defaults
}

/**
 * A driver for a TypeORM DataSource without `replication`: each pool TypeORM makes is a
 * FailoverPool from TypeORM's own options (a libpq multi-host `url` such as
 * `postgres://u:p@db1:5432,db2:5432/app` lists the endpoints) with `poolOptions` over them.
 */
export function failoverDriver(poolOptions: Partial<FailoverPoolOptions> = {}): TypeormPgDriver {
  const Pool = function (this: unknown, options: Record<string, unknown>): pg.Pool {
    return new FailoverPool({ ...options, ...poolOptions } as FailoverPoolOptions)
  } as unknown as TypeormPgDriver['Pool']
  return { Pool, defaults: pg.defaults }
}

/**
 * TypeORM's postgres options with a failover `driver` added. Without `replication` it is
 * {@link failoverDriver}. With `replication: { master, slaves }`, every server listed (master and
 * slaves) is an endpoint of one FailoverPool, which TypeORM gets for the master — writes go to the
 * verified primary, wherever the master role is now — and each slave gets its own reader view
 * (replicas by `readStrategy`; TypeORM ends each slave's pool, so each is ended separately).
 * `poolOptions` (e.g. `haManager`, `failoverTimeoutMs`) apply to the pool.
 *
 * @example new DataSource(withFailover({ type: 'postgres', url: 'postgres://app:pw@db1,db2/app', entities }))
 */
export function withFailover<T extends TypeormPostgresOptions>(options: T, poolOptions: Partial<FailoverPoolOptions> = {}): T & { driver: TypeormPgDriver } {
  const replication = options.replication
  if (!replication) return { ...options, driver: failoverDriver(poolOptions) }
  const servers = [replication.master, ...replication.slaves]
  let shared: FailoverPool | null = null
  const Pool = function (this: unknown, connectionOptions: Record<string, unknown>): pg.Pool {
    const pool = (shared ??= new FailoverPool({ ...withoutAddress(connectionOptions), endpoints: endpointsOf(servers), ...poolOptions } as FailoverPoolOptions))
    return sameServer(connectionOptions, replication.master) ? pool : pool.readerView()
  } as unknown as TypeormPgDriver['Pool']
  return { ...options, driver: { Pool, defaults: pg.defaults } }
}

/** TypeORM's pool options without the server they name (the endpoints say that). */
function withoutAddress(options: Record<string, unknown>): Record<string, unknown> {
  const { connectionString: _c, host: _h, port: _p, user: _u, password: _pw, database: _d, ...rest } = options
  return rest
}

/**
 * Every distinct server of the replication config, as endpoints: a multi-host url stands for
 * several, and a server named twice (a master also listed as a slave, say) is one endpoint. Servers
 * are compared as the pool itself resolves them (defaults, PGHOST/PGPORT, IPv6 included).
 */
function endpointsOf(servers: readonly TypeormCredentials[]): Array<string | Record<string, unknown>> {
  const seen = new Set<string>()
  const endpoints: Array<string | Record<string, unknown>> = []
  servers.forEach((s, i) => {
    const field = i === 0 ? 'replication.master' : `replication.slaves[${i - 1}]`
    const inputs = s.url !== undefined ? splitMultiHostUrl(s.url, `${field}.url`) : [dropUndefined({ host: s.host, port: s.port, user: s.username, password: s.password, database: s.database })]
    for (const input of inputs) {
      const [server] = resolveEndpoints([input], {}, field)
      const key = `${server!.host}:${server!.port}`
      if (seen.has(key)) continue
      seen.add(key)
      endpoints.push(input)
    }
  })
  return endpoints
}

function sameServer(options: Record<string, unknown>, server: TypeormCredentials): boolean {
  if (server.url !== undefined) return options.connectionString === server.url
  return options.host === server.host && (options.port ?? 5432) === (server.port ?? 5432)
}

function dropUndefined(o: Record<string, unknown>): Record<string, unknown> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined))
}
