import type pg from 'pg'
import { type Clock, type TimerHandle, jitter, randomOf, withDeadline } from '../clock.js'
import { cutClient } from '../endpoint/client-cut.js'
import { connectClient } from '../endpoint/client-connect.js'
import { type ProbeResult, probeRole, watchWindowSql } from '../endpoint/role-probe.js'
import { classifyError, isTimeout } from '../error-policy.js'
import { asError } from '../errors.js'

/** How a node's monitor watches for a promotion, in milliseconds. */
export interface WatchSettings {
  /** How long one watch window lasts before it returns (with a probe row) and is sent again. */
  readonly windowMs: number
  /** How often the server checks `pg_is_in_recovery()` within a window. */
  readonly checkMs: number
  /** Pause before reconnecting after the session failed while watching. */
  readonly retryMs: number
}

/** One subscription to a node's promotion watch. */
export interface WatchHandle {
  /**
   * While urgent (the pool has doubts about its primary, or no primary), the session watches
   * continuously, noticing a promotion within `checkMs`; otherwise the node is only probed when
   * asked (its health checks), which costs the standby next to nothing while all is well.
   */
  setUrgent(urgent: boolean): void
  /** Ends this subscription. */
  stop(): void
}

interface ProbeRequest {
  /** Clock ms of the request: only a probe evaluated after it answers it. */
  readonly at: number
  readonly resolve: (result: ProbeResult) => void
  readonly reject: (err: Error) => void
  /** A failure on a session that had been working is retried once on a fresh one. */
  retried: boolean
}

interface Watcher {
  /** Called with the row that showed the node out of recovery. */
  readonly onPromoted: (row: ProbeResult) => void
  urgent: boolean
}

/**
 * One node's monitoring for a whole process: ONE session, shared by every pool that has the node
 * as an endpoint (reader views, an ORM's master and slave pools, per-tenant pools), serving both
 * the role probes and the promotion watch:
 * - probes asked for at the same time share one statement (a request is answered by the first
 *   probe evaluated after it was made);
 * - while a subscriber is urgent and the node is a standby, the session runs watch windows back to
 *   back ({@link watchWindowSql}): each returns at once when the node is promoted, and otherwise
 *   after its window with a fresh probe row, which answers the probe requests meanwhile;
 * - while nobody is urgent, nothing runs between probes: an idle instance costs each standby one
 *   probe per health interval (bench/WATCH.md has the measurements behind this choice).
 * Reference counted by the registry (health/monitor-registry.ts): the last release closes it.
 */
export class NodeMonitor {
  #client: pg.Client | null = null
  #connecting: { readonly client: pg.Client; readonly ready: Promise<pg.Client> } | null = null
  readonly #requests: ProbeRequest[] = []
  readonly #watchers = new Set<Watcher>()
  #busy = false
  #closed = false
  #retryTimer: TimerHandle | null = null
  /** Whether the last probe found the node in recovery (null before any). */
  #inRecovery: boolean | null = null
  /** Round trip of the last plain probe (a window's round trip includes its wait). */
  #latencyMs = 0
  /** Pools that keep the session open between statements; with none (fleet followers) it closes when idle. */
  #holders = 0
  refs = 0

  constructor(
    /** For messages. */
    readonly name: string,
    private readonly createClient: () => pg.Client,
    private readonly clock: Clock,
    private readonly watch: WatchSettings,
  ) {}

  /** True while someone is urgent about this node's promotion. */
  get urgent(): boolean {
    for (const w of this.#watchers) if (w.urgent) return true
    return false
  }

  /**
   * A probe evaluated after this call, within `timeoutMs` (a connect included). A node that does
   * not answer in time has its session cut: the next request reconnects.
   */
  probe(timeoutMs: number, clock: Clock = this.clock): Promise<ProbeResult> {
    if (this.#closed) return Promise.reject(new Error(`${this.name}: the pool has ended`))
    let request: ProbeRequest | undefined
    const result = new Promise<ProbeResult>((resolve, reject) => {
      request = { at: this.clock.now(), resolve, reject, retried: false }
      this.#requests.push(request)
    })
    this.#pump()
    const timedOut = (): Error => {
      // The caller has given up: its request leaves the queue, or a later run would serve it with
      // no deadline left to cut a session a proxy holds, and every probe after would queue behind
      // a statement nobody waits for (simulator seed 60045021).
      this.#take((r) => r === request)
      // A frozen node holds the statement: cut the session so the next request starts afresh.
      this.#dropSession()
      return Object.assign(new Error(`role probe of ${this.name} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })
    }
    return withDeadline(result, timeoutMs, timedOut, clock)
  }

  /** Subscribes to this node's promotion (see {@link WatchHandle}). */
  watchPromotion(onPromoted: (row: ProbeResult) => void): WatchHandle {
    const watcher: Watcher = { onPromoted, urgent: false }
    this.#watchers.add(watcher)
    return {
      setUrgent: (urgent) => {
        if (watcher.urgent === urgent) return
        watcher.urgent = urgent
        if (urgent) this.#pump()
      },
      stop: () => void this.#watchers.delete(watcher),
    }
  }

  /**
   * Keeps the session open between statements until the returned function is called. A monitor
   * nobody holds (every pool using it follows a fleet's shared monitor) closes its session as soon
   * as it has nothing to run: a follower's own probes are rare, and it holds no connection between them.
   */
  hold(): () => void {
    this.#holders++
    let held = true
    return () => {
      if (!held) return
      held = false
      this.#holders--
      if (!this.#busy) this.#closeIfIdle()
    }
  }

  /** Closes the session and fails whatever waits (the last subscriber released it). */
  close(): void {
    this.#closed = true
    if (this.#retryTimer !== null) this.clock.clearTimeout(this.#retryTimer)
    this.#retryTimer = null
    this.#dropSession()
    for (const r of this.#requests.splice(0)) r.reject(new Error(`${this.name}: the pool has ended`))
    this.#watchers.clear()
  }

  /** Runs the session's next statement unless one runs: a window while urgent on a standby, else the probes asked for. */
  #pump(): void {
    if (this.#busy || this.#closed) return
    // After a failed watch, windows pause for retryMs; probes asked for still run at once.
    const watching = this.urgent && this.#inRecovery !== false && this.#retryTimer === null
    if (!watching && this.#requests.length === 0) return
    this.#busy = true
    void this.#run(watching).finally(() => {
      this.#busy = false
      this.#pump()
      if (!this.#busy) this.#closeIfIdle()
    })
  }

  /** Ends the session cleanly when nobody holds it and nothing is left to run on it. */
  #closeIfIdle(): void {
    if (this.#holders > 0 || this.#busy || this.#requests.length > 0 || this.#client === null) return
    const client = this.#client
    this.#client = null
    client.end().catch(() => undefined)
  }

  async #run(watching: boolean): Promise<void> {
    const sentAt = this.clock.now()
    const reused = this.#client !== null
    let result: ProbeResult
    try {
      const client = await this.#session()
      const window = watching ? { sql: watchWindowSql(this.watch.windowMs, this.watch.checkMs), name: `pgfp_watch_${this.watch.windowMs}_${this.watch.checkMs}` } : null
      result = await probeRole(client, () => this.clock.now(), window)
      if (window === null) this.#latencyMs = result.latencyMs
      else result = { ...result, latencyMs: this.#latencyMs, evaluatedAt: this.clock.now() - this.#latencyMs / 2 }
    } catch (err) {
      this.#failed(asError(err), reused, watching)
      return
    }
    const wasStandby = this.#inRecovery === true
    this.#inRecovery = result.inRecovery
    // A window is evaluated at its end, after every request made while it ran; a plain probe only
    // after those made before it was sent.
    const answered = watching ? this.#requests.splice(0) : this.#take((r) => r.at <= sentAt)
    for (const r of answered) r.resolve(result)
    if (wasStandby && !result.inRecovery) for (const w of [...this.#watchers]) w.onPromoted(result)
  }

  /**
   * The statement failed. A session that had been working may have been ended alone (terminated,
   * timed out while idle): the requests get one more try on a fresh session; otherwise they fail.
   * A failed watch comes back after `retryMs` (probes judge the node meanwhile).
   */
  #failed(error: Error, reused: boolean, watching: boolean): void {
    this.#dropSession()
    const retry = reused && classifyError(error) === 'connection' && !isTimeout(error)
    for (const r of this.#take((r) => !(retry && !r.retried))) r.reject(error)
    for (const r of this.#requests) r.retried = true
    if (watching && !retry && !this.#closed) {
      this.#retryTimer = this.clock.setTimeout(() => {
        this.#retryTimer = null
        this.#pump()
      }, jitter(this.watch.retryMs, 0.2, randomOf(this.clock)))
    }
  }

  #take(pick: (r: ProbeRequest) => boolean): ProbeRequest[] {
    const taken: ProbeRequest[] = []
    for (let i = 0; i < this.#requests.length; ) {
      if (pick(this.#requests[i]!)) taken.push(...this.#requests.splice(i, 1))
      else i++
    }
    return taken
  }

  #session(): Promise<pg.Client> {
    if (this.#client) return Promise.resolve(this.#client)
    if (this.#connecting) return this.#connecting.ready
    const client = this.createClient()
    const ready = connectClient(client).then(
      () => {
        if (this.#connecting?.client !== client) {
          cutClient(client)
          throw new Error(`the monitor session of ${this.name} was closed while connecting`)
        }
        this.#connecting = null
        this.#client = client
        ;(client as unknown as { unref?: () => void }).unref?.()
        client.once('end', () => {
          if (this.#client === client) this.#client = null
        })
        return client
      },
      (err: unknown) => {
        if (this.#connecting?.client === client) this.#connecting = null
        cutClient(client)
        throw err
      },
    )
    this.#connecting = { client, ready }
    return ready
  }

  /** Cuts the session (or the connect under way) without waiting for the server, which may be frozen or gone. */
  #dropSession(): void {
    const connecting = this.#connecting
    this.#connecting = null
    if (connecting) cutClient(connecting.client)
    // Taken first: a client that emits 'end' while being cut (a custom Client whose end() is
    // synchronous) clears #client from its 'end' listener.
    const client = this.#client
    this.#client = null
    if (client) {
      cutClient(client)
      client.end().catch(() => undefined)
    }
  }
}
