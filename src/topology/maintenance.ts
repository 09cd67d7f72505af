import type { Endpoint } from '../endpoint/endpoint.js'
import { roleOf } from '../endpoint/role-probe.js'
import { ConfigError, SwitchoverRefusedError, maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import { runAdoptionHook } from './adoption-hook.js'
import type { Coordinator } from './coordinator.js'
import { lossOf, shownPrimary, writingTo } from './writer-state.js'

/**
 * Planned operations on the topology — switchover, pause and resume, drain — each expressed as
 * transitions of the coordinator's writer state, so they obey the same rules as failovers.
 * Switchovers run one at a time.
 */
export class Maintenance {
  #switching: Promise<unknown> = Promise.resolve()

  constructor(
    private readonly coordinator: Coordinator,
    private readonly options: ResolvedOptions,
  ) {}

  /** See FailoverPool#switchTo. An Endpoint (not a name) when two may share one: a node given new settings. */
  switchTo(name: string | Endpoint): Promise<void> {
    const run = this.#switching.then(() => this.#switchTo(name))
    this.#switching = run.catch(() => undefined)
    return run
  }

  async #switchTo(which: string | Endpoint): Promise<void> {
    const target = typeof which === 'string' ? this.#endpoint(which, 'switchTo(name)') : which
    const name = target.name
    let probe
    try {
      probe = await target.probe(this.options.probeTimeoutMs)
    } catch (err) {
      throw new SwitchoverRefusedError(name, `unreachable (${maskPassword((err as Error).message)})`, { cause: err })
    }
    const role = roleOf(probe)
    if (role !== 'primary') throw new SwitchoverRefusedError(name, `it is ${role === 'standby' ? 'a standby (promote it first)' : 'read-only'}`)
    const { cluster } = this.coordinator
    if (this.options.topology === 'physical') {
      if (cluster.systemId !== null && probe.systemId !== cluster.systemId) throw new SwitchoverRefusedError(name, 'it belongs to another cluster (system identifier differs)')
      if (cluster.minTimeline !== null && probe.timeline !== null && probe.timeline < cluster.minTimeline) {
        throw new SwitchoverRefusedError(name, `it is on timeline ${probe.timeline}, older than the current ${cluster.minTimeline}: it may lack writes`)
      }
    }
    const health = this.coordinator.health(target)
    const s = this.coordinator.state
    if (s.kind === 'ended') throw new Error('Cannot use a pool after calling end on the pool')
    health.refusedByHook = false
    if (s.kind === 'verified' && s.primary === target) return
    const old = writingTo(s)
    const paused = s.kind === 'paused'
    const loss = lossOf(s)
    const from = old?.name ?? loss?.from ?? cluster.storedPrimary
    const reason = `switchTo(${name})`
    const since = this.options.clock.now()
    const switchLoss = { from, reason, since: loss?.since ?? since }
    const hooked = this.options.onPromote !== null && from !== name
    // One transition: the old primary is left and the writer waits for the new one at once.
    this.coordinator.transition(() => {
      if (old !== null && old !== target) this.coordinator.leave(old, reason)
      if (hooked) this.coordinator.replaceState({ kind: 'adopting', candidate: target, loss: switchLoss }, reason)
    })
    if (hooked) {
      const context = { from, to: name, epoch: cluster.nextEpoch(this.coordinator.sync.record), reason }
      const verdict = await runAdoptionHook(this.coordinator, target, this.options, context)
      if (verdict === 'moved-on') throw new SwitchoverRefusedError(name, `the pool changed state while its promotion hook ran (${this.coordinator.state.kind})`)
      if (verdict === 'failed') {
        this.coordinator.replaceState({ kind: 'discovering', loss: switchLoss, suspect: null, refusal: null }, `${reason}: promotion hook failed`)
        throw new SwitchoverRefusedError(name, 'its promotion hook failed')
      }
    }
    this.coordinator.transition(() => {
      health.fenced = false
      cluster.raiseTimeline(probe.timeline)
      topologyLog('switching writes to %s', name)
      this.coordinator.adopt(target, from, switchLoss, paused)
    })
  }

  /** See FailoverPool#pauseWrites. */
  pauseWrites(): void {
    const s = this.coordinator.state
    if (s.kind === 'paused' || s.kind === 'ended') return
    topologyLog('writes paused')
    this.coordinator.replaceState({ kind: 'paused', primary: s.kind === 'verified' ? s.primary : null, loss: lossOf(s) }, 'writes paused')
  }

  /** See FailoverPool#resumeWrites. */
  resumeWrites(): void {
    const s = this.coordinator.state
    if (s.kind !== 'paused') return
    topologyLog('writes resumed')
    // The primary may have changed during the pause: verify it again (nothing is cut if it did not).
    this.coordinator.replaceState({ kind: 'discovering', loss: s.loss, suspect: s.primary, refusal: null }, 'writes resumed: re-verifying the primary')
  }

  /** See FailoverPool#drain. */
  async drain(name: string): Promise<void> {
    const endpoint = this.#endpoint(name, 'drain(name)')
    this.coordinator.transition(() => {
      this.coordinator.health(endpoint).drained = true
      if (shownPrimary(this.coordinator.state) === endpoint) this.pauseWrites()
      this.coordinator.effect(() => endpoint.refreshPools())
    })
    await Promise.all([endpoint.write.whenEmpty(), endpoint.read.whenEmpty()])
  }

  /** See FailoverPool#undrain. */
  undrain(name: string): void {
    this.coordinator.health(this.#endpoint(name, 'undrain(name)')).drained = false
  }

  #endpoint(name: string, field: string): Endpoint {
    const endpoint = this.coordinator.endpoints.find((e) => e.name === name)
    if (!endpoint) throw new ConfigError(field, name, `no such endpoint (endpoints: ${this.coordinator.endpoints.map((e) => e.name).join(', ')})`)
    return endpoint
  }
}
