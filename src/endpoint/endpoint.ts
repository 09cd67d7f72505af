import pg from 'pg'
import type { ClientConfig, PoolConfig, PoolOptions } from 'pg'
import { type Clock, type TimerHandle } from '../clock.js'
import { asError } from '../errors.js'
import { acquireMonitor, releaseMonitor } from '../health/monitor-registry.js'
import { NodeMonitor, type WatchSettings } from '../health/node-monitor.js'
import { cutClient } from './client-cut.js'
import { connectClient } from './client-connect.js'
import type { ResolvedEndpoint } from './endpoint-config.js'
import { hidePassword } from './endpoint-config.js'
import { Lane, type LaneEvents } from './lane.js'
import { parseLsn } from './lsn.js'
import { type NodeAddress, nodeAddressOf, pointClientAt } from './point-client.js'
import type { ProbeResult } from './role-probe.js'

/** Watch settings when the pool gives none (its options' defaults). */
const DEFAULT_WATCH: WatchSettings = { windowMs: 1_000, checkMs: 5, retryMs: 1_000 }

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
 * reports and obeys; it never decides topology (the coordinator does, and keeps the node's health).
 */
export class Endpoint {
  /** What the endpoint was made from (a membership change keeps an endpoint whose definition is unchanged). */
  readonly definition: ResolvedEndpoint
  readonly name: string
  readonly host: string
  readonly port: number
  readonly weight: number
  /** Last successful probe, or null before the first one. */
  lastProbe: ProbeResult | null = null
  /** When the last probe finished (clock ms), successful or not. */
  lastProbeAt: number | null = null
  /** Clock ms of the last probe that answered (null before one did). */
  lastAnsweredAt: number | null = null
  /** Wall-clock time (Date.now()) of the last probe, for status(). */
  lastProbeWallTime: number | null = null
  /** Statements this endpoint ran for the pool, and how many failed (any error), since start. */
  readonly counters = { writes: 0, reads: 0, errors: 0 }
  /** Highest WAL position this node is known to have replayed (probes and read-your-writes checks). */
  knownReplayLsn: bigint | null = null
  /** Clock ms since which this standby's probes have found no WAL receiver streaming (null: streaming, or not a standby). */
  detachedSince: number | null = null

  readonly write: Lane
  readonly read: Lane
  /** Clients the pool connected here for a library that pools by itself (connectClient): cut with the lanes. */
  readonly external: Set<pg.ClientBase> = new Set()
  private readonly clientConfig: PoolConfig
  /** Where a client attached here (connectClient) connects, and with which credentials and TLS. */
  private readonly address: NodeAddress
  /** This node's monitor for the whole process: one session for probes and the promotion watch, shared with other pools. */
  readonly monitor: NodeMonitor
  /** Cuts waiting for a leave's answer grace to end (cleared by end()). */
  private readonly graceTimers = new Set<TimerHandle>()

  constructor(
    resolved: ResolvedEndpoint,
    sharedConfig: PoolConfig,
    events: LaneEventsFactory,
    private readonly clock: Clock,
    /** How this node's promotion is watched (see {@link NodeMonitor}). */
    watch: WatchSettings = DEFAULT_WATCH,
  ) {
    this.definition = resolved
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
    const monitorConfig: ClientConfig = { application_name: monitorApplicationName(this.clientConfig), connectionTimeoutMillis: 0, statement_timeout: 0, query_timeout: undefined }
    this.monitor = acquireMonitor({ host: this.host, port: this.port, config: this.clientConfig, clock, watch }, () => new NodeMonitor(this.name, () => this.createClient(monitorConfig), clock, watch))
    this.#releaseHold = this.monitor.hold()
  }

  #releaseHold: (() => void) | null

  /**
   * Whether this pool keeps the node's monitor session open between probes: yes by default; a
   * follower of a fleet's shared monitor does not (see health/fleet-monitor.ts).
   */
  holdMonitorSession(hold: boolean): void {
    if (hold && this.#releaseHold === null) this.#releaseHold = this.monitor.hold()
    else if (!hold && this.#releaseHold !== null) {
      this.#releaseHold()
      this.#releaseHold = null
    }
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
   * Fresh pools on both lanes: idle connections close now, checked-out ones when released, waiting
   * checkouts go elsewhere. Nothing running is cut (the node was not left).
   */
  refreshPools(): void {
    this.write.refresh()
    this.read.refresh()
  }

  /**
   * The pool leaves this node: everything still running there is cut — both lanes' connections
   * (checked-out, idle, still connecting) and the clients attached for a library that pools by
   * itself — so a node the pool has left can never acknowledge a write afterwards.
   *
   * `answerGraceMs` (default 0: everything is cut at once) lets a running `pool.query` statement
   * answer first, for a node that said it takes no writes: its answer is then an error that proves
   * the statement did nothing (25006, retried on the new primary), where a cut would leave its
   * outcome unknown. A request reports a success from a node left meanwhile as outcome-unknown, so
   * the grace never acknowledges a write; what still runs when it ends is cut.
   */
  leave(answerGraceMs = 0): void {
    const running = [...this.write.cut(answerGraceMs > 0), ...this.read.cut(answerGraceMs > 0)]
    for (const client of this.external) cutClient(client)
    if (running.length === 0) return
    const timer = this.clock.setTimeout(() => {
      this.graceTimers.delete(timer)
      // A client that answered in time went back into its ended pool and closed: cutting it again is a no-op.
      running.forEach(cutClient)
    }, answerGraceMs)
    this.graceTimers.add(timer)
  }

  /** A replica stopped answering: cut what hangs there (nothing may be written there, so nothing is lost) and start afresh. */
  cutStalled(): void {
    this.write.cut()
    this.read.cut()
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
      await connectClient(client)
    } catch (err) {
      client.removeListener('end', ended)
      ended()
      throw err
    }
  }

  /**
   * One role probe of this node, bounded by `timeoutMs` (a connect included), on the node's monitor
   * session — shared with every pool of the process that has this node as an endpoint, so probes
   * asked for at once are one statement. It records the result, not the error: what a failure
   * means (down, misconfigured) is the coordinator's call.
   */
  async probe(timeoutMs: number): Promise<ProbeResult> {
    try {
      const result = await this.monitor.probe(timeoutMs, this.clock)
      this.recordProbe(result)
      return result
    } catch (err) {
      this.recordProbe(null)
      throw asError(err)
    }
  }

  /**
   * Records what a probe found (null: it failed): ours, or one a fleet's shared monitor published
   * (`wallTime`: when it ran there, ms since the epoch).
   */
  recordProbe(result: ProbeResult | null, wallTime = Date.now()): void {
    if (result !== null) {
      const now = this.clock.now()
      // Found detached: it may have been since just after it was last heard streaming, which is
      // what the lag counts from (never from now: a node that refused probes meanwhile could be far behind).
      const heardBefore = this.lastAnsweredAt
      this.lastAnsweredAt = now
      this.lastProbe = result
      if (result.inRecovery && result.lsn !== null) this.noteReplayed(parseLsn(result.lsn))
      this.detachedSince = result.inRecovery && !result.receiving ? (this.detachedSince ?? heardBefore ?? now) : null
    }
    this.lastProbeAt = this.clock.now()
    this.lastProbeWallTime = wallTime
  }

  /**
   * Replay lag in ms as the pool can vouch for it: the server's own figure (while no WAL receiver
   * streams: the time since the last transaction it replayed was committed, which is 0 when it has
   * replayed none since it started) and, while detached, at least the time since the probes first
   * found it so. A figure is vouched for `freshForMs` after the probe that
   * measured it; past that (the node refuses probes: 53300, 3D000, a password rotated) every ms
   * unheard counts as lag, since nothing says it replayed anything. Null before the first probe.
   */
  lagMs(now: number, freshForMs = Number.POSITIVE_INFINITY): number | null {
    const probe = this.lastProbe
    if (probe === null) return null
    const measured = this.detachedSince === null ? probe.lagMs : Math.max(probe.lagMs, now - this.detachedSince)
    const unheard = this.lastAnsweredAt === null ? 0 : now - this.lastAnsweredAt - freshForMs
    return unheard > 0 ? measured + unheard : measured
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

  /**
   * Closes both lanes (waiting for checked-out clients, as pg.Pool#end does; clients still
   * connecting are cut), the monitor session (a connect under way is cut too) and any cut waiting
   * for an answer grace.
   */
  async end(): Promise<void> {
    this.holdMonitorSession(false)
    releaseMonitor(this.monitor)
    for (const timer of this.graceTimers) this.clock.clearTimeout(timer)
    this.graceTimers.clear()
    await Promise.all([this.write.end(), this.read.end()])
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
  cutClient(client)
  client.end().catch(() => undefined)
}

function monitorApplicationName(config: ClientConfig): string {
  const base = config.application_name ?? 'pg-failover-pool'
  return `${base} monitor`.slice(0, 63)
}
