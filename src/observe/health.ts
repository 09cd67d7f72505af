import type { IncomingMessage, ServerResponse } from 'node:http'
import type { FailoverPoolStatus } from './status.js'

/** Anything with a `status()` like FailoverPool's (kept structural so tests and wrappers fit). */
export interface StatusSource {
  status(): FailoverPoolStatus
}

/** Options of {@link healthHandler} and {@link readiness}. */
export interface HealthOptions {
  /**
   * Report ready while no primary is known but replicas serve reads (`mode: 'read-only'`), for
   * services that can degrade to reading. Default false: ready only with a verified primary.
   */
  allowReadOnly?: boolean
}

/** A readiness verdict: the HTTP status to answer and the status snapshot as the body. */
export interface Readiness {
  readonly ready: boolean
  /** 200 when ready, 503 otherwise. */
  readonly statusCode: 200 | 503
  readonly body: FailoverPoolStatus
}

/** Decides readiness from the pool's status (for frameworks that answer requests their own way). */
export function readiness(pool: StatusSource, options: HealthOptions = {}): Readiness {
  const body = pool.status()
  const ready = body.mode === 'read-write' || (options.allowReadOnly === true && body.mode === 'read-only')
  return { ready, statusCode: ready ? 200 : 503, body }
}

/**
 * A request handler for readiness probes, usable as a node:http listener, an Express route
 * (`app.get('/ready', healthHandler(pool))`) or from a NestJS controller with `@Res()`: 200 with
 * the status JSON when a verified primary is known (or, with `allowReadOnly`, when reads can be
 * served), 503 with the same JSON otherwise. The JSON never contains a password.
 */
export function healthHandler(pool: StatusSource, options: HealthOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    const { statusCode, body } = readiness(pool, options)
    const json = JSON.stringify(body)
    res.writeHead(statusCode, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(json) })
    res.end(json)
  }
}
