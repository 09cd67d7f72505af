import { type ChildProcess, spawn } from 'node:child_process'
import { ensureDebianPackages } from './ha/packages.js'
import { freePort } from './ports.js'
import { sleep } from './wait.js'

/** One SRV record: `name` answered with `target:port` (priority and weight as in RFC 2782). */
export interface SrvRecord {
  readonly name: string
  readonly target: string
  readonly port: number
  readonly priority?: number
  readonly weight?: number
}

/**
 * A real DNS server on loopback (Debian's dnsmasq) answering the SRV records it is given and
 * nothing else (no upstream, no /etc/hosts). `setRecords` restarts it on the same port with new
 * records: dnsmasq reads SRV records only at start.
 */
export class DnsServer {
  #child: ChildProcess | null = null
  #records: readonly SrvRecord[] = []

  private constructor(readonly port: number) {}

  /** The address to give `dnsSrv(..., { servers })`. */
  get address(): string {
    return `127.0.0.1:${this.port}`
  }

  static async start(records: readonly SrvRecord[]): Promise<DnsServer> {
    await ensureDebianPackages(['dnsmasq-base'])
    const server = new DnsServer(await freePort())
    await server.setRecords(records)
    return server
  }

  /** Serves `records` from now on (a restart, as a DNS change reaching the server would). */
  async setRecords(records: readonly SrvRecord[]): Promise<void> {
    await this.stop()
    this.#records = records
    const args = [
      '--keep-in-foreground',
      '--conf-file=/dev/null',
      '--no-resolv',
      '--no-hosts',
      '--bind-interfaces',
      '--listen-address=127.0.0.1',
      `--port=${this.port}`,
      '--pid-file=',
      '--user=nobody',
      '--log-facility=-',
      ...records.map((r) => `--srv-host=${r.name},${r.target},${r.port},${r.priority ?? 0},${r.weight ?? 0}`),
    ]
    const child = spawn('dnsmasq', args, { stdio: ['ignore', 'ignore', 'pipe'] })
    let stderr = ''
    child.stderr!.on('data', (c: Buffer) => (stderr += c.toString()))
    this.#child = child
    // Up once it answers: a lookup of anything gets a reply (NXDOMAIN) rather than a timeout.
    const { promises: dns } = await import('node:dns')
    const deadline = Date.now() + 10_000
    for (;;) {
      if (child.exitCode !== null) throw new Error(`dnsmasq exited with ${child.exitCode}: ${stderr}`)
      const resolver = new dns.Resolver({ timeout: 200, tries: 1 })
      resolver.setServers([this.address])
      const answered = await resolver.resolveSrv('_probe._tcp.pgfp.test').then(
        () => true,
        (err: NodeJS.ErrnoException) => err.code !== 'ETIMEOUT' && err.code !== 'ECONNREFUSED',
      )
      if (answered) return
      if (Date.now() > deadline) throw new Error(`dnsmasq on ${this.address} did not answer within 10 s: ${stderr}`)
      await sleep(50)
    }
  }

  /** The records served now. */
  get records(): readonly SrvRecord[] {
    return this.#records
  }

  async stop(): Promise<void> {
    const child = this.#child
    this.#child = null
    if (child === null || child.exitCode !== null) return
    const exited = new Promise((resolve) => child.once('exit', resolve))
    child.kill('SIGTERM')
    await Promise.race([exited, sleep(5_000)])
    if (child.exitCode === null) child.kill('SIGKILL')
  }
}
