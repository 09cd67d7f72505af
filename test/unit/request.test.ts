import { EventEmitter } from 'node:events'
import { describe, expect, it } from 'vitest'
import { isOutcomeUnknownError } from '../../src/errors.js'
import { Request, type RequestOwner } from '../../src/surface/request.js'
import type { FailureReport, RoutingHost, Target } from '../../src/surface/routing-host.js'
import { FakeClock } from '../support/fake-clock.js'

type Behaviour = (client: FakeClient, callback: (err: Error | undefined, res?: unknown) => void) => void

/** Just enough of a pg.Client: query(text, values, callback) driven by the test, and 'error' events. */
class FakeClient extends EventEmitter {
  release: (err?: Error | boolean) => void = () => undefined
  constructor(private readonly behaviours: Behaviour[]) {
    super()
  }
  query(_text: unknown, _values: unknown, callback: (err: Error | undefined, res?: unknown) => void): void {
    this.behaviours.shift()!(this, callback)
  }
}

const reset = () => Object.assign(new Error('read ECONNRESET'), { code: 'ECONNRESET' })

function harness(behaviours: Behaviour[]) {
  const clock = new FakeClock()
  clock.advance(1_000)
  let era = 3
  const reports: FailureReport[] = []
  const released: Array<Error | boolean | undefined> = []
  const client = new FakeClient(behaviours)
  const lane = {
    acquire(callback: (err: Error | undefined, client?: unknown, release?: (err?: Error | boolean) => void) => void) {
      callback(undefined, client, (err) => void released.push(err))
    },
  }
  const target = { endpoint: { name: 'a', counters: { writes: 0, reads: 0, errors: 0 } }, lane, generation: 7, role: 'primary', caughtUp: true } as unknown as Target
  const current = target
  let afterFailure = target
  const host: RoutingHost = {
    clock,
    readYourWritesTimeoutMs: 0,
    ending: false,
    readyWriteTarget: () => current,
    earlyWriteLane: () => null,
    // A retry after a failure on the primary gets the target of whatever the pool decided meanwhile.
    target: (_kind, _since, _read, callback, retryOf) => callback(undefined, retryOf ? afterFailure : current),
    report: (failure) => void reports.push(failure),
    lanes: () => [],
    primaryOptions: () => ({}) as ReturnType<RoutingHost['primaryOptions']>,
    waitingForPrimary: () => 0,
    spendRetry: () => true,
    failFast: false,
    requestStarted: () => undefined,
    requestFinished: () => undefined,
    isCurrent: () => true,
    eraOf: () => era,
    leftSince: () => false,
  }
  const owner: RequestOwner = { host, intent: 'write' }
  return { clock, reports, released, client, owner, target, nextEra: () => void era++, leaveAfterFailure: () => void (afterFailure = { ...target, generation: 8 }) }
}

function query(owner: RequestOwner, text: string): Promise<unknown> {
  return new Promise((resolve) => Request.query(owner, text, undefined, (err, res) => resolve(err ?? res)))
}

describe('Request: one report per failed attempt', () => {
  it('a statement whose connection breaks is reported once, although pg tells it twice (callback and client error)', async () => {
    const h = harness([
      (client, callback) => {
        client.emit('error', reset())
        callback(reset())
      },
    ])
    const result = await query(h.owner, 'INSERT INTO t VALUES (1)')
    expect(h.reports).toHaveLength(1)
    expect(h.reports[0]).toMatchObject({ errorClass: 'connection', era: 3, target: { generation: 7 } })
    // A write lost mid-flight: its outcome is unknown, and it was not replayed.
    expect(isOutcomeUnknownError(result)).toBe(true)
    expect(h.released).toHaveLength(1)
  })

  it('a statement error is the caller\'s and is never reported', async () => {
    const h = harness([(_client, callback) => callback(Object.assign(new Error('syntax error'), { code: '42601', severity: 'ERROR' }))])
    const result = await query(h.owner, 'SELEC 1')
    expect(h.reports).toEqual([])
    expect((result as { code?: string }).code).toBe('42601')
  })

  it('a 25006 on a primary the pool then leaves is reported once and the write is retried once on the new one (nothing was written)', async () => {
    const h = harness([
      (_client, callback) => callback(Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' })),
      (_client, callback) => callback(undefined, { rows: [{ ok: true }] }),
    ])
    h.leaveAfterFailure()
    const result = await query(h.owner, 'INSERT INTO t VALUES (1)')
    expect(h.reports.map((r) => r.errorClass)).toEqual(['read-only'])
    expect(result).toEqual({ rows: [{ ok: true }] })
  })

  it("a 25006 on a primary the pool keeps (the caller's own read-only transaction) is the caller's error, not retried", async () => {
    const readOnly = Object.assign(new Error('cannot execute INSERT in a read-only transaction'), { code: '25006' })
    const h = harness([(_client, callback) => callback(readOnly)])
    const result = await query(h.owner, 'INSERT INTO t VALUES (1)')
    expect(h.reports.map((r) => r.errorClass)).toEqual(['read-only'])
    expect(result).toBe(readOnly)
  })

  it("a write PgBouncer refused (query_wait_timeout: it never reached a server) is retried, not reported as outcome-unknown", async () => {
    const h = harness([
      (_client, callback) => callback(Object.assign(new Error('query_wait_timeout'), { code: '08P01', severity: 'FATAL' })),
      (_client, callback) => callback(undefined, { rows: [{ id: 1 }] }),
    ])
    const result = await query(h.owner, 'INSERT INTO t VALUES (1)')
    expect(result).toEqual({ rows: [{ id: 1 }] })
    expect(h.reports.map((r) => r.errorClass)).toEqual(['connection'])
  })

  it('a checked-out client that errors and is then released with that error is reported once', async () => {
    const h = harness([])
    const client = await new Promise<FakeClient>((resolve) => Request.checkout(h.owner, (_err, c) => resolve(c as unknown as FakeClient)))
    h.nextEra()
    const err = reset()
    client.emit('error', err)
    client.release(err)
    expect(h.reports).toHaveLength(1)
    // The attempt is stamped with the endpoint's era when the client was checked out, not when the error surfaced.
    expect(h.reports[0]!.era).toBe(3)
    expect(h.released).toEqual([err])
  })
})
