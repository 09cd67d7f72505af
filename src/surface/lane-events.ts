import type { EventEmitter } from 'node:events'
import type { PoolClient } from 'pg'
import type { Endpoint, LaneKind } from '../endpoint/endpoint.js'
import type { LaneEvents } from '../endpoint/lane.js'
import { hasOwnErrorListener } from './pool-surface.js'

/** The surfaces that own a lane's connections, and where an idle client's error is reported. */
export interface LaneEventTargets {
  /** The FailoverPool itself (owner of write connections). */
  readonly pool: EventEmitter
  /** `pool.writer`, if it was made. */
  writer(): EventEmitter | null
  /** Every reader view made so far (`pool.reader`, `readerView()`): they share the read connections. */
  readers(): readonly EventEmitter[]
  /** An idle client failed: the topology hears of it (once: the request path never sees idle errors). */
  idleError(endpoint: Endpoint, err: Error): void
}

/**
 * Forwards one lane's pg.Pool events to the surfaces that own its connections (write lanes: the
 * pool and `writer`; read lanes: every reader view), with pg.Pool's arguments. Called for every checkout
 * and release, so it allocates nothing per event. Failures are not reported from here: a request
 * reports its own, exactly once; only idle clients' errors (no request saw them) are.
 */
export function forwardLaneEvents(targets: LaneEventTargets, endpoint: Endpoint, lane: LaneKind): LaneEvents {
  const write = lane === 'write'
  const one = (event: 'connect' | 'acquire' | 'remove', client: PoolClient): void => {
    if (write) {
      targets.pool.emit(event, client)
      targets.writer()?.emit(event, client)
    } else for (const reader of targets.readers()) reader.emit(event, client)
  }
  return {
    connect: (client) => one('connect', client),
    acquire: (client) => one('acquire', client),
    remove: (client) => one('remove', client),
    release: (err, client) => {
      if (write) {
        targets.pool.emit('release', err, client)
        targets.writer()?.emit('release', err, client)
      } else for (const reader of targets.readers()) reader.emit('release', err, client)
    },
    error: (err, client) => {
      targets.idleError(endpoint, err)
      // pg.Pool would crash a process with no 'error' listener; a failover must not. Read
      // connections' errors go to the pool itself when nobody listens on a reader. (Every surface
      // carries the pool's own listener, which must not count as somebody listening.)
      let delivered = false
      for (const surface of write ? [targets.pool, targets.writer()] : targets.readers()) {
        if (surface && hasOwnErrorListener(surface)) {
          surface.emit('error', err, client)
          delivered = true
        }
      }
      if (!delivered && !write && hasOwnErrorListener(targets.pool)) targets.pool.emit('error', err, client)
    },
  }
}
