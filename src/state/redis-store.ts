import { type Clock, type TimerHandle, systemClock, withDeadline } from '../clock.js'
import { maskPassword } from '../errors.js'
import { type RecordPosition, isNewerRecord } from './record-order.js'
import { ACQUIRE_LEASE, COMPARE_AND_SET, PUBLISH, RELEASE_LEASE } from './redis-scripts.js'
import type { RedisLike, RedisSubscriberLike } from './redis-client.js'
import { type CompareAndSetResult, type StateRecord, type StateStore, StateStoreError, type StateUpdate, asStateRecord } from './state-store.js'

/** ioredis states of a client's first connection: worth waiting for, as a starting app does. */
const FIRST_CONNECT = new Set(['wait', 'connecting', 'connect'])

/** First wait before a failed catch-up read is tried again (it doubles each time), in ms. */
const CATCH_UP_FIRST_RETRY_MS = 100

/** Options of {@link RedisStateStore}. */
export interface RedisStateStoreOptions {
  /** An ioredis client you created (and still own: the store never closes it). */
  client: RedisLike
  /** Key holding the record as JSON. Default `pg-failover-pool:state`. */
  key?: string
  /** Channel on which a successful compare-and-set publishes the new record. Default `${key}:changed`. */
  channel?: string
  /** Key of the shared-monitoring lease (`monitor: 'shared'`). Default `${key}:monitor-lease`. */
  leaseKey?: string
  /** Channel of the shared monitor's observations (`monitor: 'shared'`). Default `${key}:observations`. */
  observationChannel?: string
  /**
   * While watching, how often the key is read in case a published change was missed (pub/sub
   * drops messages while a subscriber is disconnected), in ms. Default 1000; 0 turns periodic
   * reads off (the store still reads once when watching starts and after each resubscribe).
   */
  pollIntervalMs?: number
  /** Deadline of every Redis command, in ms; past it the operation fails with 'timeout'. Default 1000. */
  commandTimeoutMs?: number
  /** Time source for the poll timer and command deadlines (tests inject a fake). Default: the real clock. */
  clock?: Clock
}

/** A listener of {@link RedisStateStore.watch} and the newest record (epoch, then version) it was given. */
interface Watcher {
  readonly listener: (record: StateRecord) => void
  lastSeen: RecordPosition | null
}

/**
 * Keeps the decision in Redis, so every instance of an app (on any host) shares it.
 * Compare-and-set is one Lua script (read, compare, SET, PUBLISH), hence atomic across processes;
 * {@link watch} hears changes over pub/sub on a duplicated connection and polls as a fallback.
 * Every command is bounded by `commandTimeoutMs`: a dead or frozen Redis fails fast with a
 * {@link StateStoreError} and never holds a pool up. A 'timeout' on compareAndSet is ambiguous
 * (the write may still happen); the next load or watch tells.
 */
export class RedisStateStore implements StateStore {
  readonly #client: RedisLike
  readonly #key: string
  readonly #channel: string
  readonly #leaseKey: string
  readonly #observationChannel: string
  readonly #messageListeners = new Set<(message: string) => void>()
  readonly #pollIntervalMs: number
  readonly #commandTimeoutMs: number
  readonly #watchers = new Set<Watcher>()
  #subscriber: RedisSubscriberLike | null = null
  #subscribed = false
  #pollTimer: TimerHandle | null = null
  readonly #clock: Clock
  /** The read in flight (with any reruns asked for meanwhile): resolves true when the last read succeeded. */
  #pollRun: Promise<boolean> | null = null
  #pollAgain = false
  /** The next try of a catch-up read that failed (see {@link #catchUp}). */
  #catchUpTimer: TimerHandle | null = null
  #closed = false
  /** True once the client was seen ready: later outages fail fast instead of waiting. */
  #seenReady = false

  /** @throws RangeError when pollIntervalMs is negative or commandTimeoutMs is not positive. */
  constructor(options: RedisStateStoreOptions) {
    this.#client = options.client
    this.#key = options.key ?? 'pg-failover-pool:state'
    this.#channel = options.channel ?? `${this.#key}:changed`
    this.#leaseKey = options.leaseKey ?? `${this.#key}:monitor-lease`
    this.#observationChannel = options.observationChannel ?? `${this.#key}:observations`
    this.#pollIntervalMs = options.pollIntervalMs ?? 1_000
    this.#commandTimeoutMs = options.commandTimeoutMs ?? 1_000
    this.#clock = options.clock ?? systemClock
    if (!(this.#pollIntervalMs >= 0)) throw new RangeError(`pollIntervalMs must be >= 0, got ${this.#pollIntervalMs}`)
    if (!(this.#commandTimeoutMs > 0)) throw new RangeError(`commandTimeoutMs must be > 0, got ${this.#commandTimeoutMs}`)
  }

  /** The key holding the record. */
  get key(): string {
    return this.#key
  }

  /** The channel changes are published on. */
  get channel(): string {
    return this.#channel
  }

  /**
   * GET + JSON.parse. Rejects with StateStoreError: 'corrupt' (not a record, or a key of another
   * type), 'unavailable' (Redis refused or failed the command), 'timeout' (past commandTimeoutMs).
   */
  async load(): Promise<StateRecord | null> {
    const raw = await this.#command('GET', () => this.#client.get(this.#key))
    if (raw === null) return null
    return this.#parse(raw)
  }

  /**
   * Atomic compare-and-set (one Lua script); on success the new record is also published on the
   * channel. A stored value that is not a record counts as nothing stored. Rejects like load();
   * after a 'timeout' the write may still have happened. Throws TypeError for an invalid update.
   */
  async compareAndSet(expectedVersion: number | null, update: StateUpdate): Promise<CompareAndSetResult> {
    // Checked before writing: an invalid record would be stored and then read back as corrupt.
    const record = asStateRecord({ ...update, version: (expectedVersion ?? 0) + 1 })
    if (!record) throw new TypeError(`not a valid state record update: ${JSON.stringify(update)}`)
    const json = JSON.stringify(record)
    const reply = await this.#command('compare-and-set', () =>
      this.#client.eval(COMPARE_AND_SET, 1, this.#key, expectedVersion === null ? '' : String(expectedVersion), json, this.#channel),
    )
    if (!Array.isArray(reply) || (reply[0] !== 1 && reply[0] !== 0)) {
      throw new StateStoreError('unavailable', `unexpected reply from the compare-and-set script on key "${this.#key}"`)
    }
    if (reply[0] === 1) {
      // `raw` was there but not a record (the script only writes over one when it expected nothing).
      return reply[2] === 'replaced' ? { ok: true, record, corrupt: `Redis key "${this.#key}" held a value that was not a valid state record; replaced` } : { ok: true, record }
    }
    const current = reply[1]
    return { ok: false, current: typeof current === 'string' ? this.#parse(current) : null }
  }

  /**
   * Calls `listener` with each record newer than the last one it was given (a higher epoch, or the
   * same epoch and a higher version: versions start again at 1 after the key was lost, e.g. to a
   * FLUSHALL or a Redis restarted without persistence): first the stored record (if any), then
   * every record another process (or this one) stores. Pub/sub delivers
   * within milliseconds; polling every `pollIntervalMs` catches what pub/sub missed. Listener
   * errors are swallowed (they must not break the watch). Returns the unsubscribe function.
   */
  watch(listener: (record: StateRecord) => void): () => void {
    if (this.#closed) return () => undefined
    const watcher: Watcher = { listener, lastSeen: null }
    this.#watchers.add(watcher)
    if (this.#subscriber === null) this.#startSubscriber()
    else {
      if (this.#pollTimer === null) this.#schedulePoll()
      void this.#poll()
    }
    return () => {
      if (this.#watchers.delete(watcher)) this.#stopSubscriberIfUnused()
    }
  }

  /**
   * Takes or renews the shared monitor's lease for `holder` (one Lua script: SET PX when the key is
   * free or already `holder`'s). Rejects like load().
   */
  async acquireLease(holder: string, ttlMs: number): Promise<boolean> {
    const reply = await this.#command('lease', () => this.#client.eval(ACQUIRE_LEASE, 1, this.#leaseKey, holder, String(Math.max(1, Math.round(ttlMs)))))
    return reply === 1
  }

  /** Deletes the lease when `holder` holds it. Rejects like load(). */
  async releaseLease(holder: string): Promise<void> {
    await this.#command('lease release', () => this.#client.eval(RELEASE_LEASE, 1, this.#leaseKey, holder))
  }

  /** PUBLISHes `message` on the observation channel. Rejects like load(). */
  async publish(message: string): Promise<void> {
    await this.#command('publish', () => this.#client.eval(PUBLISH, 1, this.#observationChannel, message))
  }

  /**
   * Calls `listener` with every message published on the observation channel, over the same
   * duplicated connection as {@link watch}. Messages sent while it is disconnected are lost.
   * Listener errors are swallowed. Returns the unsubscribe function.
   */
  subscribe(listener: (message: string) => void): () => void {
    if (this.#closed) return () => undefined
    const own = (message: string): void => listener(message)
    this.#messageListeners.add(own)
    if (this.#subscriber === null) this.#startSubscriber()
    return () => {
      if (this.#messageListeners.delete(own)) this.#stopSubscriberIfUnused()
    }
  }

  /** Stops timers and closes the subscription connection; the client you passed stays open. */
  async close(): Promise<void> {
    this.#closed = true
    this.#watchers.clear()
    this.#messageListeners.clear()
    this.#stopSubscriber()
  }

  #stopSubscriberIfUnused(): void {
    if (this.#watchers.size === 0 && this.#messageListeners.size === 0) this.#stopSubscriber()
    else if (this.#watchers.size === 0 && this.#pollTimer !== null) {
      this.#clock.clearTimeout(this.#pollTimer)
      this.#pollTimer = null
    }
  }

  #startSubscriber(): void {
    const subscriber = this.#client.duplicate()
    this.#subscriber = subscriber
    // Without a listener ioredis prints every connection error; the poll covers the outage.
    subscriber.on('error', () => undefined)
    subscriber.on('message', (channel: unknown, message: unknown) => {
      if (typeof message !== 'string') return
      if (channel === this.#observationChannel) {
        for (const listener of [...this.#messageListeners]) {
          try {
            listener(message)
          } catch {
            // A listener's bug must not stop the others.
          }
        }
        return
      }
      if (channel !== this.#channel) return
      try {
        this.#deliver(this.#parse(message))
      } catch {
        // Someone else's garbage on our channel: ignore it, the poll reads the real key.
      }
    })
    subscriber.on('close', () => {
      if (this.#subscriber === subscriber) this.#subscribed = false
    })
    // Messages published while disconnected are lost: resubscribe (if ioredis did not) and read.
    subscriber.on('ready', () => this.#subscribe(subscriber))
    this.#subscribe(subscriber)
    this.#schedulePoll()
  }

  #stopSubscriber(): void {
    if (this.#pollTimer !== null) this.#clock.clearTimeout(this.#pollTimer)
    this.#pollTimer = null
    if (this.#catchUpTimer !== null) this.#clock.clearTimeout(this.#catchUpTimer)
    this.#catchUpTimer = null
    this.#subscriber?.disconnect()
    this.#subscriber = null
    this.#subscribed = false
  }

  /** Subscribes (if not yet), then reads once so that nothing stored before the subscription is missed. */
  #subscribe(subscriber: RedisSubscriberLike): void {
    const catchUp = (): void => this.#catchUp(subscriber, CATCH_UP_FIRST_RETRY_MS)
    if (this.#subscribed) return catchUp()
    // With enableOfflineQueue: false this fails until connected; the 'ready' event retries it.
    subscriber.subscribe(this.#channel, this.#observationChannel).then(() => {
      if (this.#subscriber === subscriber) this.#subscribed = true
      catchUp()
    }, catchUp)
  }

  /**
   * The read after (re)subscribing. After a restart the subscription may be back before the command
   * connection is, and then this read fails: it is tried again, backing off from `retryMs` to
   * `pollIntervalMs` (1 s when polling is off), until one succeeds — a change made while the
   * subscription was down is never left to the next poll.
   */
  #catchUp(subscriber: RedisSubscriberLike, retryMs: number): void {
    if (this.#subscriber !== subscriber) return
    if (this.#catchUpTimer !== null) this.#clock.clearTimeout(this.#catchUpTimer)
    this.#catchUpTimer = null
    void this.#poll().then((ok) => {
      if (ok || this.#subscriber !== subscriber || this.#watchers.size === 0 || this.#catchUpTimer !== null) return
      this.#catchUpTimer = this.#clock.setTimeout(() => {
        this.#catchUpTimer = null
        this.#catchUp(subscriber, Math.min(retryMs * 2, this.#pollIntervalMs || 1_000))
      }, retryMs)
    })
  }

  #schedulePoll(): void {
    if (this.#pollIntervalMs === 0 || this.#subscriber === null || this.#watchers.size === 0) return
    this.#pollTimer = this.#clock.setTimeout(() => {
      this.#pollTimer = null
      void this.#poll().finally(() => {
        if (this.#pollTimer === null) this.#schedulePoll()
      })
    }, this.#pollIntervalMs)
  }

  /**
   * Reads the key and delivers it; never rejects (a failed read just waits for the next one).
   * Resolves true when the read succeeded (a rerun asked for while one was in flight included).
   */
  #poll(): Promise<boolean> {
    if (this.#pollRun !== null) {
      // A read already in flight may have started before the change we are told about.
      this.#pollAgain = true
      return this.#pollRun
    }
    const run = async (): Promise<boolean> => {
      let ok = true
      try {
        do {
          this.#pollAgain = false
          if (this.#watchers.size === 0) return true
          try {
            const record = await this.load()
            if (record) this.#deliver(record)
            ok = true
          } catch {
            // Unavailable, slow or corrupt: load() and compareAndSet() report it; watching retries.
            ok = false
          }
        } while (this.#pollAgain)
        return ok
      } finally {
        this.#pollRun = null
      }
    }
    this.#pollRun = run()
    return this.#pollRun
  }

  #deliver(record: StateRecord): void {
    for (const watcher of [...this.#watchers]) {
      if (!isNewerRecord(record, watcher.lastSeen) || !this.#watchers.has(watcher)) continue
      watcher.lastSeen = { epoch: record.epoch, version: record.version }
      try {
        watcher.listener(record)
      } catch {
        // A listener's bug must not stop the others or kill the timer.
      }
    }
  }

  #parse(raw: string): StateRecord {
    let parsed: unknown
    try {
      parsed = JSON.parse(raw)
    } catch (err) {
      throw new StateStoreError('corrupt', `Redis key "${this.#key}" does not hold valid JSON`, { cause: err })
    }
    const record = asStateRecord(parsed)
    if (!record) throw new StateStoreError('corrupt', `Redis key "${this.#key}" does not hold a valid state record`)
    return record
  }

  /** Runs one command against a deadline; maps every failure to a StateStoreError. */
  async #command<T>(what: string, run: () => Promise<T>): Promise<T> {
    let stopWaiting = (): void => undefined
    const ready = this.#whenReady((stop) => (stopWaiting = stop))
    const pending: Promise<T> = ready.then(run)
    const timedOut = (): Error => new StateStoreError('timeout', `Redis ${what} on key "${this.#key}" took longer than ${this.#commandTimeoutMs} ms`)
    try {
      return await withDeadline(pending, this.#commandTimeoutMs, timedOut, this.#clock)
    } catch (err) {
      if (err instanceof StateStoreError) throw err
      const message = maskPassword(err instanceof Error ? err.message : String(err))
      // A key of another type is someone else's data: report it, never overwrite it.
      const failure = message.startsWith('WRONGTYPE') ? 'corrupt' : 'unavailable'
      // No `cause`: ioredis errors carry the failed command's arguments, and for the HELLO/AUTH
      // of a connection those include the password.
      throw new StateStoreError(failure, `Redis ${what} on key "${this.#key}" failed: ${message}`)
    } finally {
      stopWaiting()
    }
  }

  /**
   * Resolves once the client can take commands: at once when it says nothing of its state, is
   * ready, or was ready before (the command then fails on its own, fast), else at its 'ready' event. The
   * caller's deadline bounds the wait; `onStop` receives the function that drops the listener.
   */
  #whenReady(onStop: (stop: () => void) => void): Promise<void> {
    const client = this.#client
    const status = client.status
    if (status === 'ready') this.#seenReady = true
    // Only a first connect is waited for: a client that lost its server (reconnecting) fails at
    // once, as it should, rather than at the deadline.
    if (status === undefined || this.#seenReady || !FIRST_CONNECT.has(status) || typeof client.once !== 'function') return Promise.resolve()
    return new Promise<void>((resolve) => {
      const listener = (): void => resolve()
      client.once!('ready', listener)
      onStop(() => client.removeListener?.('ready', listener))
    })
  }
}

