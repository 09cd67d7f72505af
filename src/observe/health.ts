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

/** A readiness verdict: the HTTP status to answer and the status snapshot (with warnings) as the body. */
export interface Readiness {
  readonly ready: boolean
  /** 200 when ready, 503 otherwise. */
  readonly statusCode: 200 | 503
  /**
   * Problems that do not make the pool unready, in words (password-free; empty when all is well):
   * e.g. a state store that cannot record the pool's decision (`stateStore.degraded`) or fails.
   */
  readonly warnings: readonly string[]
  /** The status snapshot plus the same `warnings`: what the health handler answers. */
  readonly body: FailoverPoolStatus & { readonly warnings: readonly string[] }
}

/**
 * Decides readiness from the pool's status (for frameworks that answer requests their own way).
 * A failing or degraded state store never makes the pool unready — queries do not depend on it
 * (the pool serves from its own probes) — but it is listed in `warnings`, and in the body, so a
 * dashboard or alert sees that decisions are not being recorded.
 */
export function readiness(pool: StatusSource, options: HealthOptions = {}): Readiness {
  const status = pool.status()
  const ready = status.mode === 'read-write' || (options.allowReadOnly === true && status.mode === 'read-only')
  const warnings = stateStoreWarnings(status)
  return { ready, statusCode: ready ? 200 : 503, warnings, body: { ...status, warnings } }
}

/** What `status().stateStore` says needs attention, in words. */
function stateStoreWarnings(status: FailoverPoolStatus): string[] {
  const store = status.stateStore
  if (store.ok) return []
  if (store.degraded) return [`state store degraded: ${store.reason ?? store.lastError ?? 'the decision is not recorded'}`]
  return [`state store failing (${store.failure ?? 'unknown'}): ${store.lastError ?? 'no details'}`]
}

/**
 * A request handler for readiness probes, usable as a node:http listener, an Express route
 * (`app.get('/ready', healthHandler(pool))`) or from a NestJS controller with `@Res()`: 200 with
 * the status JSON when a verified primary is known (or, with `allowReadOnly`, when reads can be
 * served), 503 with the same JSON otherwise. The JSON also has `warnings` (e.g. a degraded state
 * store, which never fails readiness) and never contains a password.
 */
export function healthHandler(pool: StatusSource, options: HealthOptions = {}): (req: IncomingMessage, res: ServerResponse) => void {
  return (_req, res) => {
    const { statusCode, body } = readiness(pool, options)
    const json = JSON.stringify(body)
    res.writeHead(statusCode, { 'content-type': 'application/json; charset=utf-8', 'cache-control': 'no-store', 'content-length': Buffer.byteLength(json) })
    res.end(json)
  }
}
