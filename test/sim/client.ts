import { EventEmitter } from 'node:events'
import type pg from 'pg'
import type { SimClock } from './clock.js'
import type { Answer, Peer, Session, SimNode, Statement } from './node.js'

/** What a simulated client needs from its world. */
export interface ClientWorld {
  readonly clock: SimClock
  /** How long a connect may take before the client gives up, in ms (pg's connectionTimeoutMillis when not set). */
  readonly connectTimeoutMs: number
  lookup(host: string, port: number): SimNode | undefined
  clientCreated(client: SimClient): void
  /** A statement is about to leave this client for its node (the send-time invariants run here). */
  sending(client: SimClient, statement: Statement): void
  /** The client emitted 'error' with nobody listening: in a real process, an uncaught exception. */
  unhandledClientError(client: SimClient, error: Error): void
  trace(line: string): void
}

type Callback = (err: Error | undefined, result?: unknown) => void

interface Pending {
  readonly statement: Statement
  callback: Callback
  timer: object | null
}

let nextStatementId = 1

/**
 * A stand-in for `pg.Client` over a {@link SimNode}: the parts of pg's client that pg-pool and the
 * library use — connect, query (promise, callback, config object), end, `'error'` and `'end'`
 * events, `_queryable`/`_ending`, the transaction status, `connection.stream.destroy()` — with pg's
 * semantics for a connection lost mid-statement (the statement fails, then `'error'`, then `'end'`).
 * The `native` variant has no `connection` (as pg-native's client), so a cut cannot rely on a socket.
 */
export class SimClient extends EventEmitter {
  readonly host: string
  readonly port: number
  readonly user = 'app'
  readonly database = 'app'
  readonly applicationName: string
  processID: number | null = null
  _queryable = true
  _ending = false
  _connected = false
  _connecting = false
  _activeQuery: Pending | null = null
  readonly _queryQueue: Pending[] = []
  release?: (err?: Error | boolean) => void
  connection?: EventEmitter & { stream: { destroy(err?: Error): void } }
  /** Set when the node this client is connected to is known; the world's invariants read it. */
  node: SimNode | null = null
  /** Simulated time the connection opened (null before). */
  openedAt: number | null = null
  /** True once the connection is gone, however it went. */
  closed = false
  #session: Session | null = null
  #txStatus: 'I' | 'T' | 'E' | null = null
  /** The last statement sent (for diagnostics). */
  lastSql = ''
  /** The socket was destroyed; its close is on its way. */
  #destroying = false
  #connectDone: ((err?: Error) => void) | null = null
  #connectTimer: object | null = null
  readonly #queryTimeoutMs: number
  readonly #connectTimeoutMs: number

  constructor(
    readonly world: ClientWorld,
    config: pg.ClientConfig,
    readonly variant: 'pg' | 'native',
  ) {
    super()
    this.host = String(config.host)
    this.port = Number(config.port ?? 5432)
    this.applicationName = String(config.application_name ?? '')
    this.#connectTimeoutMs = config.connectionTimeoutMillis || world.connectTimeoutMs
    this.#queryTimeoutMs = config.query_timeout || 0
    if (variant === 'pg') {
      const connection = Object.assign(new EventEmitter(), { stream: { destroy: () => this.#cut() } })
      this.connection = connection
    }
    world.clientCreated(this)
  }

  /** Monitoring sessions (probes, watches) as the library names them. */
  get monitoring(): boolean {
    return /monitor|promotion watch/.test(this.applicationName)
  }

  connect(callback?: (err?: Error) => void): Promise<void> | void {
    if (callback) return this.#connect(callback)
    return new Promise<void>((resolve, reject) => this.#connect((err) => (err ? reject(err) : resolve())))
  }

  isConnected(): boolean {
    return this._connected && !this.closed
  }

  getTransactionStatus(): string | null {
    return this.#txStatus
  }

  ref(): void {}
  unref(): void {}

  query(config: any, values?: any, callback?: any): any {
    if (config == null) throw new TypeError('Client was passed a null or undefined query')
    if (typeof config.submit === 'function') throw new Error('the simulated client runs no submittables')
    if (typeof values === 'function') {
      callback = values
      values = undefined
    }
    const sql = typeof config === 'string' ? config : String(config.text)
    const vals: unknown[] = Array.isArray(values) ? values : Array.isArray(config.values) ? config.values : []
    let cb: Callback | undefined = typeof callback === 'function' ? callback : typeof config.callback === 'function' ? config.callback : undefined
    let result: Promise<unknown> | undefined
    if (!cb) {
      let resolve!: (v: unknown) => void
      let reject!: (e: Error) => void
      result = new Promise((res, rej) => {
        resolve = res
        reject = rej
      })
      cb = (err, res) => (err ? reject(err) : resolve(res))
    }
    const pending: Pending = { statement: { id: nextStatementId++, sql, values: vals }, callback: cb, timer: null }
    if (!this._queryable || this.closed) {
      process.nextTick(() => pending.callback(new Error('Client has encountered a connection error and is not queryable')))
      return result
    }
    if (this._ending) {
      process.nextTick(() => pending.callback(new Error('Client was closed and is not queryable')))
      return result
    }
    if (this.#queryTimeoutMs > 0) {
      pending.timer = this.world.clock.setTimeout(() => {
        pending.timer = null
        const cb0 = pending.callback
        pending.callback = () => undefined
        const i = this._queryQueue.indexOf(pending)
        if (i !== -1) this._queryQueue.splice(i, 1)
        cb0(new Error('Query read timeout'))
      }, this.#queryTimeoutMs)
    }
    this._queryQueue.push(pending)
    this.#pulse()
    return result
  }

  end(callback?: () => void): Promise<void> | void {
    const done = new Promise<void>((resolve) => {
      if (this.closed || (!this._connecting && !this._connected)) {
        this._ending = true
        this.closed = true
        return resolve()
      }
      this._ending = true
      this.once('end', () => resolve())
      // A socket closes on a later tick: what runs on it fails after end() returns.
      process.nextTick(() => this.#close(new Error('Connection terminated'), false))
    })
    if (callback) {
      void done.then(callback)
      return
    }
    return done
  }

  // ------------------------------------------------------------------ internals

  #connect(done: (err?: Error) => void): void {
    if (this._connecting || this._connected || this.closed) {
      process.nextTick(() => done(new Error('Client has already been connected. You cannot reuse a client.')))
      return
    }
    this._connecting = true
    const node = this.world.lookup(this.host, this.port)
    this.#connectDone = done
    this.#connectTimer = this.world.clock.setTimeout(() => {
      this.#connectTimer = null
      this.#close(new Error('Connection terminated due to connection timeout', { cause: new Error('timeout expired') }), false)
    }, this.#connectTimeoutMs)
    if (!node) {
      this.world.clock.setTimeout(() => this.#close(Object.assign(new Error(`getaddrinfo ENOTFOUND ${this.host}`), { code: 'ENOTFOUND' }), false), 1)
      return
    }
    this.node = node
    node.connect(this.#peer(), this.monitoring)
  }

  #peer(): Peer {
    return {
      opened: (session) => {
        if (this.closed || !this._connecting) {
          // The client gave up (timeout, cut) while the server accepted: close the server side.
          session.node.clientClosed(session)
          return
        }
        this.#clearConnectTimer()
        this.#session = session
        this.processID = session.pid
        this._connecting = false
        this._connected = true
        this.openedAt = this.world.clock.now()
        this.#txStatus = 'I'
        const done = this.#connectDone
        this.#connectDone = null
        done?.()
        this.#pulse()
      },
      refused: (error) => {
        if (this.closed) return
        this.#close(error, false)
      },
      answered: (id, answer) => this.#answered(id, answer),
      lost: (error) => this.#close(error, true),
      parameterStatus: (name, value) => this.connection?.emit('parameterStatus', { parameterName: name, parameterValue: value }),
    }
  }

  #pulse(): void {
    if (!this._connected || this.closed || this.#destroying || this._activeQuery !== null || this._queryQueue.length === 0) return
    const pending = this._queryQueue.shift()!
    this._activeQuery = pending
    this.lastSql = pending.statement.sql
    this.world.sending(this, pending.statement)
    this.#session!.node.receive(this.#session!, pending.statement)
  }

  #answered(id: number, answer: Answer): void {
    const active = this._activeQuery
    if (active === null || active.statement.id !== id || this.closed) return
    this._activeQuery = null
    this.#txStatus = this.#session!.txStatus
    if (active.timer) this.world.clock.clearTimeout(active.timer)
    if ('error' in answer) active.callback(answer.error)
    else active.callback(undefined, { rows: answer.rows, rowCount: answer.rows.length, command: answer.command, fields: [] })
    this.#pulse()
  }

  #clearConnectTimer(): void {
    if (this.#connectTimer) this.world.clock.clearTimeout(this.#connectTimer)
    this.#connectTimer = null
  }

  /**
   * Our side cut the socket (pg's `connection.stream.destroy()`): nothing more leaves it, and — as a
   * Node socket emits 'close' on the next tick — its statements fail after this call returns.
   */
  #cut(): void {
    if (this.closed || this.#destroying) return
    this.#destroying = true
    const session = this.#session
    if (session) session.node.clientClosed(session)
    process.nextTick(() => this.#close(new Error('Connection terminated unexpectedly'), false))
  }

  /**
   * The connection is gone. `byServer`: the server ended it (its FATAL error goes to the running
   * statement); otherwise our side closed or cut it. As pg: the running statement fails, queued
   * ones fail, `'error'` is emitted unless we were ending, then `'end'`.
   */
  #close(error: Error, byServer: boolean): void {
    if (this.closed) return
    this.closed = true
    this._queryable = false
    this.#clearConnectTimer()
    const session = this.#session
    this.#session = null
    if (session && !byServer && !this.#destroying) session.node.clientClosed(session)
    if (this._connecting) {
      this._connecting = false
      const done = this.#connectDone
      this.#connectDone = null
      done?.(error)
      process.nextTick(() => this.emit('end'))
      return
    }
    const lostError = this._ending ? new Error('Connection terminated') : byServer && (error as { severity?: string }).severity === 'FATAL' ? error : new Error('Connection terminated unexpectedly')
    const active = this._activeQuery
    this._activeQuery = null
    if (active) {
      if (active.timer) this.world.clock.clearTimeout(active.timer)
      active.callback(lostError)
    }
    for (const q of this._queryQueue.splice(0)) {
      if (q.timer) this.world.clock.clearTimeout(q.timer)
      q.callback(new Error(this._ending ? 'Connection terminated' : 'Connection terminated unexpectedly'))
    }
    if (!this._ending) {
      const emitted = byServer ? error : lostError
      // pg's client would throw from emit() here and crash the process: say whose client it was.
      if (this.listenerCount('error') === 0) this.world.unhandledClientError(this, emitted)
      else this.emit('error', emitted)
    }
    process.nextTick(() => this.emit('end'))
  }
}

/** A `Client` class for pg.Pool's `Client` option, bound to one simulated world. */
export function simClientClass(world: ClientWorld, variant: 'pg' | 'native'): typeof pg.Client {
  class BoundSimClient extends SimClient {
    constructor(config: pg.ClientConfig) {
      super(world, config ?? {}, variant)
    }
  }
  return BoundSimClient as unknown as typeof pg.Client
}
