/**
 * A throw-away single-node etcd 3.4 (Debian's etcd-server) for the Patroni harness.
 *
 * Listens on 127.0.0.1 only, on free client and peer ports, with its data directory and log in a
 * temp directory (`$TMPDIR/pgfp-etcd-XXXXXX`), runs as the postgres OS user when we are root, and
 * is killed (and the directory removed) on process exit, SIGINT and SIGTERM even if `destroy()`
 * is never called.
 */
import { rmSync } from 'node:fs'
import path from 'node:path'
import { SingleDaemonHarness } from './daemon.js'
import { ensureDebianPackages } from './packages.js'
import { freePort, httpRequest, makeServerTempDir } from './util.js'

/** Options for {@link startEtcd}. */
export interface EtcdOptions {
  /** Member name (default 'etcd0'). */
  name?: string
  /** Milliseconds to wait for /health to report healthy (default 30 000). */
  startTimeoutMs?: number
}

/** A running etcd created by {@link startEtcd}. */
export interface Etcd {
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** Client port (gRPC and the v3 JSON gateway). */
  readonly clientPort: number
  /** Peer port. */
  readonly peerPort: number
  /** `http://127.0.0.1:<clientPort>` */
  readonly clientUrl: string
  /** `127.0.0.1:<clientPort>`, as Patroni's `etcd3.host` takes it. */
  readonly hostPort: string
  /** Temp directory holding `data/` and `etcd.log` (removed by destroy()). */
  readonly dir: string
  /** Pid of the etcd process, or null once it is gone. */
  readonly pid: number | null
  /** The last lines of the etcd log. */
  logTail(lines?: number): string
  /** Kill etcd and delete its temp directory. Idempotent. */
  destroy(): Promise<void>
}

class EtcdImpl extends SingleDaemonHarness implements Etcd {
  readonly host = '127.0.0.1' as const
  clientPort = 0
  peerPort = 0

  constructor(
    readonly name: string,
    dir: string,
  ) {
    super(dir)
  }

  get clientUrl(): string {
    return `http://127.0.0.1:${this.clientPort}`
  }

  get hostPort(): string {
    return `127.0.0.1:${this.clientPort}`
  }

  async start(timeoutMs: number): Promise<void> {
    // Ports are picked free but may be taken by another process before etcd binds: startDaemon retries.
    await this.startDaemon({
      prepare: async () => {
        this.clientPort = await freePort()
        this.peerPort = await freePort()
        const peerUrl = `http://127.0.0.1:${this.peerPort}`
        rmSync(path.join(this.dir, 'data'), { recursive: true, force: true })
        return {
          name: `etcd ${this.name}`,
          command: 'etcd',
          args: [
            `--name=${this.name}`,
            `--data-dir=${path.join(this.dir, 'data')}`,
            `--listen-client-urls=${this.clientUrl}`,
            `--advertise-client-urls=${this.clientUrl}`,
            `--listen-peer-urls=${peerUrl}`,
            `--initial-advertise-peer-urls=${peerUrl}`,
            `--initial-cluster=${this.name}=${peerUrl}`,
            '--initial-cluster-state=new',
            `--initial-cluster-token=pgfp-${path.basename(this.dir)}`,
            '--logger=zap',
            '--log-level=warn',
            '--snapshot-count=10000',
          ],
          logFile: path.join(this.dir, 'etcd.log'),
          cwd: this.dir,
          env: { HOME: this.dir, ETCD_UNSUPPORTED_ARCH: undefined },
        }
      },
      what: () => `etcd ${this.name} on ${this.clientUrl} to be healthy`,
      timeoutMs,
      intervalMs: 50,
      ready: async () => {
        const r = await httpRequest('GET', `${this.clientUrl}/health`, undefined, 1000)
        return r.status === 200 && (JSON.parse(r.body) as { health?: string }).health === 'true'
      },
      portTaken: /address already in use/i,
    })
  }
}

/**
 * Start a single-node etcd 3.4 on free 127.0.0.1 ports and wait until `/health` says healthy.
 * Installs `etcd-server` first if needed (see packages.ts).
 */
export async function startEtcd(options: EtcdOptions = {}): Promise<Etcd> {
  await ensureDebianPackages(['etcd-server'])
  const etcd = new EtcdImpl(options.name ?? 'etcd0', makeServerTempDir('pgfp-etcd-'))
  try {
    await etcd.start(options.startTimeoutMs ?? 30_000)
  } catch (err) {
    await etcd.destroy()
    throw err
  }
  return etcd
}
