import type pg from 'pg'

/** Set on a client the pool cut: nothing it answers afterwards may be acknowledged. */
const CUT = Symbol('pg-failover-pool cut')
type Marked = { [CUT]?: true }

/**
 * Cuts `client` without waiting for the server (which may be frozen, or a proxy holding its
 * statement): its socket is destroyed, so whatever runs there fails at once. A client without a
 * socket of pg's (pg-native's, or any custom `Client`) is ended instead — and marked either way,
 * so a statement that still answers afterwards is reported as outcome-unknown, never acknowledged
 * (see {@link wasCut}).
 */
export function cutClient(client: pg.ClientBase): void {
  const marked = client as unknown as Marked
  if (marked[CUT]) return
  Object.defineProperty(client, CUT, { value: true, enumerable: false })
  const stream = (client as unknown as { connection?: { stream?: { destroy?: () => void } } }).connection?.stream
  if (typeof stream?.destroy === 'function') return stream.destroy()
  // No socket of pg's to destroy: end the session (pg-native closes its libpq connection).
  // A custom Client written to pg-pool's contract may have no end() at all: nothing more to close.
  const end = (client as unknown as { end?: () => Promise<void> | void }).end
  if (typeof end !== 'function') return
  const ending = end.call(client)
  if (ending && typeof ending.catch === 'function') ending.catch(() => undefined)
}

/** True once the pool cut `client` (see {@link cutClient}). */
export function wasCut(client: pg.ClientBase): boolean {
  return (client as unknown as Marked)[CUT] === true
}

/**
 * Holds `client` for the library's own use (a probe, a read-your-writes position, a replay wait,
 * a promotion hook): pg emits `'error'` on a client whose socket dies, and an `'error'` nobody
 * listens for crashes the process. Until the returned function is called, such an error goes to
 * `onError` (default: ignored — the statement in flight fails on its own and says so).
 */
export function holdClient(client: pg.ClientBase, onError: (err: Error) => void = ignore): () => void {
  client.on('error', onError)
  return () => client.removeListener('error', onError)
}

function ignore(): void {}
