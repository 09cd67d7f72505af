import type { SimNode } from './node.js'
import type { World } from './world.js'

/** The faults the simulator injects; each heals itself after a drawn duration. */
export const FAULT_KINDS = [
  'crash-primary',
  'promote-old-left-writable',
  'freeze',
  'restart-in-place',
  'terminate-backend',
  'proxy-hold',
  'refuse-connects',
  'idle-sweep',
  'read-only-primary',
  'detach-standby',
  'diverged-rejoin',
  'promote-by-hand',
] as const

export type FaultKind = (typeof FAULT_KINDS)[number]

/** Faults that leave the node answering as it did: the pool must not react beyond the one session. */
const HARMLESS: ReadonlySet<FaultKind> = new Set(['terminate-backend', 'idle-sweep'])

/**
 * The cluster's life under faults, as an HA manager would lead it: a crashed primary is restarted
 * in place or replaced by promoting the most advanced standby, an old primary rejoins as a standby
 * (rewound), a standby may be promoted while the old primary is still up and writable. At most one
 * fault that changes roles is in progress at a time, so the cluster always has a way back.
 */
export class Faults {
  /** Simulated time of the last fault that could change what a node answers (harmless ones excluded). */
  lastDisturbance = 0
  #roleFault = false
  #stopped = false
  readonly log: string[] = []

  constructor(
    private readonly world: World,
    private readonly kinds: readonly FaultKind[],
  ) {}

  get #clock() {
    return this.world.clock
  }

  /** Injects a fault every `[lo, hi)` ms until {@link stop}. */
  start(lo: number, hi: number): void {
    const next = (): void => {
      if (this.#stopped) return
      this.inject(this.#clock.pick(this.kinds))
      this.#clock.setTimeout(next, this.#clock.between(lo, hi))
    }
    this.#clock.setTimeout(next, this.#clock.between(lo, hi))
  }

  stop(): void {
    this.#stopped = true
  }

  inject(kind: FaultKind): void {
    const primary = this.world.truePrimary()
    const standbys = this.world.nodes.filter((n) => n.role === 'standby' && n.state === 'up')
    const any = this.#clock.pick(this.world.nodes)
    if (!HARMLESS.has(kind)) this.lastDisturbance = this.#clock.now()
    switch (kind) {
      case 'crash-primary': {
        if (!primary || this.#roleFault) return
        this.#roleFault = true
        this.#note(`crash primary ${primary.name}`)
        primary.kill()
        this.#later(50, 1500, () => {
          const candidate = this.#bestStandby()
          if (candidate === null || this.#clock.chance(0.35)) {
            this.#note(`restart ${primary.name} in place`)
            primary.start()
            this.#roleFault = false
            return
          }
          this.#failover(primary, candidate, 100, 1500)
        })
        return
      }
      case 'promote-old-left-writable': {
        const candidate = this.#bestStandby()
        if (!primary || !candidate || this.#roleFault) return
        this.#roleFault = true
        this.#note(`promote ${candidate.name}; ${primary.name} stays up and writable`)
        this.#failover(primary, candidate, 100, 2000)
        return
      }
      case 'promote-by-hand': {
        // `pg_ctl promote` on one standby and nothing else: the old primary stays up and writable, and
        // its other standbys go on streaming from it (on the old timeline) until someone repoints them.
        const candidate = this.#bestStandby()
        if (!primary || !candidate || this.#roleFault) return
        this.#roleFault = true
        this.#note(`promote ${candidate.name} by hand; ${primary.name} stays up and writable, its standbys still stream from it`)
        candidate.promote()
        this.#later(300, 3000, () => {
          this.#note(`the operator repoints ${primary.name}'s standbys at ${candidate.name}`)
          for (const n of this.world.nodes) if (n !== candidate && n.role === 'standby' && n.upstream === primary) this.#repoint(n, candidate)
          this.#later(0, 1000, () => {
            this.#note(`${primary.name} rejoins as a standby of ${candidate.name} (rewound)`)
            if (primary.role === 'primary') primary.rejoinAsStandby(candidate, true)
            this.#roleFault = false
            this.lastDisturbance = this.#clock.now()
          })
        })
        return
      }
      case 'freeze': {
        if (any.state !== 'up') return
        this.#note(`freeze ${any.name}`)
        any.freeze()
        this.#later(50, 2500, () => {
          this.#note(`thaw ${any.name}`)
          any.thaw()
          this.lastDisturbance = this.#clock.now()
        })
        return
      }
      case 'restart-in-place': {
        if (any.state !== 'up' || (any.role === 'primary' && this.#roleFault)) return
        this.#note(`restart ${any.name}`)
        any.kill()
        this.#later(20, 400, () => {
          any.start()
          this.lastDisturbance = this.#clock.now()
        })
        return
      }
      case 'terminate-backend': {
        const sessions = [...any.sessions]
        if (sessions.length === 0 || any.state !== 'up') return
        const session = this.#clock.pick(sessions)
        this.#note(`pg_terminate_backend(${session.pid}) on ${any.name}${session.monitoring ? ' (a monitoring session)' : ''}`)
        any.terminate(session)
        return
      }
      case 'proxy-hold': {
        if (!primary) return
        const ms = this.#clock.between(100, 1500)
        this.#note(`proxy in front of ${primary.name} holds statements ${ms.toFixed(0)} ms`)
        primary.holdMs = ms
        this.#later(100, 2000, () => {
          primary.holdMs = 0
          this.lastDisturbance = this.#clock.now()
        })
        return
      }
      case 'refuse-connects': {
        if (any.state !== 'up' || (any.role === 'primary' && this.#roleFault)) return
        const refusal = this.#clock.pick([
          { code: '53300', message: 'sorry, too many clients already' },
          { code: '28P01', message: 'password authentication failed for user "app"' },
          { code: '3D000', message: 'database "app" does not exist' },
        ])
        this.#note(`${any.name} restarts and refuses connections (${refusal.code})`)
        any.kill()
        any.refusal = refusal
        any.start()
        this.#later(200, 3000, () => {
          any.refusal = null
          this.lastDisturbance = this.#clock.now()
        })
        return
      }
      case 'idle-sweep': {
        const idle = [...any.sessions].filter((s) => s.busy === 0)
        if (idle.length === 0 || any.state !== 'up') return
        this.#note(`idle_session_timeout ends ${idle.length} idle sessions on ${any.name}`)
        for (const s of idle) any.terminate(s)
        return
      }
      case 'detach-standby': {
        const standby = standbys.length > 0 ? this.#clock.pick(standbys) : null
        if (!standby || standby.detachedAt !== null) return
        this.#note(`${standby.name}'s WAL receiver can no longer reach its upstream`)
        standby.receiverUp = false
        standby.detachedAt = this.#clock.now()
        this.#later(200, 3000, () => {
          standby.receiverUp = true
          standby.detachedAt = null
          standby.replicateSoon()
          this.lastDisturbance = this.#clock.now()
        })
        return
      }
      case 'diverged-rejoin': {
        // An old primary that wrote after the promotion comes back as a standby without pg_rewind.
        const candidate = this.#bestStandby()
        if (!primary || !candidate || this.#roleFault) return
        this.#roleFault = true
        this.#note(`promote ${candidate.name}; ${primary.name} keeps writing, then rejoins WITHOUT pg_rewind`)
        candidate.promote()
        for (const n of this.world.nodes) if (n !== candidate && n !== primary && n.role === 'standby') this.#repoint(n, candidate)
        this.#later(100, 1500, () => {
          primary.rejoinAsStandby(candidate, false)
          this.#note(`${primary.name} rejoined as a standby of ${candidate.name}${primary.diverged ? ', diverged' : ''}`)
          this.#later(500, 3000, () => {
            this.#note(`${primary.name} rewound`)
            primary.rejoinAsStandby(candidate, true)
            this.#roleFault = false
            this.lastDisturbance = this.#clock.now()
          })
        })
        return
      }
      case 'read-only-primary': {
        if (!primary || this.#roleFault) return
        this.#note(`${primary.name} set default_transaction_read_only`)
        primary.readOnly = true
        this.#later(100, 1000, () => {
          primary.readOnly = false
          this.lastDisturbance = this.#clock.now()
        })
        return
      }
    }
  }

  /**
   * A planned switchover, as an operator runs one before taking the old primary out of the pool's
   * list: the most advanced standby is promoted and the old primary stays up and writable until it
   * rejoins as a standby (rewound). Returns the old primary, or null while another role change is
   * in progress (or there is no standby).
   */
  switchover(): SimNode | null {
    const primary = this.world.truePrimary()
    const candidate = this.#bestStandby()
    if (!primary || !candidate || this.#roleFault || this.#stopped) return null
    this.#roleFault = true
    this.lastDisturbance = this.#clock.now()
    this.#note(`switchover: promote ${candidate.name}; ${primary.name} stays up and writable until it rejoins`)
    this.#failover(primary, candidate, 300, 2000)
    return primary
  }

  /** Ends every fault: nodes up and thawed, refusals and holds gone, one primary, standbys following it. */
  healAll(): void {
    this.stop()
    for (const n of this.world.nodes) {
      n.thaw()
      n.refusal = null
      n.holdMs = 0
      n.readOnly = false
      n.receiverUp = true
      n.detachedAt = null
    }
    const primaries = this.world.nodes.filter((n) => n.role === 'primary')
    let primary = this.world.truePrimary() ?? primaries[0] ?? this.world.nodes[0]!
    if (primary.role !== 'primary') {
      primary = this.#bestStandby() ?? primary
      primary.promote()
    }
    primary.start()
    for (const n of this.world.nodes) {
      if (n === primary) continue
      n.checkDiverged()
      if (n.role === 'primary' || n.state === 'down' || n.upstream !== primary || n.diverged) n.rejoinAsStandby(primary, true)
      // A WAL receiver that reconnects streams at once (and crosses a timeline switch), commits or not.
      else n.replicateSoon()
    }
    this.lastDisturbance = this.#clock.now()
    this.#note(`healed: ${primary.name} is the primary`)
  }

  /** A standby follows the new primary; one that replayed past the fork point cannot, and is diverged until rewound. */
  #repoint(standby: SimNode, next: SimNode): void {
    standby.follow(next)
    standby.checkDiverged()
    if (standby.diverged) this.#note(`${standby.name} had replayed past ${next.name}'s fork point: diverged`)
  }

  #failover(old: SimNode, next: SimNode, lo: number, hi: number): void {
    next.promote()
    for (const n of this.world.nodes) if (n !== next && n !== old && n.role === 'standby') this.#repoint(n, next)
    this.#later(lo, hi, () => {
      this.#note(`${old.name} rejoins as a standby of ${next.name} (rewound)`)
      old.rejoinAsStandby(next, true)
      this.#roleFault = false
      this.lastDisturbance = this.#clock.now()
    })
  }

  /** The up standby with the most commits (what an HA manager promotes). */
  #bestStandby(): SimNode | null {
    const standbys = this.world.nodes.filter((n) => n.role === 'standby' && n.state === 'up')
    if (standbys.length === 0) return null
    return standbys.reduce((a, b) => (b.history.length > a.history.length ? b : a))
  }

  #later(lo: number, hi: number, fn: () => void): void {
    this.#clock.setTimeout(() => {
      if (!this.#stopped) fn()
    }, this.#clock.between(lo, hi))
  }

  #note(line: string): void {
    this.world.trace(`fault: ${line}`)
  }
}
