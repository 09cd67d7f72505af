/**
 * A throw-away PgBouncer (Debian's pgbouncer 1.18) in front of one PostgreSQL address, listening
 * on a free 127.0.0.1 port, for tests of clients that sit behind a pooler.
 *
 * Layout (`$TMPDIR/pgfp-pgbouncer-XXXXXX/`): pgbouncer.ini, userlist.txt, pgbouncer.log.
 *
 * Authentication: the servers of these harnesses use scram-sha-256 (PostgreSQL 15's default).
 * PgBouncer can only log in to a SCRAM server with the user's PLAIN password in its auth_file
 * (checked: with an md5 hash there, client auth_type md5 succeeds but the server login fails
 * with "cannot do SCRAM authentication: wrong password type"; client auth_type scram-sha-256
 * fails earlier with "user has MD5 secret"), so userlist.txt holds the plain password, and
 * clients authenticate to PgBouncer with `authType` (default scram-sha-256; md5 and plain work
 * too with a plain auth_file entry). The same user is the PgBouncer admin (`admin_users`), so
 * {@link PgBouncer.admin} can run SHOW/RELOAD/KILL/RESUME on the `pgbouncer` console database.
 *
 * Killed (and the directory removed) on process exit, SIGINT and SIGTERM even if `destroy()` is
 * never called.
 */
import path from 'node:path'
import pg from 'pg'
import { writeServerFile } from '../pg-binaries.js'
import { sleep } from '../wait.js'
import { SingleDaemonHarness } from './daemon.js'
import { ensureDebianPackages } from './packages.js'
import { freePort, makeServerTempDir, type PgConfig, probePort } from './util.js'

/** Options for {@link startPgBouncer}. */
export interface PgBouncerOptions {
  /** The PostgreSQL server to pool connections to. */
  target: { host: string; port: number }
  /** User (and admin) known to PgBouncer, with its plain password (must exist on the server). */
  user: string
  password: string
  /** `pool_mode` (default 'session'). */
  poolMode?: 'session' | 'transaction' | 'statement'
  /** Client → PgBouncer `auth_type` (default 'scram-sha-256'). */
  authType?: 'scram-sha-256' | 'md5' | 'plain' | 'trust'
  /** Databases routed to the same-named database on the target (default ['postgres']); any other name goes there too via `*`. */
  databases?: string[]
  /** `server_login_retry` in seconds (default 1; PgBouncer's own default is 15). */
  serverLoginRetry?: number
  /** `query_wait_timeout` in seconds (default 10; PgBouncer's default 120; 0 disables). */
  queryWaitTimeout?: number
  /** `server_connect_timeout` in seconds (default 3; PgBouncer's default 15). */
  serverConnectTimeout?: number
  /** `default_pool_size` (default 10). */
  defaultPoolSize?: number
  /** `min_pool_size` (default 0). */
  minPoolSize?: number
  /** `reserve_pool_size` (default 0). */
  reservePoolSize?: number
  /** `max_client_conn` (default 200). */
  maxClientConn?: number
  /** `server_fast_close` (default false): after RELOAD/RECONNECT close session-mode servers at once. */
  serverFastClose?: boolean
  /** Extra `[pgbouncer]` settings (override everything above except listen_* and auth_file). */
  settings?: Record<string, string | number>
}

/** A running PgBouncer created by {@link startPgBouncer}. */
export interface PgBouncer {
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** Listen port. */
  readonly port: number
  /** Current target server. */
  readonly target: { host: string; port: number }
  /** Pool mode in use. */
  readonly poolMode: 'session' | 'transaction' | 'statement'
  /** `{ host, port, user, password, database }` to connect through PgBouncer (database defaults to the first configured one). */
  config(database?: string): PgConfig
  /** `postgres://user:password@127.0.0.1:<port>/<database>` */
  url(database?: string): string
  /** Temp directory with pgbouncer.ini, userlist.txt and pgbouncer.log. */
  readonly dir: string
  /** Pid of the pgbouncer process, or null. */
  readonly pid: number | null
  /**
   * Point every database at another server: rewrite pgbouncer.ini and RELOAD (servers are then
   * closed when released, i.e. at the end of the client session in session mode unless
   * serverFastClose, at the end of the transaction in transaction mode). With `kill: true` also
   * `KILL` + `RESUME` every database: all client and server connections are dropped at once.
   */
  retarget(host: string, port: number, opts?: { kill?: boolean }): Promise<void>
  /** Run one admin-console command (`SHOW POOLS`, `RELOAD`, `PAUSE db`, ...) and return its rows. */
  admin<T = Record<string, unknown>>(command: string): Promise<T[]>
  /** The last lines of the PgBouncer log. */
  logTail(lines?: number): string
  /** Kill PgBouncer and delete its temp directory. Idempotent. */
  destroy(): Promise<void>
}

class PgBouncerImpl extends SingleDaemonHarness implements PgBouncer {
  readonly host = '127.0.0.1' as const
  port = 0
  target: { host: string; port: number }
  readonly poolMode: 'session' | 'transaction' | 'statement'
  readonly databases: string[]

  constructor(
    dir: string,
    private readonly options: PgBouncerOptions,
  ) {
    // The options were checked by startPgBouncer (validateOptions) before `dir` was made.
    super(dir)
    this.target = { host: options.target.host, port: options.target.port }
    this.poolMode = options.poolMode ?? 'session'
    this.databases = options.databases ?? ['postgres']
  }

  config(database = this.databases[0] ?? 'postgres'): PgConfig {
    return { host: this.host, port: this.port, user: this.options.user, password: this.options.password, database }
  }

  url(database = this.databases[0] ?? 'postgres'): string {
    return `postgres://${encodeURIComponent(this.options.user)}:${encodeURIComponent(this.options.password)}@127.0.0.1:${this.port}/${database}`
  }

  async start(): Promise<void> {
    const userlist = path.join(this.dir, 'userlist.txt')
    writeServerFile(userlist, `"${this.options.user}" "${this.options.password.replace(/"/g, '""')}"\n`)
    await this.startDaemon({
      prepare: async () => {
        this.port = await freePort()
        this.writeIni()
        return {
          name: 'pgbouncer',
          command: 'pgbouncer',
          args: [path.join(this.dir, 'pgbouncer.ini')],
          logFile: path.join(this.dir, 'pgbouncer.log'),
          cwd: this.dir,
          env: { HOME: this.dir },
        }
      },
      what: () => `pgbouncer to listen on 127.0.0.1:${this.port} and answer SHOW VERSION on its admin console`,
      timeoutMs: 15_000,
      intervalMs: 20,
      // An open port alone could be another process that took it before pgbouncer's bind (which
      // then fails): only our pgbouncer, with our credentials, answers on its admin console.
      ready: async () => (await probePort(this.port, 300)) === 'open' && (await this.admin('SHOW VERSION')).length > 0,
      portTaken: /address already in use/i,
    })
  }

  async retarget(host: string, port: number, opts: { kill?: boolean } = {}): Promise<void> {
    this.target = { host, port }
    this.writeIni()
    await this.admin('RELOAD')
    if (opts.kill === true) {
      for (const db of this.databases) {
        await this.admin(`KILL ${db}`)
        await this.admin(`RESUME ${db}`)
      }
    }
  }

  async admin<T = Record<string, unknown>>(command: string): Promise<T[]> {
    const client = new pg.Client({ ...this.config('pgbouncer'), connectionTimeoutMillis: 3000 })
    client.on('error', () => undefined)
    try {
      await client.connect()
      const res = await client.query(command) // simple protocol: the console has no extended protocol
      return (res.rows ?? []) as T[]
    } finally {
      await Promise.race([client.end().catch(() => undefined), sleep(1000)])
    }
  }

  private writeIni(): void {
    const o = this.options
    const conn = `host=${this.target.host} port=${this.target.port}`
    const settings: Record<string, string | number> = {
      pool_mode: this.poolMode,
      auth_type: o.authType ?? 'scram-sha-256',
      admin_users: o.user,
      server_login_retry: o.serverLoginRetry ?? 1,
      query_wait_timeout: o.queryWaitTimeout ?? 10,
      server_connect_timeout: o.serverConnectTimeout ?? 3,
      default_pool_size: o.defaultPoolSize ?? 10,
      min_pool_size: o.minPoolSize ?? 0,
      reserve_pool_size: o.reservePoolSize ?? 0,
      max_client_conn: o.maxClientConn ?? 200,
      server_fast_close: o.serverFastClose === true ? 1 : 0,
      ignore_startup_parameters: 'extra_float_digits,options',
      server_reset_query: 'DISCARD ALL',
      log_connections: 1,
      log_disconnections: 1,
      stats_period: 60,
      ...o.settings,
      listen_addr: '127.0.0.1',
      listen_port: this.port,
      unix_socket_dir: '',
      auth_file: path.join(this.dir, 'userlist.txt'),
      pidfile: path.join(this.dir, 'pgbouncer.pid'),
    }
    const ini = [
      '[databases]',
      ...this.databases.map((d) => `${d} = ${conn} dbname=${d}`),
      `* = ${conn}`,
      '',
      '[pgbouncer]',
      ...Object.entries(settings).map(([k, v]) => `${k} = ${String(v)}`),
      '',
    ].join('\n')
    const file = path.join(this.dir, 'pgbouncer.ini')
    writeServerFile(file, ini)
  }
}

/** Names go into pgbouncer.ini and admin commands unquoted: only plain identifiers. Throws before anything is created. */
function validateOptions(options: PgBouncerOptions): void {
  if (!/^[A-Za-z0-9_]+$/.test(options.user)) throw new Error(`unsupported user name ${JSON.stringify(options.user)}`)
  for (const d of options.databases ?? ['postgres']) {
    if (!/^[A-Za-z0-9_]+$/.test(d)) throw new Error(`unsupported database name ${JSON.stringify(d)}`)
  }
}

/**
 * Start a PgBouncer in front of `options.target` on a free 127.0.0.1 port; resolves when it
 * listens and answers on its admin console (the target need not be up). Installs `pgbouncer` if needed.
 */
export async function startPgBouncer(options: PgBouncerOptions): Promise<PgBouncer> {
  validateOptions(options)
  await ensureDebianPackages(['pgbouncer'])
  const b = new PgBouncerImpl(makeServerTempDir('pgfp-pgbouncer-'), options)
  try {
    await b.start()
  } catch (err) {
    await b.destroy()
    throw err
  }
  return b
}
