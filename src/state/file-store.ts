import { type Clock, systemClock } from '../clock.js'
import { constants, promises as fs } from 'node:fs'
import path from 'node:path'
import { acquireFileLock } from './file-lock.js'
import { type CompareAndSetResult, type StateRecord, type StateStore, StateStoreError, type StateUpdate, asStateRecord } from './state-store.js'

/** Options of {@link FileStateStore}. */
export interface FileStateStoreOptions {
  /** How long to wait for another process's lock before failing a write, in ms. Default 2000. */
  lockTimeoutMs?: number
  /** A lock older than this is from a dead or stuck process and is broken, in ms. Default 10000. */
  staleLockMs?: number
  /** Time source for the lock wait and its retry pauses (tests inject a fake). Default: the real clock. */
  clock?: Clock
}

/**
 * Keeps the decision in a JSON file, so a restarted process starts on the node recorded there.
 * Writes are atomic (write a temporary file, fsync, rename, fsync the directory) with mode 0600;
 * compare-and-set holds an exclusive lock (the directory `<file>.lockdir`, see
 * {@link acquireFileLock}: a stale lock is broken without a race), so processes on one host can
 * share the file. A corrupted file is set aside (renamed `*.corrupt-<time>`, never deleted) and
 * reported: load() rejects with `StateStoreError('corrupt')`, compareAndSet() says so in its
 * result's `corrupt`; the pool's next decision replaces it. A deleted file, or an older copy put
 * back, is written over by the pool's next save or heal.
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
    const release = await acquireFileLock(`${this.#file}.lockdir`, { timeoutMs: this.#lockTimeoutMs, staleMs: this.#staleLockMs, clock: this.#clock })
    try {
      let current: StateRecord | null
      let corrupt: string | undefined
      try {
        current = await this.load()
      } catch (err) {
        if (!(err instanceof StateStoreError) || err.failure !== 'corrupt') throw err
        // Keep the damaged file for a human; the new decision replaces it.
        const aside = `${this.#file}.corrupt-${Date.now()}`
        await fs.rename(this.#file, aside).catch(() => undefined)
        corrupt = `${err.message}; set aside as ${aside}`
        current = null
      }
      const extra = corrupt === undefined ? {} : { corrupt }
      if ((current?.version ?? null) !== expectedVersion) return { ok: false, current, ...extra }
      const record: StateRecord = { ...update, version: (current?.version ?? 0) + 1 }
      await this.#writeAtomically(JSON.stringify(record, null, 2) + '\n')
      return { ok: true, record, ...extra }
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
}
