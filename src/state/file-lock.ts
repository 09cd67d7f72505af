import { randomBytes } from 'node:crypto'
import { promises as fs } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import type { Clock } from '../clock.js'
import { StateStoreError } from './state-store.js'

/** Options of {@link acquireFileLock}. */
export interface FileLockOptions {
  /** How long to wait for a lock held elsewhere before failing with 'timeout', in ms (on `clock`). */
  readonly timeoutMs: number
  /** A lock whose token is older than this (by its mtime, wall-clock) belongs to a dead or stuck process and is broken, in ms. */
  readonly staleMs: number
  /** Time source of the wait and its pauses. */
  readonly clock: Clock
}

/** Gives the lock back; never rejects, and never touches a lock taken by someone else since. */
export type ReleaseFileLock = () => Promise<void>

/**
 * Takes an exclusive lock between processes on one host, and breaks a stale one without a race.
 *
 * The lock is the directory `lockDir` holding one token file with a name unique to this
 * acquisition. It is taken by `rename(staging, lockDir)` of a private directory that already
 * holds the token: on Linux (and POSIX) rename(2) replaces `lockDir` only when it is missing or an
 * empty directory and fails with ENOTEMPTY/EEXIST otherwise, atomically. So a token enters
 * `lockDir` only while no other token is in it, and at most one process holds the lock.
 * A token leaves only by unlink(2) of its own unique name: by its owner (release), or by a
 * process that found that very token older than `staleMs` (its mtime is set before the rename and
 * never changed after). Unlinking a name resolves it in whatever `lockDir` is now, and no later
 * lock can hold that name, so two processes breaking the same stale lock both remove only it (one
 * of them gets ENOENT) and can never remove a fresh lock taken meanwhile — the race of "stat the
 * lock file, find it old, unlink the path" (which can delete the lock another breaker just took).
 * What remains is inherent to any staleness rule: a holder that stalls longer than `staleMs` loses
 * its lock (the store's critical section takes milliseconds; the default `staleMs` is 10 s).
 * The lock directory needs a local file system with POSIX rename semantics (not NFS).
 *
 * @throws StateStoreError 'timeout' after `timeoutMs`, 'unavailable' when the directory cannot be used.
 */
export async function acquireFileLock(lockDir: string, options: FileLockOptions): Promise<ReleaseFileLock> {
  const { timeoutMs, staleMs, clock } = options
  const tokenName = `token-${process.pid}-${randomBytes(8).toString('hex')}`
  // Beside lockDir: rename(2) works within one file system only.
  const staging = `${lockDir}.${tokenName}`
  const failed = (err: unknown): StateStoreError =>
    err instanceof StateStoreError ? err : new StateStoreError('unavailable', `cannot take the state file lock ${lockDir}: ${(err as Error).message}`, { cause: err })
  try {
    await fs.mkdir(staging, { mode: 0o700 })
    const token = path.join(staging, tokenName)
    // Who holds it, for a human reading a stuck lock; the lock's meaning is the file name alone.
    await fs.writeFile(token, `${JSON.stringify({ pid: process.pid, host: os.hostname() })}\n`, { mode: 0o600, flag: 'wx' })
    const deadline = clock.now() + timeoutMs
    for (let delay = 2; ; delay = Math.min(delay * 2, 50)) {
      // The lock's age starts now, not when this process began waiting.
      const now = new Date()
      await fs.utimes(token, now, now)
      if (await tryRename(staging, lockDir)) {
        const held = path.join(lockDir, tokenName)
        return async () => {
          await fs.unlink(held).catch(() => undefined)
          // Only an empty directory is removed: a lock taken since stays (rmdir fails with ENOTEMPTY).
          await fs.rmdir(lockDir).catch(() => undefined)
        }
      }
      const broke = await breakStale(lockDir, staleMs)
      if (clock.now() > deadline) throw new StateStoreError('timeout', `state file lock ${lockDir} stayed held elsewhere for ${timeoutMs} ms`)
      if (!broke) await new Promise<void>((resolve) => clock.setTimeout(resolve, delay))
    }
  } catch (err) {
    await fs.rm(staging, { recursive: true, force: true }).catch(() => undefined)
    throw failed(err)
  }
}

/** rename(staging, lockDir): true when it took the lock, false when another token is in it. */
async function tryRename(staging: string, lockDir: string): Promise<boolean> {
  try {
    await fs.rename(staging, lockDir)
    return true
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code
    if (code === 'ENOTEMPTY' || code === 'EEXIST') return false
    throw err
  }
}

/**
 * Unlinks every token in `lockDir` older than `staleMs`, by its own name. True when the lock may
 * be free now (a token was removed, or none was there), so the caller retries at once.
 */
async function breakStale(lockDir: string, staleMs: number): Promise<boolean> {
  let names: string[]
  try {
    names = await fs.readdir(lockDir)
  } catch {
    return true // gone (released) or replaced meanwhile: try again
  }
  let free = names.length === 0
  for (const name of names) {
    const file = path.join(lockDir, name)
    const stat = await fs.stat(file).catch(() => null)
    if (stat === null) {
      free = true // released meanwhile
      continue
    }
    // The token's mtime is wall-clock time (set by its owner on this host), not the pool's clock.
    if (Date.now() - stat.mtimeMs > staleMs) {
      // ENOENT: another process broke (or its owner released) this same token first.
      const removed = await fs.unlink(file).then(
        () => true,
        (err: NodeJS.ErrnoException) => err.code === 'ENOENT',
      )
      free ||= removed
    }
  }
  return free
}
