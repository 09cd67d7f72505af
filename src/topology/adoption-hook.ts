import type { Endpoint } from '../endpoint/endpoint.js'
import { asError, maskPassword } from '../errors.js'
import type { EventSink } from '../events.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import { type PromotionContext, runPromoteHook } from './promotion-hook.js'
import type { Standing } from './standing.js'
import type { WriterState } from './writer-state.js'

/** What the pool does after a promotion hook ran for a node it was adopting. */
export type HookVerdict =
  /** The hook succeeded, or failed with `onPromoteFailure: 'proceed'`: the node takes writes. */
  | 'adopt'
  /** The hook failed: the node does not take writes (and is refused from now on under `'refuse'`). */
  | 'failed'
  /** The pool ended, paused or chose another node while the hook ran: nothing more to do here. */
  | 'moved-on'

/** The part of the coordinator an adoption behind a hook reads and marks. */
interface AdoptingHost {
  readonly state: WriterState
  standing(endpoint: Endpoint): Standing
}

/**
 * Runs `onPromote` on `next`, which `host` is adopting (state `adopting` with `next` as the
 * candidate), and says what to do next. The elector and switchTo share it so that both check, the
 * same way, that the pool did not move on while the hook ran, and both refuse the node under
 * `onPromoteFailure: 'refuse'`. Never rejects.
 */
export async function runAdoptionHook(host: AdoptingHost, next: Endpoint, options: ResolvedOptions, events: EventSink, context: PromotionContext): Promise<HookVerdict> {
  const ok = await adoptionHook(next, options, events, context)
  const now = host.state
  if (now.kind !== 'adopting' || now.candidate !== next) return 'moved-on'
  if (ok) return 'adopt'
  if (options.onPromoteFailure === 'refuse') host.standing(next).refusedByHook = true
  return 'failed'
}

/**
 * Runs `onPromote` on a node about to take writes and reports a failure (`promoteHookError`).
 * Resolves true when the node may take writes: the hook succeeded, or it failed and
 * `onPromoteFailure` is `'proceed'`. Never rejects.
 */
async function adoptionHook(next: Endpoint, options: ResolvedOptions, events: EventSink, context: PromotionContext): Promise<boolean> {
  try {
    await runPromoteHook(next.write, options.onPromote!, context)
    topologyLog('promotion hook done on %s', next.name)
    return true
  } catch (err) {
    const error = asError(err)
    const decision = options.onPromoteFailure
    topologyLog('promotion hook failed on %s (%s): %s', next.name, decision, maskPassword(error.message))
    if (events.listenerCount('promoteHookError') > 0) events.emit('promoteHookError', { endpoint: next.name, error, decision, at: new Date().toISOString() })
    return decision === 'proceed'
  }
}
