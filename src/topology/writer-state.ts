import type { Endpoint } from '../endpoint/endpoint.js'
import type { Target } from '../surface/routing-host.js'

/** Why and since when the pool has had no primary to write to. */
export interface Loss {
  /** The primary the pool left (or last knew), or null when none was ever verified. */
  readonly from: string | null
  readonly reason: string
  /** Clock ms of the first sign of trouble; the failover event's duration counts from here. */
  readonly since: number
}

/**
 * Where writes go, as one discriminated union (the only record of it). Waiting requests are
 * settled from it by one function, the coordinator's `settle()`.
 *
 * - `booting`: the state store is being read; requests wait.
 * - `discovering`: no verified primary; requests wait while rounds probe every endpoint.
 *   `suspect` is the primary the pool stopped writing to on a failure report, not yet proven
 *   gone: if it verifies again nothing is cut. `refusal` is set when the last round found every
 *   endpoint refusing us for a configuration reason: waiting cannot help, requests fail with it.
 * - `adopting`: `onPromote` runs on `candidate`; writes wait for it.
 * - `verified`: `primary` takes writes; `target` is the shared hot-path target of this generation.
 * - `paused`: `pauseWrites()`; writes wait. `primary` is the node that will be re-verified first.
 * - `split-brain`: several writable nodes and no evidence to choose: writes are refused.
 * - `ended`: `end()` was called.
 */
export type WriterState =
  | { readonly kind: 'booting' }
  | { readonly kind: 'discovering'; readonly loss: Loss | null; readonly suspect: Endpoint | null; readonly refusal: Error | null }
  | { readonly kind: 'adopting'; readonly candidate: Endpoint; readonly loss: Loss | null }
  | { readonly kind: 'verified'; readonly primary: Endpoint; readonly target: Target }
  | { readonly kind: 'paused'; readonly primary: Endpoint | null; readonly loss: Loss | null }
  | { readonly kind: 'split-brain'; readonly candidates: readonly string[]; readonly reason: string; readonly loss: Loss | null }
  | { readonly kind: 'ended' }

/** The node writes go to now, or would go to after a pause: what `status().primary` shows. */
export function shownPrimary(state: WriterState): Endpoint | null {
  if (state.kind === 'verified') return state.primary
  if (state.kind === 'paused') return state.primary
  return null
}

/**
 * The node the pool's writes go to, or were going to until a doubt: the shown primary, or the
 * suspect being re-verified. Leaving the writer means cutting this node.
 */
export function writingTo(state: WriterState): Endpoint | null {
  return shownPrimary(state) ?? (state.kind === 'discovering' ? state.suspect : null)
}

/** The loss the state carries (for the failover event's reason and duration), if any. */
export function lossOf(state: WriterState): Loss | null {
  return 'loss' in state ? state.loss : null
}
