/**
 * FileStateStore heals and its lock cannot race: a deleted state file or an older copy put back is
 * written over with the pool's decision (next save, or heal), a corrupt one is reported and
 * replaced; a stale lock is broken by its token's unique name only, so neither a second breaker
 * nor a holder whose lock was broken can remove a lock taken since. (The race between two real
 * processes is in test/integration/state.test.ts.)
 */
import { copyFileSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, utimesSync, writeFileSync } from 'node:fs'
import os from 'node:os'
import path from 'node:path'
import { afterEach, describe, expect, it } from 'vitest'
import { systemClock } from '../../src/clock.js'
import { FileStateStore } from '../../src/state/file-store.js'
import { acquireFileLock } from '../../src/state/file-lock.js'
import type { StateRecord } from '../../src/state/state-store.js'
import { type Decision, StateSync } from '../../src/state/state-sync.js'

const dirs: string[] = []
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true })
})

function tempFile(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'pgfp-file-heal-'))
  dirs.push(dir)
  return path.join(dir, 'state.json')
}

function decision(primary: string, epoch: number): Decision {
  return { primary, epoch, timeline: epoch, systemId: 'S1', reason: `test ${primary}` }
}

function syncOver(file: string) {
  const errors: unknown[] = []
  const superseded: StateRecord[] = []
  const sync = new StateSync(new FileStateStore(file), systemClock, 2_000, (event, payload) => {
    if (event === 'stateStoreError') errors.push(payload())
  })
  return {
    sync,
    errors,
    superseded,
    async persist(d: Decision) {
      sync.persist(d, (r) => void superseded.push(r))
      await sync.settled()
    },
    async heal(d: Decision) {
      sync.heal(d)
      await sync.settled()
    },
  }
}

const onDisk = (file: string) => JSON.parse(readFileSync(file, 'utf8')) as StateRecord

describe('FileStateStore heals', () => {
  it('a deleted file: the next failover is written, and so is the decision by heal()', async () => {
    const file = tempFile()
    const t = syncOver(file)
    await t.persist(decision('a', 1))
    rmSync(file)
    await t.persist(decision('b', 2))
    expect(onDisk(file)).toMatchObject({ primary: 'b', epoch: 2, version: 1 })
    rmSync(file)
    await t.heal(decision('b', 2))
    expect(onDisk(file)).toMatchObject({ primary: 'b', epoch: 2 })
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
    expect(t.errors).toEqual([])
  })

  it('an older copy put back: written over by the next failover and by heal()', async () => {
    const file = tempFile()
    const t = syncOver(file)
    await t.persist(decision('a', 1))
    copyFileSync(file, `${file}.backup`)
    await t.persist(decision('b', 2))
    copyFileSync(`${file}.backup`, file)
    await t.heal(decision('b', 2))
    expect(onDisk(file)).toMatchObject({ primary: 'b', epoch: 2, version: 2 })
    copyFileSync(`${file}.backup`, file)
    await t.persist(decision('c', 3))
    expect(onDisk(file)).toMatchObject({ primary: 'c', epoch: 3, version: 2 })
    expect(t.superseded).toEqual([])
    expect(t.sync.health.ok).toBe(true)
  })

  it('a file corrupted while the pool runs: reported as corrupt, set aside, and the decision written', async () => {
    const file = tempFile()
    const t = syncOver(file)
    await t.persist(decision('a', 1))
    writeFileSync(file, '{ half a record', { mode: 0o600 })
    await t.persist(decision('b', 2))
    expect(onDisk(file)).toMatchObject({ primary: 'b', epoch: 2 })
    expect(t.errors).toEqual([expect.objectContaining({ operation: 'save', failure: 'corrupt', message: expect.stringContaining('set aside as') })])
    const aside = readdirSync(path.dirname(file)).filter((f) => f.includes('.corrupt-'))
    expect(aside.map((f) => readFileSync(path.join(path.dirname(file), f), 'utf8'))).toEqual(['{ half a record'])
    // Found by a heal's read instead: reported as a load, replaced just the same.
    writeFileSync(file, 'garbage', { mode: 0o600 })
    await t.heal(decision('b', 2))
    expect(onDisk(file)).toMatchObject({ primary: 'b', epoch: 2 })
    expect(t.errors.at(-1)).toMatchObject({ operation: 'load', failure: 'corrupt' })
    expect(t.sync.health).toMatchObject({ ok: true, degraded: false })
  })
})

describe('the state file lock', () => {
  const options = { timeoutMs: 2_000, staleMs: 1_000, clock: systemClock }

  /** Leaves a lock as a process that died holding it long ago would. */
  function staleLock(lockDir: string, token = 'token-999-dead'): string {
    mkdirSync(lockDir)
    const file = path.join(lockDir, token)
    writeFileSync(file, '{"pid":999}')
    const old = new Date(Date.now() - 60_000)
    utimesSync(file, old, old)
    return file
  }

  it('a stale lock is broken at once and taken; release leaves nothing behind', async () => {
    const lockDir = `${tempFile()}.lockdir`
    const dead = staleLock(lockDir)
    const started = performance.now()
    const release = await acquireFileLock(lockDir, options)
    expect(performance.now() - started).toBeLessThan(500)
    expect(existsSync(dead)).toBe(false)
    expect(readdirSync(lockDir)).toHaveLength(1)
    await release()
    expect(existsSync(lockDir)).toBe(false)
    expect(readdirSync(path.dirname(lockDir))).toEqual([])
  })

  it('a holder whose lock was broken as stale cannot remove the lock taken since', async () => {
    const lockDir = `${tempFile()}.lockdir`
    const releaseSlow = await acquireFileLock(lockDir, options)
    // The slow holder stalls past staleMs: its token looks stale to everyone else.
    const [token] = readdirSync(lockDir)
    const old = new Date(Date.now() - 60_000)
    utimesSync(path.join(lockDir, token!), old, old)
    const releaseNew = await acquireFileLock(lockDir, options)
    const [fresh] = readdirSync(lockDir)
    expect(fresh).not.toBe(token)
    await releaseSlow() // late: must not touch the new holder's lock
    expect(readdirSync(lockDir)).toEqual([fresh])
    let third = false
    const waiting = acquireFileLock(lockDir, { ...options, timeoutMs: 300 }).then((r) => ((third = true), r))
    await expect(waiting).rejects.toMatchObject({ failure: 'timeout' })
    expect(third).toBe(false)
    await releaseNew()
  })

  it('many acquirers racing over stale locks in one process: never two holders at once', async () => {
    const lockDir = `${tempFile()}.lockdir`
    let holders = 0
    let most = 0
    let rounds = 0
    const worker = async (id: number): Promise<void> => {
      for (let i = 0; i < 40; i++) {
        const release = await acquireFileLock(lockDir, options)
        holders++
        most = Math.max(most, holders)
        await new Promise((r) => setImmediate(r))
        holders--
        rounds++
        // Every third round the holder "dies": its lock is left behind, old, for the others to break.
        if ((i + id) % 3 === 0) {
          const old = new Date(Date.now() - 60_000)
          for (const name of readdirSync(lockDir)) utimesSync(path.join(lockDir, name), old, old)
        } else await release()
      }
    }
    await Promise.all([0, 1, 2, 3].map(worker))
    expect(rounds).toBe(160)
    expect(most).toBe(1)
  })
})
