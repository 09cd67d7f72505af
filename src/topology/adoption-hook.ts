import type { Endpoint } from '../endpoint/endpoint.js'
import { asError, maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import type { EndpointHealth } from './endpoint-health.js'
import { type PromotionContext, runPromoteHook } from './promotion-hook.js'
import type { WriterState } from './writer-state.js'

/** What the pool does after a promotion hook ran for a node it was adopting. */
export type HookVerdict =
  /** The hook succeeded, or failed with `onPromoteFailure: 'proceed'`: the node takes writes. */
  | 'adopt'
  /** The hook failed: the node does not take writes (and is refused from now on under `'refuse'`). */
  | 'failed'
  /** The pool ended, paused or chose another node while the hook ran: nothing more to do here. */
  | 'moved-on'

/** The part of the coordinator an adoption behind a hook reads, marks and tells. */
interface AdoptingHost {
  readonly state: WriterState
  health(endpoint: Endpoint): EndpointHealth
  transition(change: () => void): void
  announce(event: string, payload: () => unknown): void
  /** Where `end()` finds how to abort the hook running now (null: none runs). */
  hookRunning(abort: (() => void) | null): void
}

/**
 * Runs `onPromote` on `next`, which `host` is adopting (state `adopting` with `next` as the
 * candidate), bounded by `onPromoteTimeoutMs`, and says what to do next. The elector and switchTo
 * share it so that both check, the same way, that the pool did not move on while the hook ran, and
 * both refuse the node under `onPromoteFailure: 'refuse'`. Never rejects; `end()` aborts it.
 */
export async function runAdoptionHook(host: AdoptingHost, next: Endpoint, options: ResolvedOptions, context: PromotionContext): Promise<HookVerdict> {
  const run = runPromoteHook(next.write, options.onPromote!, context, options.onPromoteTimeoutMs, options.clock)
  host.hookRunning(run.abort)
  let failure: Error | null = null
  try {
    await run.done
    topologyLog('promotion hook done on %s', next.name)
  } catch (err) {
    failure = asError(err)
  } finally {
    host.hookRunning(null)
  }
  const now = host.state
  if (now.kind !== 'adopting' || now.candidate !== next) return 'moved-on'
  if (failure === null) return 'adopt'
  const decision = options.onPromoteFailure
  const error = failure
  topologyLog('promotion hook failed on %s (%s): %s', next.name, decision, maskPassword(error.message))
  host.transition(() => {
    if (decision === 'refuse') host.health(next).refusedByHook = true
    host.announce('promoteHookError', () => ({ endpoint: next.name, error, decision, at: new Date().toISOString() }))
  })
  return decision === 'proceed' ? 'adopt' : 'failed'
}
