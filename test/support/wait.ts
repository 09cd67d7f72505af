/**
 * Waiting, the one way the tests and harnesses do it.
 *
 * - `nextEvent` when something emits an event: nothing polls, nothing sleeps.
 * - `expect.poll(...)` (vitest) inside a test when the wait is itself an assertion.
 * - `waitUntil` where there is no event and no assertion to make (harness code, which must not
 *   import vitest: scripts/ and bench/ use it too), or where a failed wait needs diagnostics.
 * - `sleep` only where time really has to pass (a rate, a timer under test, "give a forbidden
 *   replay every chance to happen"); every caller says why.
 *
 * No vitest import here: test/support/cluster.ts and redis.ts use this module outside vitest.
 */
import type { EventEmitter } from 'node:events'
import type { FailoverPool, FailoverPoolEvents } from '../../src/index.js'

/** Resolves after `ms` milliseconds (at once for `ms` <= 0). */
export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, Math.max(0, ms)))
}

export interface WaitUntilOptions {
  /** What is awaited, for the timeout message: "node1 to accept connections". */
  what: string
  /** Give up after this many ms (default 10 000). `fn` is always tried once more at the deadline. */
  timeout?: number
  /** Pause between attempts in ms (default 20). */
  interval?: number
  /** Extra text for the timeout message (a log tail, a status snapshot). */
  diagnostics?: () => string | Promise<string>
}

type Truthy<T> = Exclude<T, false | null | undefined | 0 | ''>

/** Thrown inside a {@link waitUntil} callback to give up at once (e.g. the awaited process died). */
export class GiveUp extends Error {}

/**
 * Calls `fn` until it returns a truthy value, and returns that value. A throw counts as "not yet"
 * (a server that is still starting refuses connections), except {@link GiveUp}, which ends the
 * wait at once with "Gave up waiting for <what>"; the last error is reported. After
 * `timeout` ms it rejects with "Timed out after <timeout> ms waiting for <what>", the number of
 * attempts, the last value or error and the diagnostics.
 */
export async function waitUntil<T>(fn: () => T | Promise<T>, options: WaitUntilOptions): Promise<Truthy<T>> {
  const { what, timeout = 10_000, interval = 20, diagnostics } = options
  const started = performance.now()
  let attempts = 0
  let last: { value: unknown } | { error: unknown } = { value: undefined }
  for (;;) {
    attempts++
    try {
      const value = await fn()
      if (value) return value as Truthy<T>
      last = { value }
    } catch (error) {
      last = { error }
      if (error instanceof GiveUp) break
    }
    if (performance.now() - started >= timeout) break
    await sleep(interval)
  }
  let message =
    'error' in last && last.error instanceof GiveUp
      ? `Gave up waiting for ${what} (${attempts} attempts)`
      : `Timed out after ${timeout} ms waiting for ${what} (${attempts} attempts, every ${interval} ms)`
  message += 'error' in last ? `\nlast error: ${last.error instanceof Error ? last.error.message : String(last.error)}` : `\nlast value: ${describe(last.value)}`
  if (diagnostics) {
    try {
      message += `\n${await diagnostics()}`
    } catch (err) {
      message += `\n(diagnostics failed: ${String(err)})`
    }
  }
  throw new Error(message)
}

function describe(value: unknown): string {
  try {
    return JSON.stringify(value) ?? String(value)
  } catch {
    return String(value)
  }
}

export interface NextEventOptions<A extends unknown[]> {
  /** Reject after this many ms (default 30 000, below vitest's 60 s test timeout so the message is ours). */
  timeout?: number
  /** Only an event whose arguments pass this resolves the wait; others are skipped. */
  match?: (...args: A) => boolean
}

/** Anything with on/off for string events (EventEmitter, pg.Pool, FailoverPool, pool.reader). */
export interface EventSource {
  on(...args: any[]): unknown
  off(...args: any[]): unknown
}

/**
 * The first argument of the next `event` that `emitter` emits (and that `match` accepts). Start
 * waiting *before* causing the event. Rejects with "no '<event>' event within <timeout> ms";
 * that rejection is never reported as unhandled when a failing test never awaits the promise,
 * and the timer does not keep the process alive.
 */
export function nextEvent<E extends keyof FailoverPoolEvents>(
  emitter: FailoverPool,
  event: E,
  options?: NextEventOptions<Parameters<FailoverPoolEvents[E]>>,
): Promise<Parameters<FailoverPoolEvents[E]>[0]>
export function nextEvent<T = unknown>(emitter: EventSource, event: string, options?: NextEventOptions<any[]>): Promise<T>
export function nextEvent(emitter: EventSource, event: string, options: NextEventOptions<any[]> = {}): Promise<unknown> {
  const { timeout = 30_000, match } = options
  const source = emitter as EventEmitter
  const waiting = new Promise<unknown>((resolve, reject) => {
    const listener = (...args: unknown[]): void => {
      if (match && !match(...args)) return
      clearTimeout(timer)
      source.off(event, listener)
      resolve(args[0])
    }
    const timer = setTimeout(() => {
      source.off(event, listener)
      reject(new Error(`no '${event}' event within ${timeout} ms`))
    }, timeout)
    timer.unref()
    source.on(event, listener)
  })
  // Handled here so that a test failing before it awaits does not also leave an unhandled rejection behind.
  waiting.catch(() => undefined)
  return waiting
}
