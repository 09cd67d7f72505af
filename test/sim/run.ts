import { format } from 'node:util'
import createDebug from 'debug'
import { FailoverPool } from '../../src/failover-pool.js'
import type { FailoverPoolOptions } from '../../src/options.js'
import type { PromoteHook } from '../../src/topology/promotion-hook.js'
import { Apps } from './apps.js'
import { simClientClass } from './client.js'
import { SimClock } from './clock.js'
import { mulberry32 } from '../chaos/prng.js'
import { FAULT_KINDS, type FaultKind, Faults } from './faults.js'
import { type MemberDefinition, Members } from './members.js'
import { COMMIT_BYTES, SimNode } from './node.js'
import { ListenerError, type Violation, World } from './world.js'

/** What one schedule drew from its seed. */
export interface ScheduleConfig {
  readonly nodes: number
  readonly max: number
  readonly failoverTimeoutMs: number
  readonly probeTimeoutMs: number
  readonly healthCheckIntervalMs: number
  readonly discoveryIntervalMs: number
  readonly halfOpenAfterMs: number
  readonly maxHalfOpenAfterMs: number
  readonly failureThreshold: number
  readonly promotionWatch: boolean | 'always'
  readonly routeReads: 'off' | 'auto'
  readonly hook: 'none' | 'quick' | 'hang' | 'fail'
  readonly onPromoteFailure: 'refuse' | 'proceed'
  readonly variant: 'pg' | 'native'
  readonly writers: number
  readonly txWriters: number
  readonly readers: number
  readonly readOnlyTx: number
  readonly readYourWrites: number
  /** Callers that set session state on a checked-out client and read it back. */
  readonly sessions: number
  /** `maxReplicaLagMs` (null: no limit). */
  readonly maxReplicaLagMs: number | null
  /** `maxReplicaLagBytes` in commits (a commit is 0x100 bytes of simulated WAL; null: no limit). */
  readonly maxReplicaLagCommits: number | null
  /** `warmStandbys`. */
  readonly warmStandbys: boolean
  readonly throwing: readonly string[]
  readonly faults: readonly FaultKind[]
  readonly durationMs: number
  /** Simulated ms at which end() is called while everything still runs, or null: at the end. */
  readonly endEarlyAt: number | null
  /** An operator changes the endpoints at runtime (`setEndpoints`); drawn from a stream of its own. */
  readonly members: boolean
  /** `drainTimeoutMs` when `members`. */
  readonly drainTimeoutMs: number
}

/** How one schedule ended. */
export interface ScheduleResult {
  readonly seed: number
  readonly config: ScheduleConfig
  readonly violation: Violation | null
  readonly trace: string
  readonly steps: number
  readonly simulatedMs: number
  readonly counts: Apps['counts']
  readonly listenerErrors: number
}

const EVENTS = ['failover', 'endpointDown', 'endpointUp', 'roleChange', 'breakerStateChange', 'splitBrain', 'stateStoreError', 'promoteHookError']

/**
 * How long and how busy schedules are: `short` (what `npm test` runs: about a second of simulated
 * traffic each, a few thousand a minute) or `long` (several seconds, more callers: more faults and
 * interleavings per schedule, for the million-schedule runs).
 */
export type Profile = 'short' | 'long'

/**
 * Draws a schedule's configuration from its clock (so from its seed). Membership changes draw from
 * `side`, a stream of their own: a schedule without them draws from the clock exactly as before
 * they existed, so every seed found before replays unchanged.
 */
export function drawConfig(clock: SimClock, profile: Profile, overrides: Partial<ScheduleConfig> = {}, side: () => number = () => 1): ScheduleConfig {
  const crowd = clock.chance(0.15)
  const short = profile === 'short'
  const config: ScheduleConfig = {
    nodes: clock.pick([2, 3, 3]),
    max: crowd ? 2 : clock.pick([1, 2, 4]),
    failoverTimeoutMs: clock.pick(short ? [1_000, 2_000, 4_000] : [1_500, 3_000, 6_000]),
    probeTimeoutMs: clock.pick(short ? [200, 500] : [300, 800]),
    healthCheckIntervalMs: clock.pick(short ? [100, 250] : [100, 400]),
    discoveryIntervalMs: clock.pick([50, 150]),
    halfOpenAfterMs: clock.pick(short ? [100, 300] : [200, 1_000]),
    maxHalfOpenAfterMs: short ? 600 : 2_000,
    failureThreshold: clock.pick([1, 3]),
    promotionWatch: clock.chance(0.7) ? (clock.chance(0.3) ? 'always' : true) : false,
    routeReads: clock.chance(0.3) ? 'auto' : 'off',
    hook: clock.chance(0.7) ? 'none' : clock.pick(['quick', 'hang', 'fail'] as const),
    onPromoteFailure: clock.chance(0.5) ? 'refuse' : 'proceed',
    variant: clock.chance(0.15) ? 'native' : 'pg',
    writers: crowd ? 40 : clock.pick(short ? [1, 2, 3] : [1, 2, 4]),
    txWriters: clock.pick([0, 1, 2]),
    readers: clock.pick([0, 1, 2]),
    readOnlyTx: clock.pick([0, 0, 1]),
    readYourWrites: clock.pick([0, 0, 1]),
    sessions: clock.pick([0, 0, 1]),
    maxReplicaLagMs: clock.chance(0.4) ? clock.pick([300, 800]) : null,
    maxReplicaLagCommits: clock.chance(0.3) ? clock.pick([2, 5]) : null,
    warmStandbys: clock.chance(0.3),
    throwing: clock.chance(0.4) ? EVENTS.filter(() => clock.chance(0.5)) : [],
    faults: FAULT_KINDS.filter(() => clock.chance(0.6)),
    durationMs: crowd && short ? clock.between(300, 700) : short ? clock.between(500, 1_800) : clock.between(1_500, 5_000),
    endEarlyAt: clock.chance(0.2) ? clock.between(100, short ? 900 : 2_500) : null,
    members: side() < 0.25,
    drainTimeoutMs: [50, 300, 1_000][Math.floor(side() * 3)]!,
    ...overrides,
  }
  return config
}

function hookOf(kind: ScheduleConfig['hook'], clock: SimClock): PromoteHook | undefined {
  switch (kind) {
    case 'none':
      return undefined
    case 'quick':
      return async (client) => {
        await client.query('SELECT 1')
      }
    case 'hang':
      return () => new Promise<void>(() => undefined)
    case 'fail':
      return async () => {
        await clock.sleep(5)
        throw new Error('simulated hook failure')
      }
  }
}

/**
 * Runs one schedule: a cluster of simulated nodes, a real FailoverPool over them (real coordinator,
 * requests, lanes with pg-pool inside, watches, reader views), the applications, the faults, then
 * a healed cluster the pool must settle on, then `end()`. Invariants are checked after every step;
 * the first violation stops the schedule.
 */
export async function runSchedule(seed: number, profile: Profile = 'short', overrides: Partial<ScheduleConfig> = {}): Promise<ScheduleResult> {
  const clock = new SimClock(seed)
  // DEBUG=pg-failover-pool:* prints the pool's log against simulated time, so it lines up with the trace.
  createDebug.log = (...args: unknown[]) => process.stderr.write(`${clock.now().toFixed(1).padStart(9)} ${format(...args).replace(/^\S+Z /, '')}\n`)
  const world = new World(clock)
  const side = mulberry32(seed ^ 0x6d656d62)
  const config = drawConfig(clock, profile, overrides, side)
  const primary = new SimNode(world, 'n1', 'n1.sim', 5432, 'primary', '7100000000000000001')
  world.nodes.push(primary)
  for (let i = 2; i <= config.nodes; i++) {
    const standby = new SimNode(world, `n${i}`, `n${i}.sim`, 5432, 'standby', '7100000000000000001')
    world.nodes.push(standby)
    standby.follow(primary)
  }
  const hook = hookOf(config.hook, clock)
  const definitions: MemberDefinition[] = world.nodes.map((n) => ({ name: n.name, host: n.host, port: n.port, user: 'app', password: 'secret', database: 'app' }))
  const options: FailoverPoolOptions = {
    endpoints: definitions,
    Client: simClientClass(world, config.variant) as never,
    clock,
    max: config.max,
    idleTimeoutMillis: 0,
    failoverTimeoutMs: config.failoverTimeoutMs,
    probeTimeoutMs: config.probeTimeoutMs,
    healthCheckIntervalMs: config.healthCheckIntervalMs,
    discoveryIntervalMs: config.discoveryIntervalMs,
    halfOpenAfterMs: config.halfOpenAfterMs,
    maxHalfOpenAfterMs: config.maxHalfOpenAfterMs,
    failureThreshold: config.failureThreshold,
    promotionWatch: config.promotionWatch,
    routeReads: config.routeReads,
    warmStandbys: config.warmStandbys,
    ...(config.maxReplicaLagMs !== null ? { maxReplicaLagMs: config.maxReplicaLagMs } : {}),
    ...(config.maxReplicaLagCommits !== null ? { maxReplicaLagBytes: config.maxReplicaLagCommits * COMMIT_BYTES } : {}),
    ...(hook ? { onPromote: hook, onPromoteFailure: config.onPromoteFailure } : {}),
    ...(config.members ? { drainTimeoutMs: config.drainTimeoutMs } : {}),
  }
  Object.assign(options, hookBoundOption(config))

  let listenerErrors = 0
  const crashes: Error[] = []
  const onUncaught = (err: unknown): void => {
    if (err instanceof ListenerError) listenerErrors++
    else crashes.push(err instanceof Error ? err : new Error(String(err)))
  }
  process.on('uncaughtException', onUncaught)
  process.on('unhandledRejection', onUncaught)

  let steps = 0
  const bounds = boundsOf(config, world)
  // Reads go only where the pool can vouch for them, once its probes had time to see the change.
  const learnMs = 2 * config.healthCheckIntervalMs * 1.2 + config.probeTimeoutMs + 100
  world.readBounds = { divergedMs: learnMs, detachedMs: config.maxReplicaLagMs === null ? Infinity : config.maxReplicaLagMs + learnMs, behindMs: learnMs }
  world.lagLimitCommits = config.maxReplicaLagCommits
  const pool = new FailoverPool(options, { observe: (c) => world.observe(c) })
  const apps = new Apps(world, pool)
  const faults = new Faults(world, config.faults)
  const members = config.members ? new Members(world, pool, apps, definitions, side, () => faults.switchover()) : null
  let lastVerified: { name: string } | null = null

  /** One step: let every promise and tick run, check the invariants, fire the next timer. */
  const step = async (): Promise<boolean> => {
    await new Promise<void>((resolve) => setImmediate(resolve))
    steps++
    if (crashes.length > 0) world.fail('uncaught', `${crashes[0]!.name}: ${crashes[0]!.message}`)
    checkStep(world, apps, faults, config, bounds, () => lastVerified, (v) => (lastVerified = v))
    if (members !== null) checkRemoved(world, config, bounds)
    if (world.violation) return false
    try {
      if (!clock.fireNext()) return false
    } catch (err) {
      onUncaught(err)
    }
    return true
  }

  try {
    if (config.writers > 0) apps.writers(config.writers)
    apps.txWriters(config.txWriters)
    apps.readers(config.readers)
    apps.readOnlyTransactions(config.readOnlyTx)
    apps.readYourWrites(config.readYourWrites)
    apps.sessions(config.sessions)
    if (config.members) apps.readerCheckouts(1)
    apps.throwingListeners(config.throwing)
    faults.start(100, profile === 'short' ? 500 : 900)
    members?.start(150, profile === 'short' ? 600 : 1_200)

    let ending: Promise<void> | null = null
    let endCalledAt = 0
    let ended = false
    const callEnd = (): void => {
      apps.stopping = true
      endCalledAt = clock.now()
      world.trace('pool.end() called')
      ending = pool.end().then(() => {
        ended = true
        world.trace('pool.end() completed')
      })
    }
    const phaseUntil = async (until: number, stopWhen: () => boolean = () => false): Promise<void> => {
      while (clock.now() < until && !stopWhen() && !world.violation) {
        if (config.endEarlyAt !== null && ending === null && clock.now() >= config.endEarlyAt) callEnd()
        if (ending !== null && !ended && clock.now() > endCalledAt + bounds.endMs) world.fail('end-unbounded', `end() called at ${endCalledAt.toFixed(1)} has not completed after ${bounds.endMs} ms`)
        if (!(await step())) break
      }
    }
    await phaseUntil(config.durationMs, () => ended)
    if (!world.violation && !ended) {
      try {
        faults.healAll()
        members?.restore()
      } catch (err) {
        onUncaught(err)
      }
      // The pool must settle on the healed cluster within the bound (it usually does at once).
      let problem: string | null = 'not checked'
      await phaseUntil(clock.now() + bounds.settleMs, () => ended || (ending === null && (problem = unsettled(world, pool, config)) === null))
      if (!world.violation && ending === null && problem !== null) world.fail(problem.startsWith('primary') ? 'no-primary-after-heal' : problem.startsWith('members') ? 'members-not-restored' : 'replica-not-serving', `${bounds.settleMs.toFixed(0)} ms after the cluster healed: ${problem}`)
    }
    if (!world.violation && ending === null) callEnd()
    if (!world.violation) await phaseUntil(endCalledAt + bounds.endMs + 1, () => ended)
    if (!world.violation && !ended) world.fail('end-unbounded', clock.pending === 0 ? `end() called at ${endCalledAt.toFixed(1)} waits with no timer left: it can never complete` : `end() called at ${endCalledAt.toFixed(1)} has not completed after ${bounds.endMs} ms`)
    if (!world.violation) {
      let drained = false
      void apps.drained().then(() => (drained = true))
      await phaseUntil(clock.now() + bounds.requestMs, () => drained)
      checkAfterEnd(world, apps)
    }
  } finally {
    // Announcements and callbacks already queued still run (and may throw) before the handlers go.
    await new Promise<void>((resolve) => setImmediate(resolve))
    process.off('uncaughtException', onUncaught)
    process.off('unhandledRejection', onUncaught)
  }
  if (!world.violation && crashes.length > 0) world.fail('uncaught', `${crashes[0]!.name}: ${crashes[0]!.message}`)
  return { seed, config, violation: world.violation, trace: world.recentTrace(), steps, simulatedMs: clock.now(), counts: apps.counts, listenerErrors }
}

/** The hook's deadline, where the pool has the option. */
function hookBoundOption(config: ScheduleConfig): Record<string, number> {
  return config.hook === 'none' || !HOOK_DEADLINE ? {} : { onPromoteTimeoutMs: 500 }
}
const HOOK_DEADLINE = true

interface Bounds {
  /** How long one application request may take, at most. */
  readonly requestMs: number
  /** How long end() may take, at most. */
  readonly endMs: number
  /** How long a healed cluster is given before the pool must have settled on it. */
  readonly settleMs: number
  /** How long after the last disturbance a healthy primary must not be dropped. */
  readonly quietMs: number
  /** How long a verified primary may be down or frozen before the pool must have left it. */
  readonly detectMs: number
  /** How long after `setEndpoints` removed a node its last connection may stay open: the drain, then a probe or a connect in flight. */
  readonly drainedMs: number
}

function boundsOf(config: ScheduleConfig, world: World): Bounds {
  const probeCycle = config.probeTimeoutMs + config.healthCheckIntervalMs * 1.2
  const requestMs = config.failoverTimeoutMs + 2 * probeCycle + 2 * world.connectTimeoutMs + 1_500 + 1_000
  return {
    requestMs,
    endMs: requestMs + config.probeTimeoutMs + 1_000,
    // A change queued before the heal may still be switching over (probes, the hook) when every node is added back.
    settleMs: config.maxHalfOpenAfterMs * 1.3 + 3 * config.healthCheckIntervalMs * 1.2 + 2 * config.probeTimeoutMs + 3 * config.discoveryIntervalMs + (config.hook === 'none' ? 0 : 600) + 200 + (config.members ? 3 * (2 * config.probeTimeoutMs + 600) : 0),
    drainedMs: config.drainTimeoutMs + 50,
    quietMs: config.probeTimeoutMs + 2 * config.healthCheckIntervalMs + 100,
    detectMs: config.probeTimeoutMs + 1.2 * config.healthCheckIntervalMs + 50,
  }
}

/** Invariants checked after every step. */
function checkStep(world: World, apps: Apps, faults: Faults, config: ScheduleConfig, bounds: Bounds, last: () => { name: string } | null, setLast: (v: { name: string } | null) => void): void {
  const now = world.clock.now()
  for (const request of apps.inFlight) {
    if (now - request.startedAt > bounds.requestMs) {
      world.fail('request-unbounded', `${request.label} started at ${request.startedAt.toFixed(1)} still waits after ${bounds.requestMs} ms`)
      return
    }
  }
  world.trackLag()
  const state = world.pool.coordinator?.state
  if (state && state !== world.lastState) {
    world.lastState = state
    world.trace(`writer state: ${describeState(state)}`)
  }
  const verified = state?.kind === 'verified' ? state.primary : null
  if (state?.kind === 'verified') {
    if (state.target !== world.verifiedTarget) {
      world.verifiedTarget = state.target
      world.verifiedAt = now
    }
    // A verified primary that is down or frozen is left within the documented bound, counted from
    // when it went or when the pool adopted it (a hook may have run meanwhile): one health interval
    // (with its jitter) for the next check, its probe deadline, and a little for the step.
    const node = world.nodes.find((n) => n.name === state.primary.name)
    const since = node?.unavailableSince == null ? null : Math.max(node.unavailableSince, world.verifiedAt)
    if (node && since !== null && now - since > bounds.detectMs) {
      world.fail('detection-late', `${node.name} has been ${node.state} since ${node.unavailableSince!.toFixed(1)} (verified since ${world.verifiedAt.toFixed(1)}) and the pool still writes to it ${(now - since).toFixed(0)} ms later (bound ${bounds.detectMs.toFixed(0)} ms)`)
      return
    }
  }
  const previous = last()
  if (previous !== null && verified?.name !== previous.name && state?.kind !== 'ended') {
    // The pool stopped writing to a node that is the cluster's healthy primary, nothing else writable,
    // and nothing has disturbed the cluster for a while: only one session can have failed.
    const node = world.nodes.find((n) => n.name === previous.name)!
    const writable = world.nodes.filter((n) => n.role === 'primary' && n.state !== 'down')
    const healthy = node.writable && node.state === 'up' && node.holdMs === 0 && node.refusal === null && writable.length === 1
    if (healthy && now - faults.lastDisturbance > bounds.quietMs) {
      world.fail('overreaction', `the pool stopped writing to ${node.name} (now ${state?.kind}), a healthy primary, ${(now - faults.lastDisturbance).toFixed(0)} ms after the last disturbance`)
    }
  }
  setLast(verified ? { name: verified.name } : null)
}

/** A node `setEndpoints` removed is forgotten: no connection of the pool's stays open past the drain. */
function checkRemoved(world: World, config: ScheduleConfig, bounds: Bounds): void {
  const now = world.clock.now()
  for (const [name, since] of world.removed()) {
    if (now - since <= bounds.drainedMs) continue
    const open = [...world.clients].filter((c) => !c.closed && c.node?.name === name)
    if (open.length > 0) {
      world.fail('removed-not-drained', `${open.length} connection(s) to ${name} (${open.map((c) => c.applicationName || 'app').join(', ')}) still open ${(now - since).toFixed(0)} ms after setEndpoints removed it (drainTimeoutMs ${config.drainTimeoutMs})`)
      return
    }
  }
}

function describeState(state: { kind: string } & Record<string, any>): string {
  switch (state.kind) {
    case 'verified':
      return `verified ${state.primary.name} (generation ${state.target.generation})`
    case 'discovering':
      return `discovering${state.suspect ? ` (suspect ${state.suspect.name})` : ''}${state.loss ? `: ${state.loss.reason}` : ''}`
    case 'adopting':
      return `adopting ${state.candidate.name}`
    case 'paused':
      return `paused`
    case 'split-brain':
      return `split brain: ${state.reason}`
    default:
      return state.kind
  }
}

/**
 * What keeps the pool from having settled on the healed cluster (null: settled): it must write to
 * the true primary and send reads to every healthy standby.
 */
function unsettled(world: World, pool: FailoverPool, config: ScheduleConfig): string | null {
  const truth = world.truePrimary()
  const status = pool.status()
  if (status.endpoints.length !== world.nodes.length) return `members: every node was added back, but the pool has ${status.endpoints.map((e) => e.name).join(', ')}`
  // onPromoteFailure 'refuse' keeps a node whose hook failed (or timed out: a proxy may hold even a
  // quick hook past onPromoteTimeoutMs) out until switchTo(): no primary is then the configured answer.
  const coordinator = world.pool.coordinator!
  const truthEndpoint = truth ? coordinator.endpoints.find((e) => e.name === truth.name) : undefined
  const refused = truthEndpoint !== undefined && coordinator.health(truthEndpoint).refusedByHook
  if (!refused && truth && status.primary !== truth.name) {
    return `primary: the cluster healed with ${truth.name} as primary, but the pool's primary is ${status.primary} (${world.pool.coordinator?.state.kind}; ${status.lastElection})`
  }
  // Settled means calm too: no doubt left on the primary (a doubt keeps standbys watched continuously).
  const state = coordinator.state
  if (!refused && state.kind === 'verified' && coordinator.health(state.primary).doubt !== null) return `primary: ${state.primary.name} is still in doubt (${coordinator.health(state.primary).doubt!.reason})`
  for (const e of status.endpoints) {
    const node = world.nodes.find((n) => n.name === e.name)!
    if (node.role !== 'standby' || node.state !== 'up') continue
    if (!e.servesReads) return `${e.name} is a healthy standby again, but serves no reads (role ${e.role}, breaker ${e.breaker}, last error ${e.lastError})`
  }
  return null
}

/** After end(): nothing the pool opened is still open; a write reported failed never ran. */
function checkAfterEnd(world: World, apps: Apps): void {
  const open = [...world.clients].filter((c) => !c.closed)
  if (open.length > 0) world.fail('client-leak', `${open.length} connection(s) still open after end(): ${open.map((c) => `${c.node?.name}:${c.applicationName || 'app'}`).join(', ')}`)
  for (const w of world.writes.values()) {
    if (w.outcome === 'failed' && w.commits.length > 0) {
      world.fail('failed-write-committed', `${w.id} was reported failed (not outcome-unknown) but committed on ${w.commits[0]!.node.name}`)
      return
    }
  }
  if (apps.inFlight.size > 0) world.fail('request-unbounded', `${apps.inFlight.size} request(s) still in flight after end()`)
}
