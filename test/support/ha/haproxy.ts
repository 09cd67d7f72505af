/**
 * A throw-away HAProxy (Debian's haproxy 2.6) that routes one TCP frontend on a free 127.0.0.1
 * port to whichever backend passes an HTTP health check — the classic Patroni setup:
 * `option httpchk` + `GET /primary` against each member's REST API port, `http-check expect status
 * 200` (only the leader answers 200), `on-marked-down shutdown-sessions` (connections to a server
 * that fails its check are cut at once), short `inter`.
 *
 * Layout (`$TMPDIR/pgfp-haproxy-XXXXXX/`): haproxy.cfg, haproxy.log (health-check transitions are
 * logged), haproxy.sock (admin stats socket, used by {@link HAProxy.serverStates}).
 *
 * Behaviour worth knowing (observed with Patroni): HAProxy starts every server as "UP 1/2"
 * before its first check, so right after start (and until `fall` checks failed) it balances over
 * ALL backends, replicas included; during a switchover the new leader can be UP while the old one
 * is still "UP 1/2" for up to `fall` × `inter`. {@link HAProxy.waitForActive} waits until exactly
 * one server is UP.
 *
 * Killed (and the directory removed) on process exit, SIGINT and SIGTERM even if `destroy()` is
 * never called.
 */
import net from 'node:net'
import path from 'node:path'
import { writeServerFile } from '../pg-binaries.js'
import { SingleDaemonHarness } from './daemon.js'
import { ensureDebianPackages } from './packages.js'
import type { PatroniCluster } from './patroni.js'
import { freePort, makeServerTempDir, type PgConfig, probePort, waitFor } from './util.js'

/** One backend server of {@link HAProxyOptions}. */
export interface HAProxyBackend {
  /** Server name in haproxy.cfg (e.g. the Patroni member name). */
  name: string
  /** Where client connections go (PostgreSQL). */
  host: string
  port: number
  /** Port of the HTTP health check on `host` (e.g. the Patroni REST API). */
  checkPort: number
}

/** Options for {@link startHAProxy}. */
export interface HAProxyOptions {
  backends: HAProxyBackend[]
  /** Health-check path (default '/primary'; Patroni answers 200 there only on the leader). */
  checkPath?: string
  /** Check interval in ms (default 500). */
  interMs?: number
  /** Consecutive failed checks before a server is marked DOWN (default 2). */
  fall?: number
  /** Consecutive passed checks before a server is marked UP (default 1). */
  rise?: number
  /** Credentials for {@link HAProxy.config} (HAProxy itself is plain TCP). */
  credentials?: { user: string; password: string; database: string }
}

/** State of one backend as HAProxy sees it (from `show stat`). */
export interface HAProxyServerState {
  name: string
  /** 'UP', 'DOWN', 'UP 1/2', 'DOWN 1/2', 'MAINT', 'no check', ... */
  status: string
  /** Current sessions. */
  sessions: number
}

/** A running HAProxy created by {@link startHAProxy}. */
export interface HAProxy {
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** Frontend port (clients connect here). */
  readonly port: number
  /** Temp directory with haproxy.cfg, haproxy.log and the stats socket. */
  readonly dir: string
  /** Pid of the haproxy process, or null. */
  readonly pid: number | null
  /** `{ host, port, user, password, database }` through HAProxy (needs `credentials`). */
  config(): PgConfig
  /** Every backend's state from the admin socket (`show stat`). */
  serverStates(): Promise<HAProxyServerState[]>
  /** Wait until `name` is the only backend that is UP. */
  waitForActive(name: string, timeoutMs?: number): Promise<void>
  /** The last lines of the HAProxy log. */
  logTail(lines?: number): string
  /** Kill HAProxy and delete its temp directory. Idempotent. */
  destroy(): Promise<void>
}

class HAProxyImpl extends SingleDaemonHarness implements HAProxy {
  readonly host = '127.0.0.1' as const
  port = 0

  constructor(
    dir: string,
    private readonly options: HAProxyOptions,
  ) {
    // The options were checked by startHAProxy (validateOptions) before `dir` was made.
    super(dir)
  }

  get socket(): string {
    return path.join(this.dir, 'haproxy.sock')
  }

  config(): PgConfig {
    const c = this.options.credentials
    if (c === undefined) throw new Error('HAProxy.config(): no credentials were given to startHAProxy')
    return { host: this.host, port: this.port, ...c }
  }

  async start(): Promise<void> {
    await this.startDaemon({
      prepare: async () => {
        this.port = await freePort()
        const cfg = path.join(this.dir, 'haproxy.cfg')
        writeServerFile(cfg, this.renderConfig())
        return {
          name: 'haproxy',
          command: 'haproxy',
          args: ['-f', cfg, '-db'],
          logFile: path.join(this.dir, 'haproxy.log'),
          cwd: this.dir,
          env: { HOME: this.dir },
        }
      },
      what: () => `haproxy to listen on 127.0.0.1:${this.port}`,
      timeoutMs: 15_000,
      intervalMs: 20,
      ready: async () => (await probePort(this.port, 300)) === 'open' && (await this.serverStates()).length > 0,
      portTaken: /cannot bind|address already in use/i,
    })
  }

  private renderConfig(): string {
    const o = this.options
    const inter = o.interMs ?? 500
    return [
      'global',
      '  log stderr format raw local0 info',
      '  maxconn 1000',
      `  stats socket ${this.socket} mode 600 level admin`,
      '',
      'defaults',
      '  mode tcp',
      '  log global',
      '  option log-health-checks',
      '  retries 1',
      '  timeout connect 2s',
      '  timeout client 30m',
      '  timeout server 30m',
      `  timeout check ${Math.max(200, Math.min(1000, inter))}ms`,
      '',
      'listen postgres',
      `  bind 127.0.0.1:${this.port}`,
      '  option httpchk',
      `  http-check send meth GET uri ${o.checkPath ?? '/primary'}`,
      '  http-check expect status 200',
      `  default-server inter ${inter}ms fastinter ${inter}ms downinter ${inter}ms fall ${o.fall ?? 2} rise ${o.rise ?? 1} on-marked-down shutdown-sessions`,
      ...o.backends.map((b) => `  server ${b.name} ${b.host}:${b.port} check port ${b.checkPort}`),
      '',
    ].join('\n')
  }

  async serverStates(): Promise<HAProxyServerState[]> {
    const csv = await new Promise<string>((resolve, reject) => {
      const sock = net.connect(this.socket)
      let data = ''
      const timer = setTimeout(() => sock.destroy(new Error('haproxy stats socket: no answer within 2 s')), 2000)
      sock.setEncoding('utf8')
      sock.on('connect', () => sock.write('show stat\n'))
      sock.on('data', (d: string) => {
        data += d
      })
      sock.on('end', () => {
        clearTimeout(timer)
        resolve(data)
      })
      sock.on('error', (err) => {
        clearTimeout(timer)
        reject(err)
      })
    })
    const lines = csv.split('\n').filter((l) => l.trim() !== '')
    const header = (lines[0] ?? '').replace(/^#\s*/, '').split(',')
    const col = (name: string): number => header.indexOf(name)
    return lines
      .slice(1)
      .map((l) => l.split(','))
      .filter((f) => f[col('pxname')] === 'postgres' && !['FRONTEND', 'BACKEND'].includes(f[col('svname')] ?? ''))
      .map((f) => ({ name: f[col('svname')] ?? '', status: f[col('status')] ?? '', sessions: Number(f[col('scur')] ?? 0) }))
  }

  async waitForActive(name: string, timeoutMs = 30_000): Promise<void> {
    await waitFor(
      `haproxy to route to ${name} only`,
      timeoutMs,
      50,
      async () => {
        const states = await this.serverStates()
        const up = states.filter((s) => s.status === 'UP' || s.status.startsWith('UP '))
        return up.length === 1 && up[0]?.name === name
      },
      async () => `states: ${JSON.stringify(await this.serverStates().catch((e: Error) => e.message))}\n${this.logTail(10)}`,
    )
  }
}

/** At least one backend, each named as haproxy.cfg takes it unquoted. Throws before anything is created. */
function validateOptions(options: HAProxyOptions): void {
  if (options.backends.length === 0) throw new Error('startHAProxy: no backends')
  for (const b of options.backends) {
    if (!/^[A-Za-z0-9_.-]+$/.test(b.name)) throw new Error(`unsupported backend name ${JSON.stringify(b.name)}`)
  }
}

/** Start an HAProxy for `options.backends`; resolves when it listens and its stats socket answers. Installs `haproxy` if needed. */
export async function startHAProxy(options: HAProxyOptions): Promise<HAProxy> {
  validateOptions(options)
  await ensureDebianPackages(['haproxy'])
  const h = new HAProxyImpl(makeServerTempDir('pgfp-haproxy-'), options)
  try {
    await h.start()
  } catch (err) {
    await h.destroy()
    throw err
  }
  return h
}

/**
 * An HAProxy in front of a Patroni cluster: every member is a backend checked with
 * `GET /primary` on its REST port, so the frontend reaches the leader; credentials are the
 * cluster's superuser.
 */
export function startHAProxyForPatroni(
  cluster: PatroniCluster,
  options: Omit<HAProxyOptions, 'backends' | 'credentials'> = {},
): Promise<HAProxy> {
  return startHAProxy({
    ...options,
    backends: cluster.members.map((m) => ({ name: m.name, host: m.host, port: m.port, checkPort: m.restPort })),
    credentials: { user: 'postgres', password: cluster.password, database: 'postgres' },
  })
}
