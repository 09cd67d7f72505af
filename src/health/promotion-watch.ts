import type pg from 'pg'
import type { Clock, TimerHandle } from '../clock.js'
import { jitter, randomOf } from '../clock.js'
import { destroyClient, type Endpoint, unrefClient } from '../endpoint/endpoint.js'
import { promotionWatchSql } from '../endpoint/role-probe.js'
import type { Watch } from './watches.js'

/** Settings for {@link PromotionWatch}, all in milliseconds. */
export interface PromotionWatchSettings {
  /** How long one server-side wait lasts before it re-arms. */
  readonly windowMs: number
  /** How often the server checks `pg_is_in_recovery()` within a wait. */
  readonly checkMs: number
  /** Pause before reconnecting after the watch session failed. */
  readonly retryMs: number
  /** Connect deadline of the watch session. */
  readonly connectTimeoutMs: number
}

/**
 * Notices the promotion of one standby within a few milliseconds, even when the application is
 * idle. A dedicated session runs a short server-side wait that returns as soon as the node leaves
 * recovery; PostgreSQL 14+ then reports `in_hot_standby=off` before ReadyForQuery, and older
 * servers are covered by checking `pg_is_in_recovery()` on the same session.
 *
 * (Measured: PostgreSQL does not push `in_hot_standby` to a session that is idle; the report is
 * only sent when the session next finishes a statement, which is why the session is kept busy.)
 */
export class PromotionWatch implements Watch {
  private client: pg.Client | null = null
  private timer: TimerHandle | null = null
  private stopped = true

  constructor(
    private readonly endpoint: Endpoint,
    private readonly settings: PromotionWatchSettings,
    private readonly clock: Clock,
    private readonly onPromoted: (endpoint: Endpoint) => void,
  ) {}

  /** True while the watch is armed. */
  get running(): boolean {
    return !this.stopped
  }

  /** Arms the watch; idempotent. */
  start(): void {
    if (!this.stopped) return
    this.stopped = false
    void this.loop()
  }

  /** Disarms the watch and closes its session; idempotent. */
  stop(): void {
    this.stopped = true
    if (this.timer !== null) this.clock.clearTimeout(this.timer)
    this.timer = null
    if (this.client) destroyClient(this.client)
    this.client = null
  }

  private async loop(): Promise<void> {
    const client = this.endpoint.createClient({
      application_name: 'pg-failover-pool promotion watch',
      connectionTimeoutMillis: this.settings.connectTimeoutMs,
      statement_timeout: 0,
      query_timeout: undefined,
    })
    this.client = client
    let promoted = false
    // pg's protocol connection reports in_hot_standby; a client without one (pg-native) is covered
    // by the pg_is_in_recovery() check after each wait.
    const connection = (client as unknown as { connection?: NodeJS.EventEmitter }).connection
    connection?.on('parameterStatus', (msg: { parameterName: string; parameterValue: string }) => {
      if (msg.parameterName === 'in_hot_standby' && msg.parameterValue === 'off') promoted = true
    })
    try {
      await client.connect()
      unrefClient(client)
      const sql = promotionWatchSql(this.settings.windowMs, this.settings.checkMs)
      while (!this.stopped && this.client === client) {
        await client.query(sql)
        if (!promoted) {
          const { rows } = await client.query<{ r: boolean }>('SELECT pg_is_in_recovery() AS r')
          promoted = rows[0]?.r === false
        }
        if (promoted) {
          this.stop()
          this.onPromoted(this.endpoint)
          return
        }
      }
    } catch {
      if (this.client === client) {
        destroyClient(client)
        this.client = null
      }
      if (this.stopped) return
      // The endpoint's own probes and breakers judge the node; the watch just comes back later.
      this.timer = this.clock.setTimeout(() => {
        this.timer = null
        if (!this.stopped) void this.loop()
      }, jitter(this.settings.retryMs, 0.2, randomOf(this.clock)))
    }
  }
}
