import { rmSync } from 'node:fs'
import { rm } from 'node:fs/promises'
import { registerCleanup, unregisterCleanup } from './exit-cleanup.js'

/**
 * Base of the harnesses that own processes and one temp directory (the PostgreSQL cluster, the
 * Patroni and repmgr clusters, the Redis server). Only how processes die differs between them,
 * so that is all a subclass writes ({@link killAll}, {@link killAllSync}); the rest of the
 * lifecycle is here, once:
 *
 * - the exit cleanup is registered in the constructor, as soon as the directory exists, so that
 *   a start that fails half-way leaves nothing behind even if destroy() is never reached;
 * - {@link destroy} runs killAll(), then removes the directory, then forgets the exit cleanup;
 * - on process exit, SIGINT or SIGTERM, killAllSync() and the removal run synchronously instead,
 *   at most once, and a later destroy() then has nothing left to do.
 */
export abstract class TempHarness {
  /** Temp directory of this harness (data directories, configs, logs); destroy() deletes it. */
  readonly baseDir: string
  #destroyPromise: Promise<void> | undefined
  /** Set once a teardown has finished (destroy()) or started (exit handlers): never tear down twice. */
  #tornDown = false

  /** Takes ownership of `baseDir` (already created) and registers the exit cleanup for it. */
  protected constructor(baseDir: string) {
    this.baseDir = baseDir
    registerCleanup(this, () => this.#destroySync())
  }

  /**
   * Kill every process of the harness, then delete {@link baseDir}. Idempotent: every call returns
   * the promise of the first one.
   */
  destroy(): Promise<void> {
    this.#destroyPromise ??= this.#doDestroy()
    return this.#destroyPromise
  }

  /**
   * True from the moment destroy() is called (not only once it is done) or the exit cleanup ran:
   * operations refuse from then on rather than race the teardown or touch removed files.
   */
  protected get destroyed(): boolean {
    return this.#tornDown || this.#destroyPromise !== undefined
  }

  /**
   * Stop every process the harness started, in whatever order it needs; called once by destroy().
   * It must not throw for processes that are already gone. If it throws, destroy() rejects and
   * the directory and the exit cleanup stay, so the exit cleanup still gets a go at them.
   */
  protected abstract killAll(): Promise<void>

  /** Synchronous counterpart of {@link killAll} for the exit handlers (no awaiting there). */
  protected abstract killAllSync(): void

  async #doDestroy(): Promise<void> {
    if (this.#tornDown) return
    await this.killAll()
    await rm(this.baseDir, { recursive: true, force: true, maxRetries: 3 })
    this.#tornDown = true
    unregisterCleanup(this)
  }

  #destroySync(): void {
    if (this.#tornDown) return
    // Flag and unregister before killing, so that nothing that happens next (a throw, the 'exit'
    // handler after a signal's) runs this teardown twice.
    this.#tornDown = true
    unregisterCleanup(this)
    this.killAllSync()
    rmSync(this.baseDir, { recursive: true, force: true, maxRetries: 3 })
  }
}

/**
 * The harness's own record of a node (or Patroni member) that a caller passed either as the object
 * the harness handed out or by name. Callers get only the public interface, the harness needs its
 * internal object back, so an object is looked up by identity: a look-alike from another cluster
 * is refused rather than mistaken for ours. Throws `unknown <noun> "<name>" (<noun>s: ...)` so
 * that a typo shows the names there are.
 */
export function findNamed<T extends { readonly name: string }>(
  items: readonly T[],
  item: { readonly name: string } | string,
  noun: string,
): T {
  const found = typeof item === 'string' ? items.find((i) => i.name === item) : items.find((i) => i === item)
  if (found === undefined) {
    const name = typeof item === 'string' ? item : item.name
    throw new Error(`unknown ${noun} ${JSON.stringify(name)} (${noun}s: ${items.map((i) => i.name).join(', ')})`)
  }
  return found
}
