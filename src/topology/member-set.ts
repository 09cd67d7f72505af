import type { Clock } from '../clock.js'
import type { BreakerSettings } from '../endpoint/breaker.js'
import type { Endpoint } from '../endpoint/endpoint.js'
import type { ProbeResult } from '../endpoint/role-probe.js'
import { EndpointHealth } from './endpoint-health.js'

/** The last probe of a lost primary that was then removed from the endpoints. */
export interface RemovedPrimaryProbe {
  readonly name: string
  readonly probe: ProbeResult
}

/** What a membership change did: the endpoints that left and the ones that joined. */
export interface MemberChange {
  readonly removed: Endpoint[]
  readonly added: Endpoint[]
}

/**
 * The pool's endpoints and each one's {@link EndpointHealth}, and what outlives a member's removal:
 * the distrust of a fenced or diverged node (a node removed while unsafe comes back unsafe) and the
 * lost primary's last probe (standbys are still measured against it). Written only by the
 * coordinator, inside its transitions; everything else reads.
 */
export class MemberSet {
  /** Replaced as a whole by a change, never changed in place (readers may hold the old array). */
  #endpoints: readonly Endpoint[]
  /** A removed endpoint's entry lives on only while late reports may still name it (a WeakMap). */
  readonly #health = new WeakMap<Endpoint, EndpointHealth>()
  /** What made a removed node unsafe, by name, until it is added back. Bounded by the names ever removed while unsafe. */
  readonly #distrusted = new Map<string, { readonly fenced: boolean; readonly formerPrimary: boolean }>()
  #lostPrimaryProbe: RemovedPrimaryProbe | null = null

  constructor(
    endpoints: readonly Endpoint[],
    private readonly breaker: BreakerSettings,
    private readonly clock: Clock,
  ) {
    this.#endpoints = endpoints
    for (const e of endpoints) this.#health.set(e, new EndpointHealth(breaker, clock))
  }

  /** The endpoints now (a new array after each change). */
  get list(): readonly Endpoint[] {
    return this.#endpoints
  }

  /** True while `endpoint` is a member: what a removed one reports late moves nothing. */
  includes(endpoint: Endpoint): boolean {
    return this.#endpoints.includes(endpoint)
  }

  /** The health record of a member, or of a removed endpoint still referenced. */
  health(endpoint: Endpoint): EndpointHealth {
    return this.#health.get(endpoint)!
  }

  /**
   * The last probe of the primary the pool lost, when that node was then removed from the
   * endpoints: standbys are still measured against the position it was seen at
   * (routing/read-targets.ts), so a byte lag limit does not lapse because the lost primary left.
   */
  get lostPrimaryProbe(): RemovedPrimaryProbe | null {
    return this.#lostPrimaryProbe
  }

  /** The endpoints `next` would remove. */
  removedBy(next: readonly Endpoint[]): Endpoint[] {
    return this.#endpoints.filter((e) => !next.includes(e))
  }

  /**
   * Makes `next` the members. A removed node keeps its distrust by name, and its last probe is kept
   * when it is the primary the pool lost (`lostFrom`); an added one gets a fresh health record, or
   * the distrust its name was removed with: a new Endpoint for the same name is the same server
   * until a probe clears it (streaming, rewound).
   */
  replace(next: readonly Endpoint[], lostFrom: string | null): MemberChange {
    const current = this.#endpoints
    const removed = current.filter((e) => !next.includes(e))
    const added = next.filter((e) => !current.includes(e))
    for (const e of removed) {
      if (e.name === lostFrom && e.lastProbe !== null) this.#lostPrimaryProbe = { name: e.name, probe: e.lastProbe }
      const h = this.health(e)
      if (h.fenced || h.formerPrimary) this.#distrusted.set(e.name, { fenced: h.fenced, formerPrimary: h.formerPrimary })
    }
    for (const e of added) {
      const health = new EndpointHealth(this.breaker, this.clock)
      const distrust = this.#distrusted.get(e.name)
      if (distrust !== undefined) {
        health.fenced = distrust.fenced
        health.formerPrimary = distrust.formerPrimary
        this.#distrusted.delete(e.name)
      }
      this.#health.set(e, health)
    }
    this.#endpoints = [...next]
    return { removed, added }
  }
}
