import type { Endpoint } from '../endpoint/endpoint.js'
import type { ResolvedEndpoint } from '../endpoint/endpoint-config.js'
import { roleOf } from '../endpoint/role-probe.js'
import { SwitchoverRefusedError, asError, maskPassword } from '../errors.js'
import { topologyLog } from '../log.js'
import type { ResolvedOptions } from '../options.js'
import type { Coordinator } from './coordinator.js'
import type { Maintenance } from './maintenance.js'
import { writingTo } from './writer-state.js'

/** Makes the Endpoint of one resolved definition (the pool's factory: lanes, monitor, events). */
export type EndpointFactory = (resolved: ResolvedEndpoint) => Endpoint

/** How many times a change retries the switchover when a failover moves writes onto a node it removes meanwhile. */
const MAX_SWITCHOVERS = 3

/**
 * Changes the pool's endpoints while it runs (`pool.setEndpoints()`, endpoint providers), one
 * change at a time. An endpoint whose definition is unchanged is kept as it is (its connections,
 * health and breaker); a new one is probed before it takes traffic; a removed one gets no new
 * checkout from the moment the change is applied, and is retired: idle connections close, checked-out
 * clients get `drainTimeoutMs` to finish and are then cut, and nothing of it is left (probes,
 * timers, status, metrics). Removing the node writes go to is a planned switchover to the verified
 * primary of the new list first, refused when there is none.
 */
export class Membership {
  #changing: Promise<unknown> = Promise.resolve()
  readonly #retiring = new Set<Promise<void>>()
  /** Endpoints handed to {@link #retire} (they close themselves; never closed twice). */
  readonly #retired = new WeakSet<Endpoint>()

  constructor(
    private readonly coordinator: Coordinator,
    private readonly maintenance: Maintenance,
    private readonly options: ResolvedOptions,
    private readonly makeEndpoint: EndpointFactory,
  ) {}

  /** Applies `next` after the changes before it (serialised); resolves once it is applied (retiring goes on after). */
  change(next: readonly ResolvedEndpoint[], source: string): Promise<void> {
    const run = this.#changing.then(() => this.#change(next, source))
    this.#changing = run.catch(() => undefined)
    return run
  }

  /** Resolves once every removed endpoint is retired (pool.end() waits for it). */
  async retired(): Promise<void> {
    while (this.#retiring.size > 0) await Promise.all([...this.#retiring])
  }

  async #change(definitions: readonly ResolvedEndpoint[], source: string): Promise<void> {
    const reason = `endpoints changed by ${source}`
    const coordinator = this.coordinator
    // A function, not a narrowed property: the pool may end while the change awaits a switchover.
    const ended = (): boolean => coordinator.state.kind === 'ended'
    if (ended()) throw new Error('Cannot use a pool after calling end on the pool')
    const current = coordinator.endpoints
    const next = definitions.map((d) => current.find((e) => sameDefinition(e.definition, d)) ?? this.makeEndpoint(d))
    const fresh = next.filter((e) => !current.includes(e))
    if (fresh.length === 0 && current.every((e) => next.includes(e))) return
    try {
      for (let attempt = 1; ; attempt++) {
        const s = coordinator.state
        const writer = writingTo(s) ?? (s.kind === 'adopting' ? s.candidate : null)
        if (writer === null || next.includes(writer)) break
        if (attempt > MAX_SWITCHOVERS) throw new SwitchoverRefusedError(writer.name, 'writes kept moving onto a node the change removes', { removing: true })
        const target = await this.#verifiedPrimary(next, writer)
        // The new primary joins first (writes only go to a member), then writes move there; the
        // other new endpoints join with the change itself. (By the object: a node whose settings
        // changed is a new endpoint with the old one's name.)
        if (!coordinator.endpoints.includes(target)) coordinator.changeMembership([...coordinator.endpoints, target], `${reason}: adding ${target.name} before switching over`, source)
        await this.maintenance.switchTo(target)
      }
    } catch (err) {
      this.#undoJoins(fresh, reason, source)
      // Endpoints made for the change and never used are closed.
      const unused = fresh.filter((e) => !coordinator.endpoints.includes(e) && !this.#retired.has(e))
      await Promise.all(unused.map((e) => e.end().catch(() => undefined)))
      throw err
    }
    if (ended()) {
      // The pool ended during the switchover: it closed its members; the endpoints made for the change are closed here.
      await Promise.all(fresh.filter((e) => !coordinator.endpoints.includes(e)).map((e) => e.end().catch(() => undefined)))
      throw new Error('Cannot use a pool after calling end on the pool')
    }
    const removed = coordinator.changeMembership(next, reason, source)
    for (const e of removed) this.#retire(e)
  }

  /**
   * A refused change leaves the list as it was: a new primary that joined for a switchover that then
   * failed (its promotion hook, a failover meanwhile) leaves again and is retired — unless writes
   * went there after all, which no list change may undo.
   */
  #undoJoins(fresh: readonly Endpoint[], reason: string, source: string): void {
    const coordinator = this.coordinator
    if (coordinator.state.kind === 'ended') return
    const s = coordinator.state
    const writer = writingTo(s) ?? (s.kind === 'adopting' ? s.candidate : null)
    const joined = coordinator.endpoints.filter((e) => fresh.includes(e) && e !== writer)
    if (joined.length === 0) return
    const removed = coordinator.changeMembership(coordinator.endpoints.filter((e) => !joined.includes(e)), `${reason}: refused, ${joined.map((e) => e.name).join(', ')} leave again`, source)
    for (const e of removed) this.#retire(e)
  }

  /** The node of `next` (other than `leaving`) that a probe of each verifies as this cluster's primary. */
  async #verifiedPrimary(next: readonly Endpoint[], leaving: Endpoint): Promise<Endpoint> {
    const { cluster } = this.coordinator
    const candidates = next.filter((e) => e !== leaving)
    const answers = await Promise.all(
      candidates.map(async (e) => {
        try {
          const probe = await e.probe(this.options.probeTimeoutMs)
          const role = roleOf(probe)
          if (role !== 'primary') return { e, ok: false, why: role }
          if (cluster.systemId !== null && probe.systemId !== cluster.systemId) return { e, ok: false, why: 'another cluster' }
          if (cluster.minTimeline !== null && probe.timeline !== null && probe.timeline < cluster.minTimeline) return { e, ok: false, why: `timeline ${probe.timeline}` }
          return { e, ok: true, why: 'primary' }
        } catch (err) {
          return { e, ok: false, why: `unreachable (${maskPassword(asError(err).message)})` }
        }
      }),
    )
    const primaries = answers.filter((a) => a.ok)
    if (primaries.length === 1) return primaries[0]!.e
    const seen = answers.map((a) => `${a.e.name}: ${a.why}`).join(', ') || 'no other endpoint'
    throw new SwitchoverRefusedError(
      leaving.name,
      primaries.length === 0 ? `no endpoint of the new list is a verified primary (${seen})` : `the new list has several writable nodes (${seen})`,
      { removing: true },
    )
  }

  /** Idle connections close now; checked-out clients get drainTimeoutMs, then are cut; then the endpoint is closed. */
  #retire(endpoint: Endpoint): void {
    this.#retired.add(endpoint)
    const clock = this.options.clock
    const retiring = (async () => {
      topologyLog('retiring %s: removed from the endpoints', endpoint.name)
      const ended = endpoint.end()
      let timer: ReturnType<typeof clock.setTimeout> | undefined
      const drained = await Promise.race([
        ended.then(() => true),
        new Promise<boolean>((resolve) => {
          timer = clock.setTimeout(() => resolve(false), this.options.drainTimeoutMs)
        }),
      ])
      clock.clearTimeout(timer!)
      if (!drained) {
        topologyLog('retiring %s: clients still checked out after %d ms are cut', endpoint.name, this.options.drainTimeoutMs)
        endpoint.leave(0)
        await ended.catch(() => undefined)
      }
    })().catch(() => undefined)
    this.#retiring.add(retiring)
    void retiring.finally(() => this.#retiring.delete(retiring))
  }
}

/** The same node, reached the same way: name, address, database, read weight and client settings. */
function sameDefinition(a: ResolvedEndpoint, b: ResolvedEndpoint): boolean {
  if (a.name !== b.name || a.host !== b.host || a.port !== b.port || a.database !== b.database || a.weight !== b.weight) return false
  const password = (c: object): unknown => (c as { password?: unknown }).password
  return JSON.stringify(a.config) === JSON.stringify(b.config) && password(a.config) === password(b.config)
}
