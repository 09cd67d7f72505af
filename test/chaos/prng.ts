/**
 * The chaos suite's only source of randomness for the schedule: mulberry32, a tiny seeded PRNG.
 * The same seed gives the same sequence on every machine, so a schedule replays exactly.
 */

/** mulberry32: 32-bit state, returns floats in [0, 1). */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0
  return () => {
    a = (a + 0x6d2b79f5) >>> 0
    let t = a
    t = Math.imul(t ^ (t >>> 15), t | 1)
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61)
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296
  }
}

/** One seeded stream of draws. */
export class Rng {
  readonly #next: () => number

  constructor(readonly seed: number) {
    this.#next = mulberry32(seed)
  }

  /** A float in [0, 1). */
  next(): number {
    return this.#next()
  }
}
