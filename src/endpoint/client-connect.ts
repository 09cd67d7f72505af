import type pg from 'pg'
import { markConnectFailure } from '../error-policy.js'

/**
 * Connects `client` through the callback form of `connect()`, the one every client the pool may be
 * given answers: pg's Client, pg-native's, and a custom `Client` class written to pg-pool's
 * contract (pg-pool calls `client.connect(cb)`; the promise form exists only on pg's own client).
 * Whatever the connect fails with is marked as a connect failure, so the pool treats it as the node
 * being unreachable even when it carries no code it knows (a custom client's own error).
 */
export function connectClient(client: pg.ClientBase): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error | null): void => (err ? reject(markConnectFailure(err)) : resolve())
    ;(client as unknown as { connect(callback: (err?: Error | null) => void): unknown }).connect(done)
  })
}
