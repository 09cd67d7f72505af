import type { Endpoint } from '../endpoint/endpoint.js'
import { asError, maskPassword } from '../errors.js'
import type { EventSink } from '../events.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import { type PromotionContext, runPromoteHook } from './promotion-hook.js'

/**
 * Runs `onPromote` on a node about to take writes and reports a failure (`promoteHookError`).
 * Resolves true when the node may take writes: the hook succeeded, or it failed and
 * `onPromoteFailure` is `'proceed'`. Never rejects.
 */
export async function adoptionHook(next: Endpoint, options: ResolvedOptions, events: EventSink, context: PromotionContext): Promise<boolean> {
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
