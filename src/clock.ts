/**
 * Time as the pool sees it. Injected so unit tests move time instead of sleeping; the default is
 * the real clock. Every timer the pool starts goes through here and is `unref()`ed, so a pool never
 * keeps a process alive on its own.
 */
export interface Clock {
  /** Milliseconds since an arbitrary fixed origin; only differences are meaningful. */
  now(): number
  /** Runs `fn` after `ms` milliseconds; the returned handle does not keep the process alive. */
  setTimeout(fn: () => void, ms: number): TimerHandle
  /** Cancels a timer made by {@link Clock.setTimeout}; unknown or fired handles are ignored. */
  clearTimeout(handle: TimerHandle): void
  /**
   * Optional source of randomness for jitter (timers, breaker waits), a float in [0, 1); default
   * `Math.random`. A deterministic simulator supplies a seeded one so a schedule replays exactly.
   */
  random?(): number
}

/** Opaque timer handle returned by {@link Clock.setTimeout}. */
export type TimerHandle = { readonly __timer: unique symbol } | object

/** The real clock: `performance.now()` and unref'd Node timers. */
export const systemClock: Clock = {
  now: () => performance.now(),
  setTimeout(fn, ms) {
    const t = setTimeout(fn, ms)
    t.unref()
    return t
  },
  clearTimeout(handle) {
    clearTimeout(handle as NodeJS.Timeout)
  },
}

/**
 * `ms` scaled by a random factor in [1 - spread, 1 + spread], so a fleet does not act in lockstep.
 * `random` is the clock's own source where it has one (see {@link Clock.random}).
 */
export function jitter(ms: number, spread = 0.2, random: () => number = Math.random): number {
  return Math.max(0, ms * (1 - spread + random() * 2 * spread))
}

/** The clock's source of randomness, or `Math.random`. */
export function randomOf(clock: Clock): () => number {
  return clock.random ? () => clock.random!() : Math.random
}

/**
 * `work`'s outcome, or a rejection with `timeoutError()` once `ms` milliseconds have passed on
 * `clock` (default the real one), whichever comes first. The timer is cleared either way, and a
 * late rejection of `work` (a frozen server thaws) is never unhandled.
 */
export async function withDeadline<T>(work: Promise<T>, ms: number, timeoutError: () => Error, clock: Clock = systemClock): Promise<T> {
  work.catch(() => undefined)
  let timer: TimerHandle | undefined
  const deadline = new Promise<never>((_, reject) => {
    timer = clock.setTimeout(() => reject(timeoutError()), ms)
  })
  try {
    return await Promise.race([work, deadline])
  } finally {
    clock.clearTimeout(timer!)
  }
}
