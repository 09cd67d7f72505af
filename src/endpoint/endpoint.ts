import pg from 'pg'
import type { ClientConfig, PoolConfig, PoolOptions } from 'pg'
import { type BreakerSettings, CircuitBreaker } from './breaker.js'
import { type Clock, randomOf, withDeadline } from '../clock.js'
import type { ResolvedEndpoint } from './endpoint-config.js'
import { hidePassword } from './endpoint-config.js'
import { Lane, type LaneEvents, destroySocket } from './lane.js'
import { parseLsn } from './lsn.js'
import { type NodeAddress, nodeAddressOf, pointClientAt } from './point-client.js'
import { type ProbeResult, probeRole } from './role-probe.js'
import { asError } from '../errors.js'

/** Which lane of an endpoint: writes (the primary's traffic) or reads (pool.reader's). */
export type LaneKind = 'write' | 'read'

/** Builds the receiver of one lane's pg.Pool events. */
export type LaneEventsFactory = (endpoint: Endpoint, lane: LaneKind) => LaneEvents

/** Per-endpoint routing settings. */
export interface EndpointRouting {
  /** Relative share of reads among replicas (default 1). */
  readonly weight: number
}

/**
 * One PostgreSQL node: a write lane and a read lane (each its own pg.Pool with every pg.Pool option
 * the user gave), a dedicated monitor session for role probes, and what the last probe found. It
 * reports; it never decides topology (the coordinator does).
 */
export class Endpoint {
  readonly name: string
  readonly host: string
  readonly port: number
  readonly weight: number
  /** Last successful probe, or null before the first one. */
  lastProbe: ProbeResult | null = null
  /** When the last probe finished (clock ms), successful or not. */
  lastProbeAt: number | null = null
  /** Wall-clock time (Date.now()) of the last probe, for status(). */
  lastProbeWallTime: number | null = null
  /** Statements this endpoint ran for the pool, and how many failed (any error), since start. */
  readonly counters = { writes: 0, reads: 0, errors: 0 }
  /**
   * How many times the pool has left this node (cut it). A statement that began before the count
   * changed and then succeeded ran on a node the pool no longer writes to: its write may be lost.
   */
  leaves = 0
  /** Highest WAL position this node is known to have replayed (probes and read-your-writes checks). */
  knownReplayLsn: bigint | null = null

  readonly write: Lane
  readonly read: Lane
  /** Clients the pool connected here for a library that pools by itself (connectClient): cut with the lanes. */
  readonly external: Set<pg.ClientBase> = new Set()
  /** Counts this endpoint's failures; while open, no user traffic reaches it. */
  readonly breaker: CircuitBreaker
  private readonly clientConfig: PoolConfig
  /** Where a client attached here (connectClient) connects, and with which credentials and TLS. */
  private readonly address: NodeAddress
  private monitor: pg.Client | null = null
  private monitorConnecting: Promise<pg.Client> | null = null

  constructor(
    resolved: ResolvedEndpoint,
    sharedConfig: PoolConfig,
    events: LaneEventsFactory,
    private readonly clock: Clock,
    breaker: BreakerSettings,
  ) {
    this.breaker = new CircuitBreaker(breaker, clock, randomOf(clock))
    this.name = resolved.name
    this.host = resolved.host
    this.port = resolved.port
    this.weight = resolved.weight
    // TCP keepalive on every connection (unless the user said otherwise): a host that vanished
    // without closing its sockets is then noticed by the kernel, not only by our probes.
    this.clientConfig = { keepAlive: true, keepAliveInitialDelayMillis: 10_000, ...sharedConfig, ...resolved.config }
    const password = 'password' in resolved.config ? resolved.config.password : sharedConfig.password
    if (password !== undefined) hidePassword(this.clientConfig, password)
    this.address = nodeAddressOf(this.host, this.port, this.clientConfig)
    this.write = new Lane(this.name, this.clientConfig, events(this, 'write'))
    this.read = new Lane(this.name, this.clientConfig, events(this, 'read'))
  }

  /** The write lane's pg.Pool options (what pg.Pool#options would show for this node). */
  get options(): PoolOptions {
    return this.write.options
  }

  /** The lane of the given kind. */
  lane(kind: LaneKind): Lane {
    return kind === 'write' ? this.write : this.read
  }

  /**
   * The node failed or changed role: retire both lanes (see {@link Lane.retire}). With `cut`,
   * everything still running there is cut: the pool has left the node. The monitor session stays:
   * probes go on judging the node (a dead session is replaced by the next probe).
   *
   * `answerGraceMs` (ms, default 0: everything is cut at once) lets a running `pool.query` statement
   * answer first, for a node that said it takes no writes: its answer is then an error that proves
   * the statement did nothing (25006, retried on the new primary), where a cut would leave its
   * outcome unknown. A request reports a success from a node left meanwhile as outcome-unknown
   * (see {@link leaves}), so the grace never acknowledges a write; what still runs when it ends is cut.
   */
  retire(cut = false, answerGraceMs = 0): void {
    if (cut) this.leaves++
    const spare = cut && answerGraceMs > 0
    const running = [...this.write.retire(cut, spare), ...this.read.retire(cut, spare)]
    if (cut) for (const client of this.external) destroySocket(client)
    // A client that answered in time went back into its ended pool and closed: destroying it again is a no-op.
    if (running.length > 0) this.clock.setTimeout(() => running.forEach(destroySocket), answerGraceMs)
  }

  /**
   * Points `client` (made elsewhere, not connected yet) at this node with this endpoint's address,
   * credentials and TLS settings (see {@link pointClientAt}), connects it, and keeps it in
   * {@link external} until it ends, so that leaving the node cuts it. A failed connect leaves no
   * listener behind (a caller may connect the same client again).
   */
  async attach(client: pg.Client, onError: (err: Error) => void = () => undefined): Promise<void> {
    pointClientAt(client, this.address)
    this.external.add(client)
    let reported = false
    const failed = (err: Error): void => {
      if (reported) return
      reported = true
      onError(err)
    }
    const ended = (): void => {
      this.external.delete(client)
      client.removeListener('error', failed)
    }
    client.on('error', failed)
    client.once('end', ended)
    try {
      await client.connect()
    } catch (err) {
      client.removeListener('end', ended)
      ended()
      throw err
    }
  }

  /**
   * One role probe on the dedicated monitor session, bounded by `timeoutMs` (connect included).
   * On failure the session is closed so the next probe reconnects. It records the result, not the
   * error: what a failure means (down, misconfigured) is the coordinator's call.
   */
  async probe(timeoutMs: number): Promise<ProbeResult> {
    const timedOut = (): Error => Object.assign(new Error(`role probe of ${this.name} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })
    try {
      const result = await withDeadline(this.monitorClient().then((c) => probeRole(c, () => this.clock.now())), timeoutMs, timedOut, this.clock)
      this.lastProbe = result
      if (result.inRecovery && result.lsn !== null) this.noteReplayed(parseLsn(result.lsn))
      return result
    } catch (err) {
      this.closeMonitor()
      throw asError(err)
    } finally {
      this.lastProbeAt = this.clock.now()
      this.lastProbeWallTime = Date.now()
    }
  }

  /** Records that this node has replayed WAL up to `lsn` (monotonic). */
  noteReplayed(lsn: bigint): void {
    if (this.knownReplayLsn === null || lsn > this.knownReplayLsn) this.knownReplayLsn = lsn
  }

  /**
   * A standalone client with this endpoint's settings, not counted in the pool (for monitoring). It
   * is made with the `Client` option when one was given (an instrumented or custom class sees the
   * pool's own sessions too), as pg-pool makes its clients.
   */
  createClient(overrides: ClientConfig = {}): pg.Client {
    const config: ClientConfig = { ...this.clientConfig, keepAlive: true, ...overrides }
    if (this.clientConfig.password !== undefined) hidePassword(config, this.clientConfig.password)
    const ClientClass = (this.clientConfig as { Client?: typeof pg.Client }).Client ?? pg.Client
    const client = new ClientClass(config)
    // A monitor session's error is handled where it is used; without a listener it would crash the process.
    client.on('error', () => undefined)
    return client
  }

  /** Closes both lanes (waiting for checked-out clients, as pg.Pool#end does) and the monitor session. */
  async end(): Promise<void> {
    this.closeMonitor()
    await Promise.all([this.write.end(), this.read.end()])
  }

  private monitorClient(): Promise<pg.Client> {
    if (this.monitor) return Promise.resolve(this.monitor)
    if (this.monitorConnecting) return this.monitorConnecting
    const client = this.createClient({ application_name: monitorApplicationName(this.clientConfig) })
    this.monitorConnecting = client.connect().then(
      () => {
        this.monitorConnecting = null
        this.monitor = client
        unrefClient(client)
        client.once('end', () => {
          if (this.monitor === client) this.monitor = null
        })
        return client
      },
      (err: unknown) => {
        this.monitorConnecting = null
        client.end().catch(() => undefined)
        throw err
      },
    )
    return this.monitorConnecting
  }

  private closeMonitor(): void {
    const pending = this.monitorConnecting
    this.monitorConnecting = null
    pending?.then((c) => destroyClient(c), () => undefined)
    if (this.monitor) destroyClient(this.monitor)
    this.monitor = null
  }
}

/**
 * Lets the process exit while this client's socket is open: background sessions (probes, watches)
 * must never keep an application alive on their own; user requests keep it alive instead.
 */
export function unrefClient(client: pg.Client): void {
  ;(client as unknown as { unref?: () => void }).unref?.()
}

/** Ends a client without waiting for the server (which may be frozen or gone). */
export function destroyClient(client: pg.Client): void {
  client.end().catch(() => undefined)
  destroySocket(client)
}

function monitorApplicationName(config: ClientConfig): string {
  const base = config.application_name ?? 'pg-failover-pool'
  return `${base} monitor`.slice(0, 63)
}
