import { type Clock, systemClock } from '../clock.js'
import { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { type CompareAndSetResult, type StateRecord, type StateStore, StateStoreError, type StateUpdate, asStateRecord } from './state-store.js'

/** Options of {@link FileStateStore}. */
export interface FileStateStoreOptions {
  /** How long to wait for another process's lock before failing a write, in ms. Default 2000. */
  lockTimeoutMs?: number
  /** A lock file older than this is from a dead process and is broken, in ms. Default 10000. */
  staleLockMs?: number
  /** Time source for the lock wait and its retry pauses (tests inject a fake). Default: the real clock. */
  clock?: Clock
}

/**
 * Keeps the decision in a JSON file, so a restarted process starts on the node recorded there.
 * Writes are atomic (write a temporary file, fsync, rename, fsync the directory) with mode 0600;
 * compare-and-set holds an exclusive lock file, so processes on one host can share the file.
 * A corrupted file is set aside (renamed `*.corrupt-<time>`, never deleted) and reported as a
 * `StateStoreError('corrupt')`; the pool then carries on from its own probes.
 */
export class FileStateStore implements StateStore {
  readonly #file: string
  readonly #lockTimeoutMs: number
  readonly #staleLockMs: number
  readonly #clock: Clock

  /** @param file path of the state file (created on the first write). */
  constructor(file: string, options: FileStateStoreOptions = {}) {
    this.#file = path.resolve(file)
    this.#lockTimeoutMs = options.lockTimeoutMs ?? 2_000
    this.#staleLockMs = options.staleLockMs ?? 10_000
    this.#clock = options.clock ?? systemClock
  }

  /** The file's path. */
  get file(): string {
    return this.#file
  }

  async load(): Promise<StateRecord | null> {
    let text: string
    try {
      text = await fs.readFile(this.#file, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return null
      throw new StateStoreError('unavailable', `cannot read state file ${this.#file}: ${(err as Error).message}`, { cause: err })
    }
    let parsed: unknown
    try {
      parsed = JSON.parse(text)
    } catch (err) {
      throw new StateStoreError('corrupt', `state file ${this.#file} is not valid JSON`, { cause: err })
    }
    const record = asStateRecord(parsed)
    if (!record) throw new StateStoreError('corrupt', `state file ${this.#file} does not hold a valid state record`)
    return record
  }

  async compareAndSet(expectedVersion: number | null, update: StateUpdate): Promise<CompareAndSetResult> {
    const release = await this.#lock()
    try {
      let current: StateRecord | null
      try {
        current = await this.load()
      } catch (err) {
        if (!(err instanceof StateStoreError) || err.failure !== 'corrupt') throw err
        // Keep the damaged file for a human; the new decision replaces it.
        await fs.rename(this.#file, `${this.#file}.corrupt-${Date.now()}`).catch(() => undefined)
        current = null
      }
      if ((current?.version ?? null) !== expectedVersion) return { ok: false, current }
      const record: StateRecord = { ...update, version: (current?.version ?? 0) + 1 }
      await this.#writeAtomically(JSON.stringify(record, null, 2) + '\n')
      return { ok: true, record }
    } finally {
      await release()
    }
  }

  async #writeAtomically(text: string): Promise<void> {
    const dir = path.dirname(this.#file)
    const tmp = `${this.#file}.tmp-${process.pid}-${Date.now()}`
    try {
      const handle = await fs.open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
      try {
        await handle.writeFile(text, 'utf8')
        await handle.sync()
      } finally {
        await handle.close()
      }
      await fs.rename(tmp, this.#file)
      const dirHandle = await fs.open(dir, 'r')
      try {
        await dirHandle.sync()
      } finally {
        await dirHandle.close()
      }
    } catch (err) {
      await fs.unlink(tmp).catch(() => undefined)
      throw new StateStoreError('unavailable', `cannot write state file ${this.#file}: ${(err as Error).message}`, { cause: err })
    }
  }

  async #lock(): Promise<() => Promise<void>> {
    const lockFile = `${this.#file}.lock`
    const deadline = this.#clock.now() + this.#lockTimeoutMs
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      try {
        const handle = await fs.open(lockFile, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, 0o600)
        await handle.writeFile(String(process.pid))
        await handle.close()
        return () => fs.unlink(lockFile).catch(() => undefined)
      } catch (err) {
        const code = (err as NodeJS.ErrnoException).code
        if (code !== 'EEXIST') throw new StateStoreError('unavailable', `cannot lock state file ${this.#file}: ${(err as Error).message}`, { cause: err })
        const stat = await fs.stat(lockFile).catch(() => null)
        // The lock file's age is wall-clock time (its mtime), not the pool's clock.
        if (stat && Date.now() - stat.mtimeMs > this.#staleLockMs) {
          await fs.unlink(lockFile).catch(() => undefined)
          continue
        }
        if (this.#clock.now() > deadline) throw new StateStoreError('timeout', `state file ${this.#file} stayed locked for ${this.#lockTimeoutMs} ms`)
        await new Promise<void>((r) => this.#clock.setTimeout(r, delay))
      }
    }
  }
}
