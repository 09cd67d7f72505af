import { EventEmitter } from 'node:events'
import type { PoolConfig } from 'pg'
import type { ResolvedEndpoint } from '../../src/endpoint/endpoint-config.js'
import { Endpoint } from '../../src/endpoint/endpoint.js'
import type { LaneEvents } from '../../src/endpoint/lane.js'
import type { ProbeResult } from '../../src/endpoint/role-probe.js'
import type { Watch, WatchFactory } from '../../src/health/watches.js'
import { type FailoverPoolOptions, resolveOptions } from '../../src/options.js'
import { Coordinator } from '../../src/topology/coordinator.js'
import { classifyError } from '../../src/error-policy.js'
import type { Target } from '../../src/surface/routing-host.js'
import { FakeClock } from './fake-clock.js'

/** What a fake node answers to a probe. */
export type NodeMode = 'primary' | 'standby' | 'read-only' | 'down' | 'hang' | 'auth' | 'too-many'

const noLaneEvents: LaneEvents = { connect() {}, acquire() {}, release() {}, remove() {}, error() {} }

/**
 * A real Endpoint (real lanes that never connect, real breaker) whose role probe is scripted: the
 * coordinator's rules run against it on the fake clock, without sockets.
 */
export class FakeEndpoint extends Endpoint {
  mode: NodeMode = 'standby'
  timeline = 1
  systemId = 'S1'
  /** Probes sent to this node. */
  probes = 0
  /** How long an answer takes (ms on the fake clock; 0: at once). */
  answerDelayMs = 0
  /** The WAL position its probes report (`X/Y`). */
  lsn = '0/3000000'
  /** A standby's WAL receiver streams (false: detached, or it cannot follow). */
  receiving = true
  /** The timeline a streaming standby's WAL receiver shows (null: the role may not read it). */
  receivedTimeline: number | null = null
  /** What the coordinator did to this node's connections, in order: fresh pools, a leave (cut), a stalled replica's cut. */
  readonly actions: Array<'refresh' | 'leave' | 'cut-stalled'> = []
  /** The answer grace (ms) of every leave, in order. */
  readonly cutGraces: number[] = []

  constructor(
    resolved: ResolvedEndpoint,
    shared: PoolConfig,
    private readonly fakeClock: FakeClock,
  ) {
    super(resolved, shared, () => noLaneEvents, fakeClock)
  }

  override probe(timeoutMs: number): Promise<ProbeResult> {
    this.probes++
    const mode = this.mode
    return new Promise((resolve, reject) => {
      if (mode === 'hang') {
        this.fakeClock.setTimeout(() => reject(Object.assign(new Error(`role probe of ${this.name} timed out after ${timeoutMs} ms`), { code: 'ETIMEDOUT' })), timeoutMs)
      } else if (mode === 'down') {
        reject(Object.assign(new Error(`connect ECONNREFUSED ${this.name}`), { code: 'ECONNREFUSED' }))
      } else if (mode === 'auth') {
        reject(Object.assign(new Error('password authentication failed for user "app"'), { code: '28P01' }))
      } else if (mode === 'too-many') {
        reject(Object.assign(new Error('sorry, too many clients already'), { code: '53300', severity: 'FATAL' }))
      } else {
        const probe: ProbeResult = {
          inRecovery: mode === 'standby',
          readOnly: mode === 'read-only',
          systemId: this.systemId,
          timeline: this.timeline,
          receiving: mode !== 'standby' || this.receiving,
          receivedTimeline: mode === 'standby' && this.receiving ? this.receivedTimeline : null,
          lsn: this.lsn,
          lagMs: 0,
          serverVersion: 150000,
          latencyMs: 1,
        }
        const answer = (): void => {
          this.lastProbe = probe
          resolve(probe)
        }
        if (this.answerDelayMs > 0) this.fakeClock.setTimeout(answer, this.answerDelayMs)
        else answer()
      }
    })
  }

  override refreshPools(): void {
    this.actions.push('refresh')
    super.refreshPools()
  }

  override leave(answerGraceMs = 0): void {
    this.actions.push('leave')
    this.cutGraces.push(answerGraceMs)
    super.leave(answerGraceMs)
  }

  override cutStalled(): void {
    this.actions.push('cut-stalled')
    super.cutStalled()
  }
}

/** Promotion watches the test fires by hand. */
export class FakeWatches {
  readonly armed = new Set<string>()
  /** Watches told to watch continuously (the pool has no primary, or doubts it). */
  readonly urgent = new Set<string>()
  readonly #notify = new Map<string, (e: Endpoint, row?: ProbeResult) => void>()
  readonly #endpoints = new Map<string, Endpoint>()

  readonly factory: WatchFactory = (endpoint, onPromoted): Watch => {
    this.#notify.set(endpoint.name, onPromoted)
    this.#endpoints.set(endpoint.name, endpoint)
    return { start: () => void this.armed.add(endpoint.name), stop: () => void this.armed.delete(endpoint.name), setUrgent: (u) => void (u ? this.urgent.add(endpoint.name) : this.urgent.delete(endpoint.name)) }
  }

  /** The watch on `name` sees its standby leave recovery (`row`: what its statement read, if it says). */
  promote(name: string, row?: ProbeResult): void {
    if (!this.armed.has(name)) throw new Error(`no armed watch on ${name}`)
    this.#notify.get(name)!(this.#endpoints.get(name)!, row)
  }
}

/** A coordinator over fake nodes named `names` (the first starts as primary), with every event recorded. */
export function fakeTopology(names: readonly string[] = ['a', 'b', 'c'], overrides: Partial<FailoverPoolOptions> = {}) {
  const clock = new FakeClock()
  const options = resolveOptions({ endpoints: names.map((name, i) => ({ name, host: `10.0.0.${i + 1}`, port: 5432 })), clock, ...overrides })
  const endpoints = options.endpoints.map((r) => new FakeEndpoint(r, options.poolConfig, clock))
  endpoints[0]!.mode = 'primary'
  const events = new EventEmitter()
  const emitted: Array<{ event: string; payload: any }> = []
  const record = events.emit.bind(events)
  events.emit = (event: string | symbol, ...args: unknown[]) => {
    emitted.push({ event: String(event), payload: args[0] })
    return record(event, ...args)
  }
  for (const name of ['failover', 'endpointDown', 'endpointUp', 'roleChange', 'breakerStateChange', 'splitBrain', 'stateStoreError', 'promoteHookError']) events.on(name, () => undefined)
  const watches = new FakeWatches()
  const coordinator = new Coordinator({ endpoints, options, events, watches: watches.factory })
  const node = (name: string): FakeEndpoint => endpoints.find((e) => e.name === name)!
  const named = (event: string) => emitted.filter((e) => e.event === event).map((e) => e.payload)
  /** A request's failure on `target`, reported as the request runner does (with the endpoint's era at its start, default now). */
  const report = (target: Target, error: Error, era = coordinator.health(target.endpoint).era) => {
    const errorClass = classifyError(error)
    coordinator.requests.report({ target, error, errorClass, era })
  }
  return { clock, options, coordinator, endpoints, node, watches, emitted, named, report }
}

/** Lets every settled promise run its callbacks (probes answer through microtasks). */
export async function flush(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise<void>((resolve) => setImmediate(resolve))
}
