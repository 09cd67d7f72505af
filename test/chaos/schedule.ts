/**
 * The seeded fault schedule: which faults, on which role, with which timings. Everything random
 * about a chaos run is drawn here, up front, from one mulberry32 stream, so the same seed (and the
 * same options) replays the same schedule exactly. Targets are roles (`primary`, `standby-a`,
 * `standby-b` = the current standbys sorted by name), resolved to nodes when the fault starts.
 */
import { Rng } from './prng.js'

export const FAULT_KINDS = [
  'stop-immediate',
  'stop-fast',
  'kill',
  'freeze',
  'freeze-failover',
  'terminate',
  'promote-live',
  'replay-pause',
  'store-down',
  'stale-return',
] as const

export type FaultKind = (typeof FAULT_KINDS)[number]
export type TargetRole = 'primary' | 'standby-a' | 'standby-b'
type TargetChoice = 'primary' | 'standby'

interface KindInfo {
  /** Relative frequency in a random schedule. */
  readonly weight: number
  /** Where the fault may land, with weights. */
  readonly targets: ReadonlyArray<readonly [TargetChoice, number]>
  /** Range of `holdMs` for this kind (what it means depends on the kind; see FaultPlan). */
  readonly hold: readonly [number, number]
  /** Range of `haDelayMs` (only used by faults that make the HA tool promote). */
  readonly ha: readonly [number, number]
  /** Range of `rejoinAfterMs`. */
  readonly rejoin: readonly [number, number]
}

const PRIMARY_MOSTLY = [['primary', 3], ['standby', 1]] as const
const PRIMARY = [['primary', 1]] as const
const STANDBY = [['standby', 1]] as const

export const KIND_INFO: Record<FaultKind, KindInfo> = {
  'stop-immediate': { weight: 3, targets: PRIMARY_MOSTLY, hold: [800, 2500], ha: [200, 900], rejoin: [400, 1500] },
  'stop-fast': { weight: 2, targets: PRIMARY_MOSTLY, hold: [800, 2500], ha: [200, 900], rejoin: [400, 1500] },
  kill: { weight: 3, targets: PRIMARY_MOSTLY, hold: [800, 2500], ha: [200, 900], rejoin: [400, 1500] },
  freeze: { weight: 2, targets: [['primary', 1], ['standby', 1]], hold: [700, 1800], ha: [0, 0], rejoin: [0, 0] },
  'freeze-failover': { weight: 2, targets: PRIMARY, hold: [200, 800], ha: [1500, 2500], rejoin: [800, 1800] },
  terminate: { weight: 2, targets: PRIMARY, hold: [0, 0], ha: [0, 0], rejoin: [0, 0] },
  'promote-live': { weight: 3, targets: STANDBY, hold: [800, 1800], ha: [0, 0], rejoin: [0, 0] },
  'replay-pause': { weight: 1, targets: STANDBY, hold: [1500, 4000], ha: [0, 0], rejoin: [0, 0] },
  'store-down': { weight: 1, targets: PRIMARY, hold: [1500, 3500], ha: [200, 900], rejoin: [400, 1500] },
  'stale-return': { weight: 2, targets: PRIMARY, hold: [1000, 2000], ha: [200, 900], rejoin: [0, 0] },
}

/** One planned fault. Every field is fixed by the seed. */
export interface FaultPlan {
  /** 1-based position in the schedule. */
  readonly index: number
  readonly kind: FaultKind
  readonly target: TargetRole
  /** Steady traffic before the fault is injected, ms. */
  readonly steadyMs: number
  /**
   * How long the fault lasts, ms: a standby's downtime (stop/kill), the freeze, the replay pause,
   * the state-store outage; for `freeze-failover` how long the old primary stays frozen after the
   * promotion; for `promote-live` and `stale-return` how long the old primary runs writable before
   * it is rejoined.
   */
  readonly holdMs: number
  /** How long the HA tool takes to decide to promote after a primary-killing fault, ms. */
  readonly haDelayMs: number
  /** Pause between a promotion and the old primary's rejoin as a standby, ms. */
  readonly rejoinAfterMs: number
  /** Which standby (0 = first by name) the HA tool promotes when both are equally caught up (`promote-live` promotes its target). */
  readonly prefer: 0 | 1
  /** `store-down`: failing calls, or calls that hang until the outage ends. */
  readonly storeMode: 'fail' | 'hang'
  /** `store-down`: whether a primary failover happens during the outage. */
  readonly storeFailover: boolean
}

/** A kind, optionally pinned to a target: `kill`, `kill:primary`, `freeze:standby`. */
export interface KindSpec {
  readonly kind: FaultKind
  readonly target?: TargetChoice
}

export interface ScheduleOptions {
  readonly seed: number
  /** Number of faults (default 12). */
  readonly faults?: number
  /** Kinds to draw from (default: all). */
  readonly kinds?: readonly KindSpec[]
  /** `random` (default): weighted draws; `cycle`: the kinds in the order given, repeated. */
  readonly order?: 'random' | 'cycle'
  /** Range of steady traffic before each fault, ms (default 1500-3000). */
  readonly steadyMs?: readonly [number, number]
}

export const DEFAULT_FAULTS = 12
export const DEFAULT_STEADY_MS: readonly [number, number] = [1500, 3000]

/** Parses `kill`, `kill:primary`, `freeze:standby`; throws on anything else. */
export function parseKindSpec(text: string): KindSpec {
  const [kind, target, extra] = text.trim().split(':')
  if (!FAULT_KINDS.includes(kind as FaultKind) || extra !== undefined) {
    throw new Error(`unknown fault kind ${JSON.stringify(text)} (kinds: ${FAULT_KINDS.join(', ')}; optionally :primary or :standby)`)
  }
  const info = KIND_INFO[kind as FaultKind]
  if (target === undefined) return { kind: kind as FaultKind }
  if (!info.targets.some(([t]) => t === target)) {
    throw new Error(`fault ${kind} cannot target ${target} (allowed: ${info.targets.map(([t]) => t).join(', ')})`)
  }
  return { kind: kind as FaultKind, target: target as TargetChoice }
}

export function formatKindSpec(spec: KindSpec): string {
  return spec.target ? `${spec.kind}:${spec.target}` : spec.kind
}

/** The schedule for `seed`: the same options always give the same plans. */
export function makeSchedule(options: ScheduleOptions): FaultPlan[] {
  const rng = new Rng(options.seed)
  const count = options.faults ?? DEFAULT_FAULTS
  const kinds: readonly KindSpec[] = options.kinds && options.kinds.length > 0 ? options.kinds : FAULT_KINDS.map((kind) => ({ kind }))
  const [steadyLo, steadyHi] = options.steadyMs ?? DEFAULT_STEADY_MS
  const plans: FaultPlan[] = []
  for (let i = 0; i < count; i++) {
    // A fixed number of draws per fault, whatever the kind, so streams stay aligned.
    const uKind = rng.next()
    const uTarget = rng.next()
    const uSide = rng.next()
    const uSteady = rng.next()
    const uHold = rng.next()
    const uHa = rng.next()
    const uRejoin = rng.next()
    const uPrefer = rng.next()
    const uStoreMode = rng.next()
    const uStoreFailover = rng.next()

    const spec = options.order === 'cycle' ? kinds[i % kinds.length]! : pickWeighted(kinds, uKind)
    const info = KIND_INFO[spec.kind]
    const choice: TargetChoice = spec.target ?? pickTarget(info.targets, uTarget)
    const target: TargetRole = choice === 'primary' ? 'primary' : uSide < 0.5 ? 'standby-a' : 'standby-b'
    plans.push({
      index: i + 1,
      kind: spec.kind,
      target,
      steadyMs: scale(uSteady, steadyLo, steadyHi),
      holdMs: scale(uHold, ...info.hold),
      haDelayMs: scale(uHa, ...info.ha),
      rejoinAfterMs: scale(uRejoin, ...info.rejoin),
      prefer: uPrefer < 0.5 ? 0 : 1,
      storeMode: uStoreMode < 0.5 ? 'fail' : 'hang',
      storeFailover: uStoreFailover < 0.6,
    })
  }
  return plans
}

/** One line describing a plan (roles, not nodes). */
export function describePlan(p: FaultPlan): string {
  const parts = [`${p.kind} ${p.target}`, `after ${p.steadyMs} ms steady`]
  switch (p.kind) {
    case 'stop-immediate':
    case 'stop-fast':
    case 'kill':
      parts.push(p.target === 'primary' ? `HA promotes after ${p.haDelayMs} ms, rejoin after ${p.rejoinAfterMs} ms` : `down ${p.holdMs} ms`)
      break
    case 'freeze':
      parts.push(`frozen ${p.holdMs} ms`)
      break
    case 'freeze-failover':
      parts.push(`HA promotes after ${p.haDelayMs} ms, thaw ${p.holdMs} ms later, rejoin after ${p.rejoinAfterMs} ms`)
      break
    case 'promote-live':
      parts.push(`old primary writable ${p.holdMs} ms before rejoin`)
      break
    case 'replay-pause':
      parts.push(`paused ${p.holdMs} ms`)
      break
    case 'store-down':
      parts.push(`store ${p.storeMode} ${p.holdMs} ms${p.storeFailover ? `, primary stop-fast inside (HA after ${p.haDelayMs} ms)` : ''}`)
      break
    case 'stale-return':
      parts.push(`HA promotes after ${p.haDelayMs} ms, old primary back writable ${p.holdMs} ms`)
      break
    case 'terminate':
      break
  }
  const promotes = ['freeze-failover', 'stale-return'].includes(p.kind) || (p.target === 'primary' && ['stop-immediate', 'stop-fast', 'kill'].includes(p.kind)) || (p.kind === 'store-down' && p.storeFailover)
  if (promotes) parts.push(`HA prefers standby-${p.prefer === 0 ? 'a' : 'b'} if equally caught up`)
  return parts.join(', ')
}

function scale(u: number, lo: number, hi: number): number {
  return Math.round(lo + u * (hi - lo))
}

function pickWeighted(kinds: readonly KindSpec[], u: number): KindSpec {
  const total = kinds.reduce((s, k) => s + KIND_INFO[k.kind].weight, 0)
  let x = u * total
  for (const k of kinds) {
    x -= KIND_INFO[k.kind].weight
    if (x < 0) return k
  }
  return kinds[kinds.length - 1]!
}

function pickTarget(targets: ReadonlyArray<readonly [TargetChoice, number]>, u: number): TargetChoice {
  const total = targets.reduce((s, [, w]) => s + w, 0)
  let x = u * total
  for (const [t, w] of targets) {
    x -= w
    if (x < 0) return t
  }
  return targets[targets.length - 1]![0]
}
