/**
 * One time base for the whole suite: wall-clock milliseconds with sub-millisecond resolution
 * (performance.timeOrigin + performance.now()), comparable with the servers' clock_timestamp()
 * because every node runs on this machine.
 */
import { sleep } from '../support/wait.js'

/** Wall-clock ms since the epoch, monotonic within this process. */
export function now(): number {
  return performance.timeOrigin + performance.now()
}

// The tests' one sleep (test/support/wait.ts), re-exported so the chaos modules keep one import.
export { sleep }

/** Rejects with `what` after `ms` unless `promise` settles first; the timer never outlives it. */
export function within<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms)
  })
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer))
}

/** Polls `fn` every `intervalMs` until it returns true; false after `timeoutMs`. */
export async function waitUntil(fn: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 20): Promise<boolean> {
  const deadline = now() + timeoutMs
  for (;;) {
    try {
      if (await fn()) return true
    } catch {
      // not yet
    }
    if (now() >= deadline) return false
    await sleep(intervalMs)
  }
}
