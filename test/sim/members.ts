import type { FailoverPool } from '../../src/failover-pool.js'
import type { EndpointConfig } from '../../src/endpoint/endpoint-config.js'
import { SwitchoverRefusedError } from '../../src/errors.js'
import type { Apps } from './apps.js'
import type { World } from './world.js'

/** One node as the operator hands it to `setEndpoints`. */
export type MemberDefinition = EndpointConfig & { readonly name: string }

/**
 * An operator (or an endpoint provider) changing the pool's endpoints while it runs, through
 * `pool.setEndpoints()`: a member is removed — a standby, or the node writes go to, which is a
 * planned switchover the pool refuses when the new list has no verified primary — and later added
 * back. Calls overlap freely (the pool serialises them). Its draws come from a stream of their own,
 * so a schedule without membership changes replays exactly as before they existed.
 *
 * The world learns each list when its call resolves: from then a removed node must get no read,
 * must not be shown in `status()`, and must have no connection open once `drainTimeoutMs` (and a
 * probe's deadline, for one in flight) has passed.
 */
export class Members {
  /** The list the next change edits: the last one asked for (the applied one once every call has answered). */
  #wanted: readonly MemberDefinition[]
  #applied: readonly MemberDefinition[]
  #asking = 0
  #stopped = false

  constructor(
    private readonly world: World,
    private readonly pool: FailoverPool,
    private readonly apps: Apps,
    private readonly all: readonly MemberDefinition[],
    private readonly random: () => number,
    /** Promotes a standby for a planned switchover; the old primary's name, or null when none can run now. */
    private readonly switchover: () => { readonly name: string } | null,
  ) {
    this.#wanted = all
    this.#applied = all
  }

  /** Changes the members every `[lo, hi)` ms until {@link stop}. */
  start(lo: number, hi: number): void {
    const next = (): void => {
      if (this.#stopped) return
      this.change()
      this.world.clock.setTimeout(next, lo + this.random() * (hi - lo))
    }
    this.world.clock.setTimeout(next, lo + this.random() * (hi - lo))
  }

  stop(): void {
    this.#stopped = true
  }

  /** One change: a removed node back, or one member (sometimes the primary) out; never an empty list. */
  change(): void {
    if (this.apps.stopping || this.pool.ending) return
    const removed = this.all.filter((d) => !this.#wanted.includes(d))
    if (removed.length > 0 && (this.#wanted.length === 1 || this.random() < 0.5)) {
      const back = removed[Math.floor(this.random() * removed.length)]!
      return this.#ask(this.all.filter((d) => d === back || this.#wanted.includes(d)), `add ${back.name}`)
    }
    if (this.#wanted.length < 2) return
    if (this.random() < 0.2) {
      // Decommissioning the primary: promote a standby, then take the old primary out of the list.
      const old = this.#wanted.some((d) => d.name === this.world.truePrimary()?.name) ? this.switchover() : null
      if (old !== null) return this.#ask(this.#wanted.filter((d) => d.name !== old.name), `remove ${old.name} after a switchover`)
    }
    const primary = this.pool.status().primary
    const victim = primary !== null && this.#wanted.some((d) => d.name === primary) && this.random() < 0.35 ? this.#wanted.find((d) => d.name === primary)! : this.#wanted[Math.floor(this.random() * this.#wanted.length)]!
    this.#ask(this.#wanted.filter((d) => d !== victim), `remove ${victim.name}${victim.name === primary ? ' (the primary)' : ''}`)
  }

  /** Every node back (the cluster healed: the pool must settle on all of it). */
  restore(): void {
    this.stop()
    if (this.all.every((d) => this.#wanted.includes(d))) return
    this.#ask(this.all, 'every node back')
  }

  #ask(list: readonly MemberDefinition[], what: string): void {
    this.#wanted = list
    this.#asking++
    const names = list.map((d) => d.name)
    this.world.trace(`members: setEndpoints(${names.join(', ')}): ${what}`)
    this.world.membersAsked(names)
    // Judged as the call resolves, before the pool starts the change queued behind it.
    const applied = (): void => {
      this.#applied = list
      this.world.membersAnswered(names, true)
      const shown = this.pool.status().endpoints.map((e) => e.name)
      if (shown.join() !== names.join()) this.world.fail('members-not-applied', `setEndpoints(${names.join(', ')}) resolved, but status() shows ${shown.join(', ')}`)
    }
    // Refusing to remove the primary (no verified primary in the new list) and an ended pool are the only answers besides success.
    const refused = (err: Error): never => {
      this.world.membersAnswered(names, false)
      const shown = this.pool.status().endpoints.map((e) => e.name)
      const kept = this.#applied.map((d) => d.name)
      if (!this.pool.ending && shown.join() !== kept.join()) this.world.fail('refused-change-applied', `setEndpoints(${names.join(', ')}) was refused (${err.message}), but status() shows ${shown.join(', ')} instead of ${kept.join(', ')}`)
      if (!(err instanceof SwitchoverRefusedError) && !/after calling end on the pool/.test(err.message)) this.world.fail('unexpected-error', `setEndpoints(${names.join(', ')}): ${err.name}: ${err.message}`)
      throw err
    }
    void this.apps.track(`setEndpoints(${names.join(', ')})`, () => this.pool.setEndpoints(list.map((d) => ({ ...d }))).then(applied, refused)).then((result) => {
      if (result instanceof Error) this.world.trace(`members: setEndpoints(${names.join(', ')}) refused: ${result.message}`)
      if (--this.#asking === 0) this.#wanted = this.#applied
    })
  }
}
