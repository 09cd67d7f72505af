/**
 * RedisStateStore against a real redis-server (test/support/redis.ts): compare-and-set atomicity,
 * watching through pub/sub and through polling, corrupt values, and a store that is down, frozen
 * and back. Tests run in order and share one server; the outage tests come last.
 */
import { spawn } from 'node:child_process'
import path from 'node:path'
import { fileURLToPath, pathToFileURL } from 'node:url'
import { inspect } from 'node:util'
import { Redis, type RedisOptions } from 'ioredis'
import { beforeAll, describe, expect, it } from 'vitest'
import type { RedisStateStoreOptions } from '../../src/advanced.js'
import type { CompareAndSetResult, StateUpdate } from '../../src/advanced.js'
import { RedisStateStore, type StateRecord, StateStoreError } from '../../src/index.js'
import { systemClock } from '../../src/clock.js'
import { StateSync } from '../../src/state/state-sync.js'
import { useResources } from '../support/pools.js'
import { type RedisServer, startRedis } from '../support/redis.js'
import { sleep, waitUntil } from '../support/wait.js'

const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..')
const COMMAND_TIMEOUT_MS = 500
/** Allowed beyond a deadline: timer latency on a loaded 2-core CI machine. */
const SLACK_MS = 400

let server: RedisServer
/** The server, clients and stores shared by the file, torn down after the last test. */
const shared = useResources('all')
/** What one test starts for itself. */
const res = useResources()
let keyCounter = 0

/** A fresh key per test, so tests never see each other's records. */
function freshKey(): string {
  return `test:${process.pid}:${++keyCounter}`
}

/** A connected client that fails fast while Redis is down and reconnects quickly. */
async function connect(options: RedisOptions = {}, url = server.url): Promise<Redis> {
  const client = new Redis(url, {
    lazyConnect: true,
    maxRetriesPerRequest: 0,
    enableOfflineQueue: false,
    connectTimeout: 1_000,
    retryStrategy: () => 50,
    ...options,
  })
  client.on('error', () => undefined)
  shared.defer(() => client.disconnect())
  await client.connect()
  return client
}

function store(client: Redis, options: Omit<RedisStateStoreOptions, 'client'>): RedisStateStore {
  return shared.track(new RedisStateStore({ client, commandTimeoutMs: COMMAND_TIMEOUT_MS, ...options }))
}

function update(primary: string, epoch = 1): StateUpdate {
  return { primary, systemId: '7312345678901234567', timeline: epoch, epoch, updatedAt: new Date().toISOString(), reason: `test ${primary}` }
}

/** Records a watch delivers, with a way to wait for the next one. */
function collect(s: RedisStateStore): { records: StateRecord[]; next(timeoutMs: number): Promise<{ record: StateRecord; ms: number }>; stop(): void } {
  const records: StateRecord[] = []
  let waiter: ((record: StateRecord) => void) | null = null
  const stop = s.watch((record) => {
    records.push(record)
    waiter?.(record)
  })
  return {
    records,
    stop,
    next(timeoutMs) {
      const started = performance.now()
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          waiter = null
          reject(new Error(`no record within ${timeoutMs} ms`))
        }, timeoutMs)
        waiter = (record) => {
          clearTimeout(timer)
          waiter = null
          resolve({ record, ms: performance.now() - started })
        }
      })
    },
  }
}

/** Waits until the server counts `count` subscribers on `channel` (so a publish is not missed). */
async function untilSubscribers(admin: Redis, channel: string, count: number, timeout = 3_000): Promise<void> {
  const subscribers = async (): Promise<number> => Number(((await admin.call('PUBSUB', 'NUMSUB', channel)) as [string, number])[1])
  await waitUntil(async () => (await subscribers()) === count, {
    what: `${count} subscribers on ${channel}`,
    timeout,
    interval: 10,
    diagnostics: async () => `subscribers now: ${await subscribers()}`,
  })
}

/** The StateStoreError an operation rejects with, and how long that took. */
async function failureOf(operation: () => Promise<unknown>): Promise<{ error: StateStoreError; ms: number }> {
  const started = performance.now()
  try {
    await operation()
  } catch (err) {
    expect(err).toBeInstanceOf(StateStoreError)
    return { error: err as StateStoreError, ms: performance.now() - started }
  }
  throw new Error('expected the operation to fail')
}

beforeAll(async () => {
  server = shared.track(await startRedis())
})

describe('RedisStateStore', () => {
  it('a store made with a client still connecting (enableOfflineQueue: false, as an app starts) waits for it instead of losing the stored record', async () => {
    const key = freshKey()
    const writer = store(await connect(), { key })
    await writer.compareAndSet(null, update('node1'))
    // Made and used at once, as an app does at startup: the first command is sent before the
    // connection is ready, which ioredis refuses at once without an offline queue.
    const starting = new Redis(server.url, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 50 })
    starting.on('error', () => undefined)
    shared.defer(() => starting.disconnect())
    expect(starting.status).not.toBe('ready')
    expect(await store(starting, { key }).load()).toMatchObject({ primary: 'node1', version: 1 })
  })

  it('load() of a key that was never written is null', async () => {
    const s = store(await connect(), { key: freshKey() })
    expect(await s.load()).toBeNull()
  })

  it('uses the documented default key and channel', async () => {
    const s = new RedisStateStore({ client: await connect() })
    expect(s.key).toBe('pg-failover-pool:state')
    expect(s.channel).toBe('pg-failover-pool:state:changed')
  })

  it('compare-and-set from null creates version 1, stored as JSON', async () => {
    const client = await connect()
    const key = freshKey()
    const s = store(client, { key })
    const result = await s.compareAndSet(null, update('node0'))
    expect(result).toEqual({ ok: true, record: { ...update('node0'), updatedAt: expect.any(String), version: 1 } })
    expect(await s.load()).toEqual(result.ok ? result.record : null)
    expect(JSON.parse((await client.get(key)) ?? 'null')).toMatchObject({ version: 1, primary: 'node0' })
  })

  it('a stale compare-and-set fails and returns the current record', async () => {
    const s = store(await connect(), { key: freshKey() })
    await s.compareAndSet(null, update('node0'))
    const second = await s.compareAndSet(1, update('node1', 2))
    expect(second.ok).toBe(true)

    const stale = await s.compareAndSet(1, update('node2', 3))
    expect(stale).toEqual({ ok: false, current: expect.objectContaining({ version: 2, primary: 'node1', epoch: 2 }) })
    const fromNull = await s.compareAndSet(null, update('node2', 3))
    expect(fromNull).toEqual({ ok: false, current: expect.objectContaining({ version: 2, primary: 'node1' }) })
    expect((await s.load())?.primary).toBe('node1')
  })

  it('of two concurrent compare-and-sets from the same version exactly one wins (20 pairs)', async () => {
    const key = freshKey()
    const a = store(await connect(), { key })
    const b = store(await connect(), { key })
    let version: number | null = null
    for (let i = 0; i < 20; i++) {
      const [ra, rb]: CompareAndSetResult[] = await Promise.all([a.compareAndSet(version, update(`a${i}`, i + 1)), b.compareAndSet(version, update(`b${i}`, i + 1))])
      const winners: StateRecord[] = [ra!, rb!].flatMap((r) => (r.ok ? [r.record] : []))
      expect(winners).toHaveLength(1)
      const won: StateRecord = winners[0]!
      expect(ra!.ok ? rb : ra).toEqual({ ok: false, current: won })
      expect(won.version).toBe(i + 1)
      version = won.version
    }
    expect((await a.load())?.version).toBe(20)
  })

  it('another instance on another connection hears a change through pub/sub within 100 ms', async () => {
    const key = freshKey()
    const admin = await connect()
    const writer = store(await connect(), { key })
    // Polling once a minute: a delivery within 100 ms can only come from pub/sub.
    const reader = store(await connect(), { key, pollIntervalMs: 60_000 })
    const watch = collect(reader)
    await untilSubscribers(admin, reader.channel, 1)

    for (let i = 1; i <= 5; i++) {
      const next = watch.next(1_000)
      const written = await writer.compareAndSet(i === 1 ? null : i - 1, update(`node${i}`, i))
      const { record, ms } = await next
      expect(record).toEqual(written.ok ? written.record : null)
      expect(ms).toBeLessThan(100)
    }
    expect(watch.records.map((r) => r.version)).toEqual([1, 2, 3, 4, 5])
    watch.stop()
    await untilSubscribers(admin, reader.channel, 0)
  })

  it('a change that pub/sub missed (SET without PUBLISH) is found by polling within pollIntervalMs', async () => {
    const key = freshKey()
    const admin = await connect()
    const pollIntervalMs = 200
    const reader = store(await connect(), { key, pollIntervalMs })
    const watch = collect(reader)
    await untilSubscribers(admin, reader.channel, 1)

    const next = watch.next(pollIntervalMs + SLACK_MS)
    await admin.set(key, JSON.stringify({ ...update('sneaky', 4), version: 7 }))
    const { record, ms } = await next
    expect(record).toMatchObject({ version: 7, primary: 'sneaky' })
    expect(ms).toBeLessThan(pollIntervalMs + SLACK_MS)
    watch.stop()
  })

  it('watch first delivers the stored record, then only higher versions; garbage on the channel is ignored', async () => {
    const key = freshKey()
    const admin = await connect()
    const writer = store(await connect(), { key })
    await writer.compareAndSet(null, update('node0'))
    const reader = store(await connect(), { key, pollIntervalMs: 60_000 })
    const watch = collect(reader)
    expect((await watch.next(1_000)).record.version).toBe(1)
    await untilSubscribers(admin, reader.channel, 1)

    for (const garbage of ['not json', '{"version": 9}', JSON.stringify({ ...update('old'), version: 1 }), '[]', 'null']) {
      await admin.publish(reader.channel, garbage)
    }
    const next = watch.next(1_000)
    const written = await writer.compareAndSet(1, update('node1', 2))
    expect((await next).record).toEqual(written.ok ? written.record : null)
    // The same record published again is not news.
    await admin.publish(reader.channel, JSON.stringify(written.ok ? written.record : null))
    // Give a (wrong) second delivery time to arrive, then check there was none.
    await sleep(100)
    expect(watch.records.map((r) => `${r.version}:${r.primary}`)).toEqual(['1:node0', '2:node1'])

    // A throwing listener neither breaks the watch nor the other listeners.
    const stopThrowing = reader.watch(() => {
      throw new Error('listener bug')
    })
    const after = watch.next(1_000)
    await writer.compareAndSet(2, update('node2', 3))
    expect((await after).record.version).toBe(3)
    stopThrowing()
    watch.stop()
  })

  it('a corrupt value makes load() reject with failure "corrupt"; compare-and-set from null replaces it', async () => {
    const key = freshKey()
    const admin = await connect()
    const s = store(await connect(), { key })
    for (const garbage of ['garbage', '{"version": 1}', JSON.stringify({ ...update('x'), version: 0 }), JSON.stringify({ ...update(''), version: 1 }), '[1]']) {
      await admin.set(key, garbage)
      const { error } = await failureOf(() => s.load())
      expect(error.failure).toBe('corrupt')
      expect(error.code).toBe('PGFP_STATE_STORE')
      // What is stored is not a record: a pool expecting one is told "nothing valid stored".
      expect(await s.compareAndSet(3, update('node1'))).toEqual({ ok: false, current: null })
      expect(await admin.get(key)).toBe(garbage)
    }
    const replaced = await s.compareAndSet(null, update('node1'))
    expect(replaced.ok && replaced.record.version).toBe(1)
    expect((await s.load())?.primary).toBe('node1')
  })

  it('a key of another type is reported as corrupt and never overwritten', async () => {
    const key = freshKey()
    const admin = await connect()
    const s = store(await connect(), { key })
    await admin.hset(key, 'someone', 'else')
    expect((await failureOf(() => s.load())).error.failure).toBe('corrupt')
    expect((await failureOf(() => s.compareAndSet(null, update('node0')))).error.failure).toBe('corrupt')
    expect(await admin.hget(key, 'someone')).toBe('else')
  })

  it('a decision recorded after the key was lost is news to watchers, although its version starts again at 1', async () => {
    const key = freshKey()
    const admin = await connect()
    const writer = store(await connect(), { key })
    const reader = store(await connect(), { key, pollIntervalMs: 60_000 })
    const watch = collect(reader)
    await untilSubscribers(admin, reader.channel, 1)
    for (let i = 1; i <= 2; i++) {
      const next = watch.next(1_000)
      await writer.compareAndSet(i === 1 ? null : i - 1, update(`node${i}`, i))
      await next
    }
    // Lost as to a FLUSHALL, or a restart without persistence.
    await admin.del(key)
    const next = watch.next(1_000)
    const written = await writer.compareAndSet(null, update('node3', 3))
    expect(written).toMatchObject({ ok: true, record: { version: 1, epoch: 3 } })
    expect((await next).record).toMatchObject({ primary: 'node3', epoch: 3, version: 1 })
    // An older epoch is never news, whatever its version; the same epoch at a higher version is.
    await admin.publish(reader.channel, JSON.stringify({ ...update('node2', 2), version: 9 }))
    const again = watch.next(1_000)
    await writer.compareAndSet(1, update('node3', 3))
    expect((await again).record).toMatchObject({ primary: 'node3', epoch: 3, version: 2 })
    const after = watch.next(1_000)
    await writer.compareAndSet(2, update('node4', 4))
    expect((await after).record).toMatchObject({ primary: 'node4', epoch: 4, version: 3 })
    expect(watch.records.map((r) => `${r.primary}@${r.epoch}v${r.version}`)).toEqual(['node1@1v1', 'node2@2v2', 'node3@3v1', 'node3@3v2', 'node4@4v3'])
    watch.stop()
  })

  it('a compare-and-set that replaces a value that was not a record says so', async () => {
    const key = freshKey()
    const admin = await connect()
    const s = store(await connect(), { key })
    await admin.set(key, '{"half a record')
    const replaced = await s.compareAndSet(null, update('node1'))
    expect(replaced).toMatchObject({ ok: true, record: { primary: 'node1', version: 1 }, corrupt: expect.stringContaining('not a valid state record') })
    // An ordinary write says nothing of the kind.
    expect(await s.compareAndSet(1, update('node2', 2))).not.toHaveProperty('corrupt')
  })

  it('StateSync heals a real Redis: a lost key and an older record are written again, a later decision is followed', async () => {
    const key = freshKey()
    const admin = await connect()
    const errors: unknown[] = []
    const superseded: StateRecord[] = []
    const sync = new StateSync(store(await connect(), { key }), systemClock, 1_000, (event, payload) => event === 'stateStoreError' && errors.push(payload()))
    const decision = { primary: 'node2', systemId: '7312345678901234567', timeline: 2, epoch: 2, reason: 'failover' }
    const stored = async (): Promise<StateRecord | null> => JSON.parse((await admin.get(key)) ?? 'null')
    sync.persist(decision, (r) => void superseded.push(r))
    await sync.settled()
    expect(await stored()).toMatchObject({ primary: 'node2', epoch: 2, version: 1 })

    await admin.del(key)
    sync.heal(decision)
    await sync.settled()
    expect(await stored()).toMatchObject({ primary: 'node2', epoch: 2, version: 1 })

    await admin.set(key, JSON.stringify({ ...update('node1', 1), version: 5 }))
    sync.heal(decision)
    await sync.settled()
    expect(await stored()).toMatchObject({ primary: 'node2', epoch: 2, version: 6 })
    expect(sync.health).toMatchObject({ ok: true, degraded: false, version: 6 })

    // Another instance decided later: heal() follows it and writes nothing.
    const later = { ...update('node3', 3), version: 7 }
    await admin.set(key, JSON.stringify(later))
    sync.heal(decision)
    await sync.settled()
    expect(superseded).toEqual([later])
    expect(await stored()).toEqual(later)
    expect(errors).toEqual([])
    await sync.close()
  })

  it('never puts the password in an error', async () => {
    const password = 'pw-Secret-0123456789'
    const guarded = res.track(await startRedis({ password }))
    const good = await connect({}, guarded.url)
    const s = store(good, { key: freshKey() })
    expect(await s.load()).toBeNull()
    await guarded.stop()
    const down = await failureOf(() => s.load())
    expect(['unavailable', 'timeout']).toContain(down.error.failure)
    await guarded.start()

    const wrong = new Redis(guarded.url.replace(encodeURIComponent(password), 'wrong-password'), {
      maxRetriesPerRequest: 0,
      retryStrategy: () => null,
    })
    wrong.on('error', () => undefined)
    shared.defer(() => wrong.disconnect())
    const rejected = await failureOf(() => store(wrong, { key: freshKey() }).load())
    for (const { error } of [down, rejected]) {
      const shown = `${error.message}\n${error.stack}\n${inspect(error, { depth: 10 })}`
      expect(shown).not.toContain(password)
      expect(shown).not.toContain('wrong-password')
    }
  })

  it('close() disconnects the subscription and stops deliveries; the user client stays open', async () => {
    const key = freshKey()
    const admin = await connect()
    // The duplicate inherits the name, so the server can count this store's connections.
    const own = await connect({ connectionName: 'close-test' })
    const connections = async (): Promise<number> => String(await admin.call('CLIENT', 'LIST')).split('\n').filter((l) => / name=close-test /.test(l)).length
    expect(await connections()).toBe(1)
    const s = new RedisStateStore({ client: own, key, pollIntervalMs: 50 })
    const watch = collect(s)
    await untilSubscribers(admin, s.channel, 1)
    expect(await connections()).toBe(2)

    await s.close()
    await waitUntil(async () => (await connections()) === 1, { what: 'the subscription connection to close', timeout: 2_000 })
    await untilSubscribers(admin, s.channel, 0)
    // No poll timer survives: nobody in this file GETs from now on (every other watch is stopped).
    await admin.call('CONFIG', 'RESETSTAT')
    await admin.set(key, JSON.stringify({ ...update('late'), version: 5 }))
    // Six poll intervals for a (wrong) surviving poll timer to GET the key, then check none did.
    await sleep(300)
    expect(String(await admin.call('INFO', 'commandstats'))).not.toMatch(/cmdstat_get:/)
    expect(watch.records).toEqual([])
    expect(await own.ping()).toBe('PONG')
    // A closed store no longer watches.
    s.watch(() => undefined)()
    expect(await connections()).toBe(1)
  })

  it('a process that watched and closed the store exits on its own, with nothing left to keep it alive', async () => {
    const storeUrl = pathToFileURL(path.join(REPO_ROOT, 'src/index.ts')).href
    const script = `
      import { Redis } from 'ioredis'
      import { RedisStateStore } from ${JSON.stringify(storeUrl)}
      const client = new Redis(${JSON.stringify(server.url)})
      const store = new RedisStateStore({ client, key: ${JSON.stringify(freshKey())}, pollIntervalMs: 20 })
      const stop = store.watch(() => {})
      await store.compareAndSet(null, ${JSON.stringify(update('child'))})
      await new Promise((r) => setTimeout(r, 100))
      stop()
      await store.close()
      await client.quit()
      // ioredis clears its own disconnect timer once the socket is closed.
      await new Promise((r) => setTimeout(r, 300))
      process.stdout.write(JSON.stringify(process.getActiveResourcesInfo()))
    `
    const child = spawn(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', script], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const started = performance.now()
    const code = await new Promise<number | null>((resolve) => {
      const timer = setTimeout(() => {
        child.kill('SIGKILL')
        resolve(null)
      }, 15_000)
      child.on('exit', (c) => {
        clearTimeout(timer)
        resolve(c)
      })
    })
    expect(code, `exit code ${code} after ${Math.round(performance.now() - started)} ms (null: killed, still alive after 15 s); stderr:\n${stderr}`).toBe(0)
    // Only its own stdout/stderr pipes: no timer, no socket.
    expect((JSON.parse(stdout) as string[]).filter((r) => r !== 'PipeWrap')).toEqual([])
  })

  describe('when Redis is down, slow or back', () => {
    let key: string
    let failFast: RedisStateStore
    let queueing: RedisStateStore
    let admin: Redis
    let reader: RedisStateStore
    let watch: ReturnType<typeof collect>

    beforeAll(async () => {
      key = freshKey()
      admin = await connect()
      failFast = store(await connect(), { key })
      // The riskiest ioredis setup: commands wait in the offline queue forever; only our deadline ends them.
      const defaults = new Redis(server.url, { maxRetriesPerRequest: null, retryStrategy: () => 50 })
      defaults.on('error', () => undefined)
      shared.defer(() => defaults.disconnect())
      queueing = store(defaults, { key })
      await failFast.compareAndSet(null, update('node0'))
      reader = store(await connect(), { key, pollIntervalMs: 60_000 })
      watch = collect(reader)
      await watch.next(1_000)
      await untilSubscribers(admin, reader.channel, 1)
    })

    it('stopped: load() and compareAndSet() reject with "unavailable" or "timeout" within commandTimeoutMs', async () => {
      await server.stop()
      for (const s of [failFast, queueing]) {
        for (const operation of [() => s.load(), () => s.compareAndSet(1, update('node1', 2))]) {
          const { error, ms } = await failureOf(operation)
          expect(['unavailable', 'timeout']).toContain(error.failure)
          expect(ms).toBeLessThan(COMMAND_TIMEOUT_MS + SLACK_MS)
        }
      }
      // Without an offline queue the failure is immediate; with one, the deadline ends it.
      expect((await failureOf(() => failFast.load())).error.failure).toBe('unavailable')
      expect((await failureOf(() => queueing.load())).error.failure).toBe('timeout')
    })

    it('restarted: works again, and watchers catch up and hear changes again', async () => {
      await server.start()
      await waitUntil(async () => (await failFast.load()) !== null, { what: 'the store to answer again', timeout: 5_000 })
      // The queueing client replays its offline queue on reconnect: the compare-and-set that timed
      // out above may run now. Wait until that is over, then catch the watcher up.
      await waitUntil(async () => (await queueing.load()) !== null, { what: 'the queueing client to answer again', timeout: 5_000 })
      const current = (await failFast.load())!
      expect([1, 2]).toContain(current.version)
      await untilSubscribers(admin, reader.channel, 1)
      await waitUntil(() => watch.records.at(-1)?.version === current.version, { what: 'the watcher to catch up', timeout: 2_000 })

      const next = watch.next(1_000)
      const written = await queueing.compareAndSet(current.version, update('node1', 2))
      expect(written.ok).toBe(true)
      expect((await next).record).toMatchObject({ version: current.version + 1, primary: 'node1' })
    })

    let frozenAt = 0

    it('frozen (SIGSTOP): load() and compareAndSet() reject with "timeout" within commandTimeoutMs', async () => {
      frozenAt = (await failFast.load())!.version
      server.freeze()
      try {
        for (const s of [failFast, queueing]) {
          for (const operation of [() => s.load(), () => s.compareAndSet(frozenAt, update('node2', 3))]) {
            const { error, ms } = await failureOf(operation)
            expect(error.failure).toBe('timeout')
            expect(ms).toBeGreaterThanOrEqual(COMMAND_TIMEOUT_MS - 5)
            expect(ms).toBeLessThan(COMMAND_TIMEOUT_MS + SLACK_MS)
          }
        }
      } finally {
        server.thaw()
      }
    })

    it('thawed: works again; a compare-and-set that timed out was applied after all', async () => {
      // The two writes sent while frozen reach Redis on thaw: the first wins, the second loses.
      const current = await failFast.load()
      expect(current).toMatchObject({ version: frozenAt + 1, primary: 'node2' })
      const next = await failFast.compareAndSet(frozenAt + 1, update('node3', 4))
      expect(next.ok).toBe(true)
      await waitUntil(() => watch.records.at(-1)?.version === frozenAt + 2, { what: 'the watcher to catch up', timeout: 1_000 })
    })
  })
})
