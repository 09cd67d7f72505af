/**
 * The LISTEN session of `pgBossDb` (pg-boss 12's `listen` hook): one dedicated session that
 * follows the verified primary across failovers.
 */
import pg, { escapeIdentifier } from 'pg'
import { jitter, withDeadline } from '../clock.js'
import { destroyClient } from '../endpoint/endpoint.js'
import type { FailoverPool } from '../failover-pool.js'
import type { PgBossListenHandle } from './pg-boss.js'
import { asError } from '../errors.js'

/** A LISTEN session that lived this long counts as a success: the next loss reconnects at once again. */
const STABLE_SESSION_MS = 1_000

/** How a LISTEN session is kept alive (see PgBossDbOptions). */
export interface ListenSettings {
  onError: (err: Error) => void
  heartbeatIntervalMs: number
  heartbeatTimeoutMs: number
  maxRetryDelayMs: number
}

/**
 * One LISTEN session that follows the primary. The session is a dedicated `pg.Client` connected
 * through `pool.connectClient` (the verified primary, outside the pool's `max`, as pg-boss's own
 * listener is outside its pool); the pool cuts it when it leaves that node, and then — or when
 * the server ends it, or a heartbeat fails — a new one LISTENs on the primary the pool verifies
 * next (connectClient waits for it, bounded by `failoverTimeoutMs`; failed attempts back off).
 */
export async function listenOnPrimary(
  pool: FailoverPool,
  channel: string,
  onNotification: (payload: string) => void,
  onReconnect: () => void,
  settings: ListenSettings,
): Promise<PgBossListenHandle> {
  let closed = false
  /** The current session (connecting or listening); null between sessions. */
  let current: pg.Client | null = null
  let reconnectTimer: NodeJS.Timeout | null = null
  let heartbeatTimer: NodeJS.Timeout | null = null
  /** Reconnect attempts since the last session that lived {@link STABLE_SESSION_MS}: the backoff. */
  let failures = 0
  let sessionStart = 0
  // Only self-heal once a LISTEN has succeeded: a failed first one is the caller's to handle.
  let established = false
  const listenSql = `LISTEN ${escapeIdentifier(channel)}`

  const report = (err: unknown): void => {
    if (closed) return
    try {
      settings.onError(asError(err))
    } catch {
      // A throwing error callback must not stop the reconnects.
    }
  }

  const drop = (client: pg.Client): void => {
    client.removeAllListeners()
    // An error while closing must not become an uncaught 'error' event.
    client.on('error', () => undefined)
    destroyClient(client)
  }

  const clearHeartbeat = (): void => {
    if (heartbeatTimer) clearTimeout(heartbeatTimer)
    heartbeatTimer = null
  }

  /** `client`'s session is gone (or must go): drop it and listen again on the primary. */
  const lost = (client: pg.Client, err: Error): void => {
    if (closed || current !== client) return
    current = null
    clearHeartbeat()
    drop(client)
    // A session that keeps dying at once (flapping) backs off instead of reconnecting in a loop.
    if (Date.now() - sessionStart >= STABLE_SESSION_MS) failures = 0
    report(err)
    if (established) scheduleReconnect()
  }

  const scheduleReconnect = (): void => {
    if (closed || reconnectTimer || current) return
    if (pool.ending) {
      report(new Error(`LISTEN ${channel}: the pool is ending, not listening again`))
      return
    }
    // The first attempt goes at once (connectClient itself waits for a verified primary), later ones back off.
    const delay = failures === 0 ? 0 : Math.min(settings.maxRetryDelayMs, jitter(1_000 * 2 ** Math.min(failures - 1, 10)))
    failures++
    reconnectTimer = setTimeout(() => {
      reconnectTimer = null
      connect().catch((err: unknown) => {
        report(err)
        scheduleReconnect()
      })
    }, delay)
    reconnectTimer.unref()
  }

  const scheduleHeartbeat = (client: pg.Client): void => {
    if (settings.heartbeatIntervalMs <= 0 || closed || current !== client) return
    heartbeatTimer = setTimeout(() => {
      heartbeatTimer = null
      heartbeat(client).then(
        () => scheduleHeartbeat(client),
        (err: unknown) => lost(client, asError(err)),
      )
    }, settings.heartbeatIntervalMs)
    heartbeatTimer.unref()
  }

  const heartbeat = async (client: pg.Client): Promise<void> => {
    if (closed || current !== client) return
    const check = client.query<{ listening: boolean }>('SELECT EXISTS (SELECT 1 FROM pg_listening_channels() AS c(channel) WHERE c.channel = $1) AS listening', [channel])
    const result = await withDeadline(check, settings.heartbeatTimeoutMs, () => new Error(`LISTEN ${channel}: heartbeat timed out after ${settings.heartbeatTimeoutMs} ms`))
    if (!result.rows[0]?.listening) throw new Error(`LISTEN ${channel}: the session no longer listens`)
  }

  const connect = async (): Promise<void> => {
    if (closed) return
    // The pool's client settings (keepalive, application_name, timeouts); connectClient sets the address.
    const client = new pg.Client({ ...pool.options })
    current = client
    client.on('error', (err: Error) => lost(client, err))
    client.on('end', () => lost(client, new Error(`LISTEN ${channel}: the session ended`)))
    client.on('notification', (msg: pg.Notification) => {
      if (current === client && !closed && msg.channel === channel && msg.payload !== undefined) onNotification(msg.payload)
    })
    try {
      await pool.connectClient(client)
      await client.query(listenSql)
    } catch (err) {
      const handled = current !== client
      if (!handled) current = null
      drop(client)
      // Already reported and rescheduled by lost() (or closed meanwhile): nothing more to do, except
      // that a first LISTEN that failed rejects listen() itself.
      if (handled && established) return
      throw err
    }
    if (closed || current !== client) {
      // Closed, or lost and replaced while LISTEN was on its way.
      if (current !== client) drop(client)
      return
    }
    sessionStart = Date.now()
    established = true
    scheduleHeartbeat(client)
    onReconnect()
  }

  await connect()
  return {
    async close() {
      if (closed) return
      closed = true
      if (reconnectTimer) clearTimeout(reconnectTimer)
      reconnectTimer = null
      clearHeartbeat()
      const client = current
      current = null
      if (client) drop(client)
    },
  }
}

