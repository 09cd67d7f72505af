import type { Coordinator } from '../../src/topology/coordinator.js'
import type { SimClock } from './clock.js'
import { type ClientWorld, SimClient } from './client.js'
import { type Commit, LEDGER_READ_RE, type NodeWorld, SimNode, type Staleness, type Statement } from './node.js'

/** An invariant broke: the schedule stops here and its seed replays it. */
export class Violation extends Error {
  constructor(
    readonly invariant: string,
    detail: string,
  ) {
    super(`${invariant}: ${detail}`)
    this.name = 'Violation'
  }
}

/** Thrown by the simulated applications' listeners on purpose (an alerting client that is down). */
export class ListenerError extends Error {
  constructor(event: string) {
    super(`listener for '${event}' threw (simulated)`)
    this.name = 'ListenerError'
  }
}

/** What the world knows about one application write. */
export interface WriteRecord {
  readonly id: string
  /** `query`: pool.query; `tx`: a statement on a checked-out client inside BEGIN/COMMIT. */
  readonly kind: 'query' | 'tx'
  readonly commits: Array<Commit & { readonly leftBefore: boolean }>
  outcome: 'pending' | 'acked' | 'unknown' | 'failed'
}

/** The pool's decisions as the world saw them: when it last left and last adopted each node. */
interface PoolView {
  coordinator: Coordinator | null
  readonly leftAt: Map<string, number>
  readonly adoptedAt: Map<string, number>
}

const TRACE_LINES = 80
/** The check for a read sent where nothing made it stale. */
const NOT_STALE = (): null => null

/**
 * Everything simulated, on one clock: the nodes, the network lookups, the ledger of commits, the
 * pool's decisions as observed, and the send-time and commit-time invariants. The applications,
 * faults and end-of-run checks live beside it (apps.ts, faults.ts, run.ts).
 */
export class World implements NodeWorld, ClientWorld {
  readonly nodes: SimNode[] = []
  readonly clients = new Set<SimClient>()
  readonly writes = new Map<string, WriteRecord>()
  readonly pool: PoolView = { coordinator: null, leftAt: new Map(), adoptedAt: new Map() }
  readonly connectTimeoutMs = 1_000
  #pid = 1000
  #timelines = new Map<number, { parent: number; length: number }>()
  #nextTimeline = 2
  readonly #trace: string[] = []
  violation: Violation | null = null
  /**
   * How long after a node stopped being trustworthy (diverged, detached) the pool may still send it
   * reads: it learns from its probes. Infinity for detachment when no lag limit is set.
   */
  readBounds = { divergedMs: Infinity, detachedMs: Infinity, behindMs: Infinity }
  /** `maxReplicaLagBytes` in commits, or null: no byte limit. */
  lagLimitCommits: number | null = null
  #lagTrackedAt = 0
  /** The primary's commits when lag was last tracked with one primary up (what a lagging standby is measured against). */
  #primaryCommits = 0
  /** The coordinator's writer state at the last step (traced when it changes). */
  lastState: object | null = null
  /** The hot-path target of the verified primary at the last step, and when the pool first wrote through it. */
  verifiedTarget: object | null = null
  verifiedAt = 0
  /** Nodes a resolved `setEndpoints` removed (and none since added back), with when it resolved. */
  readonly #removedSince = new Map<string, number>()
  /** How many unanswered `setEndpoints` calls include each node: the pool may probe a node it is asked to add. */
  readonly #askedFor = new Map<string, number>()

  constructor(readonly clock: SimClock) {}

  // ------------------------------------------------------------------ NodeWorld

  nextPid(): number {
    return this.#pid++
  }

  newTimeline(parent: number, length: number): number {
    const tl = Math.max(this.#nextTimeline, parent + 1)
    this.#nextTimeline = tl + 1
    this.#timelines.set(tl, { parent, length })
    return tl
  }

  canFollow(tl: number, length: number, upstreamTl: number): boolean {
    let t = upstreamTl
    let limit = Infinity
    while (t !== tl) {
      const info = this.#timelines.get(t)
      if (!info) return false
      limit = Math.min(limit, info.length)
      t = info.parent
    }
    return length <= limit
  }

  commitTime(writeId: string): number | undefined {
    return this.writes.get(writeId)?.commits[0]?.at
  }

  committed(commit: Commit): void {
    const record = this.writes.get(commit.writeId)
    if (!record) return
    const left = this.pool.leftAt.get(commit.node.name) ?? -1
    const adopted = this.pool.adoptedAt.get(commit.node.name) ?? -1
    record.commits.push({ ...commit, leftBefore: left > adopted })
    if (record.commits.length > 1) this.fail('write-run-twice', `${commit.writeId} committed ${record.commits.length} times (${record.commits.map((c) => `${c.node.name}@${c.at.toFixed(1)}`).join(', ')})`)
  }

  /**
   * Judges a read that reached `node` now against the cluster as it is now, and returns the check
   * to make when the read runs. A read answers from the data its node has when it runs, which is
   * never older than what it had when the read arrived (a frozen node or a proxy may hold the read;
   * a standby only replays forward): so the answer is stale only if it was sent where the pool could
   * have known better, and the node still lacks what made it stale then — still diverged, still
   * detached, or still more than the limit behind the primary's commits at the time of sending. A
   * lag limit decides where reads go; it cannot make an answer in flight newer.
   */
  readArrived(node: SimNode): () => Staleness | null {
    const verdict = this.#staleness(node)
    if (verdict === null) return NOT_STALE
    const primaryCommits = this.#primaryCommits
    const limit = this.lagLimitCommits ?? Infinity
    // What the newer primary held when the read was sent: the answer is stale while the node lacks any of it.
    const newer = verdict.rule === 'branch' && node.upstream !== null ? this.#newerPrimaryInSight(node.upstream.timeline, node) : null
    const wanted = newer === null ? [] : newer.history.slice()
    return () => {
      if (node.role !== 'standby') return null
      if (verdict.rule === 'diverged') return node.divergedSince !== null ? verdict : null
      if (verdict.rule === 'branch') return lacks(node.history, wanted) ? verdict : null
      if (verdict.rule === 'detached') return node.detachedAt !== null ? verdict : null
      return primaryCommits - node.history.length > limit ? verdict : null
    }
  }

  #staleness(node: SimNode): Staleness | null {
    const now = this.clock.now()
    if (node.role === 'standby' && node.divergedSince !== null && node.divergedSeenMs > this.readBounds.divergedMs) {
      return { rule: 'diverged', invariant: 'stale-read', detail: `${node.name} was sent a read at ${now.toFixed(1)}, ${(now - node.divergedSince).toFixed(0)} ms after it diverged (holding commits the cluster lost; ${node.divergedSeenMs.toFixed(0)} ms of it with a primary on a newer timeline in the pool's sight), and answered it still diverged` }
    }
    if (node.role === 'standby' && node.branchSeenMs > this.readBounds.divergedMs) {
      return { rule: 'branch', invariant: 'stale-read', detail: `${node.name} was sent a read at ${now.toFixed(1)}, streaming from ${node.upstream?.name ?? '?'} on timeline ${node.timeline} while a primary on a newer timeline with commits it lacks was in the pool's sight for ${node.branchSeenMs.toFixed(0)} ms, and answered it still on that branch` }
    }
    if (node.role === 'standby' && node.detachedAt !== null && now > node.detachedAt + this.readBounds.detachedMs) {
      return { rule: 'detached', invariant: 'lagging-read', detail: `${node.name} was sent a read at ${now.toFixed(1)}, ${(now - node.detachedAt).toFixed(0)} ms after its WAL receiver stopped, past the lag limit, and answered it still detached` }
    }
    if (node.role === 'standby' && node.behindSeenMs > this.readBounds.behindMs) {
      return { rule: 'behind', invariant: 'lagging-read', detail: `${node.name} was sent a read at ${now.toFixed(1)}, more than ${this.lagLimitCommits} commits behind a primary that answered probes for ${node.behindSeenMs.toFixed(0)} ms of that time, past the byte limit, and answered it still that far behind the primary then` }
    }
    return null
  }

  /**
   * Counts, once per step, how long each standby has been further behind the primary than the byte
   * limit allows while the primary answered (up, taking connections, no proxy holding statements):
   * only then can the pool's probes see the primary's position. With no primary the count stands (a
   * standby can fall no further behind); with several it starts again (there is no one truth to be behind).
   */
  trackLag(): void {
    const limit = this.lagLimitCommits
    const now = this.clock.now()
    const elapsed = now - this.#lagTrackedAt
    this.#lagTrackedAt = now
    this.#trackDivergence(elapsed)
    if (limit === null) return
    const primaries = this.nodes.filter((n) => n.role === 'primary' && n.state !== 'down')
    if (primaries.length === 0) return
    if (primaries.length > 1) {
      for (const node of this.nodes) node.behindSeenMs = 0
      return
    }
    const primary = primaries[0]!
    this.#primaryCommits = primary.history.length
    const answering = primary.state === 'up' && primary.refusal === null && primary.holdMs === 0
    for (const node of this.nodes) {
      const behind = node.role === 'standby' && primary.history.length - node.history.length > limit
      if (!behind) node.behindSeenMs = 0
      else if (answering) node.behindSeenMs += elapsed
    }
  }

  /**
   * Counts, once per step, how long each diverged standby has been so while a primary on a newer
   * timeline was in the pool's sight — a member (not removed by setEndpoints), up, taking
   * connections, no proxy holding statements. A promotion the pool cannot see (the promoted node
   * removed or frozen all along) leaves a standby that replayed past its fork point looking like
   * any standby of a primary that went down: nothing tells the pool before that node is seen.
   */
  #trackDivergence(elapsed: number): void {
    for (const node of this.nodes) {
      this.#trackBranch(node, elapsed)
      if (node.divergedSince === null) {
        node.divergedSeenMs = 0
        continue
      }
      if (this.#newerPrimaryInSight(node.timeline, node) !== null) node.divergedSeenMs += elapsed
    }
  }

  /** A standby streaming from a primary the cluster left, while the newer one has commits it lacks: see {@link SimNode.branchSeenMs}. */
  #trackBranch(node: SimNode, elapsed: number): void {
    const up = node.upstream
    const onBranch = node.role === 'standby' && node.state === 'up' && up !== null && up.role === 'primary' && node.receiving
    const newer = onBranch ? this.#newerPrimaryInSight(up.timeline, node) : null
    if (newer === null || !this.#lacksCommitsOf(node, newer)) node.branchSeenMs = 0
    else node.branchSeenMs += elapsed
  }

  /** A primary on a timeline newer than `timeline` that the pool can see (a member, answering), other than `node`. */
  #newerPrimaryInSight(timeline: number, node: SimNode): SimNode | null {
    return this.nodes.find((m) => m !== node && m.role === 'primary' && m.timeline > timeline && !this.#removedSince.has(m.name) && m.state === 'up' && m.refusal === null && m.holdMs === 0) ?? null
  }

  /** True when `primary` holds a commit `node` does not. */
  #lacksCommitsOf(node: SimNode, primary: SimNode): boolean {
    return lacks(node.history, primary.history)
  }

  trace(line: string): void {
    this.#trace.push(`${this.clock.now().toFixed(1).padStart(9)} ${line}`)
    if (this.#trace.length > TRACE_LINES) this.#trace.shift()
  }

  /** The last lines of the trace, for a failing seed's report. */
  recentTrace(): string {
    return this.#trace.join('\n')
  }

  // ------------------------------------------------------------------ ClientWorld

  lookup(host: string, port: number): SimNode | undefined {
    return this.nodes.find((n) => n.host === host && n.port === port)
  }

  clientCreated(client: SimClient): void {
    this.clients.add(client)
    client.once('end', () => this.clients.delete(client))
  }

  /** A `setEndpoints(names)` call was made. */
  membersAsked(names: readonly string[]): void {
    for (const name of names) this.#askedFor.set(name, (this.#askedFor.get(name) ?? 0) + 1)
  }

  /** A `setEndpoints(names)` call answered; `applied`: it resolved, so the nodes left out are removed from now. */
  membersAnswered(names: readonly string[], applied: boolean): void {
    for (const name of names) this.#askedFor.set(name, this.#askedFor.get(name)! - 1)
    if (!applied) {
      // A refused call may have let a node join for its switchover, then retired it again: its drain starts now.
      for (const name of names) if (this.#removedSince.has(name)) this.#removedSince.set(name, this.clock.now())
      return
    }
    for (const node of this.nodes) {
      if (names.includes(node.name)) this.#removedSince.delete(node.name)
      else if (!this.#removedSince.has(node.name)) this.#removedSince.set(node.name, this.clock.now())
    }
  }

  /** Nodes removed and not being added back by a call still unanswered, with when they were removed. */
  removed(): Array<[string, number]> {
    return [...this.#removedSince].filter(([name]) => (this.#askedFor.get(name) ?? 0) === 0)
  }

  sending(client: SimClient, statement: Statement): void {
    const removedAt = this.#removedSince.get(client.node!.name)
    if (removedAt !== undefined && (this.#askedFor.get(client.node!.name) ?? 0) === 0 && LEDGER_READ_RE.test(statement.sql.trim())) {
      this.fail('read-on-removed', `a read was sent to ${client.node!.name} at ${this.clock.now().toFixed(1)}, after setEndpoints removed it (resolved at ${removedAt.toFixed(1)})`)
    }
    if (!/^INSERT INTO ledger/i.test(statement.sql)) return
    const id = String(statement.values[0])
    const record = this.writes.get(id)
    const node = client.node!
    const left = this.pool.leftAt.get(node.name) ?? -1
    // A connection opened before the pool last left its node must have been cut by that leave.
    if (client.openedAt !== null && left >= client.openedAt) {
      this.fail('sent-after-left', `${id} sent on a connection to ${node.name} opened at ${client.openedAt.toFixed(1)}, which the pool left at ${left.toFixed(1)}`)
    }
    if (record?.kind === 'query') {
      const state = this.pool.coordinator?.state
      if (!state || state.kind !== 'verified' || state.primary.name !== node.name) {
        this.fail('write-sent-off-primary', `${id} sent to ${node.name} while the pool's writer state is ${state?.kind}${state?.kind === 'verified' ? ` (${state.primary.name})` : ''}`)
      }
    }
  }

  unhandledClientError(client: SimClient, error: Error): void {
    this.fail('uncaught', `'error' emitted on a client of ${client.node?.name} (${client.applicationName || 'pool'}; last statement ${client.lastSql.slice(0, 50) || 'none'}) with no listener: ${error.message}`)
  }

  // ------------------------------------------------------------------ the pool, observed

  /**
   * Hooks the pool's coordinator: every leave and adoption is timestamped, so a commit can be
   * judged against what the pool had decided when it happened.
   */
  observe(coordinator: Coordinator): void {
    this.pool.coordinator = coordinator
    const target = coordinator as unknown as { leave(e: { name: string }, reason: string): void; adopt(e: { name: string }, ...rest: unknown[]): void }
    const leave = target.leave.bind(coordinator)
    const adopt = target.adopt.bind(coordinator)
    target.leave = (endpoint, reason) => {
      this.pool.leftAt.set(endpoint.name, this.clock.now())
      this.trace(`pool leaves ${endpoint.name}: ${reason}`)
      leave(endpoint, reason)
    }
    target.adopt = (endpoint, ...rest) => {
      this.pool.adoptedAt.set(endpoint.name, this.clock.now())
      this.trace(`pool adopts ${endpoint.name}`)
      adopt(endpoint, ...rest)
    }
  }

  // ------------------------------------------------------------------ writes

  /** Registers an application write before it is issued. */
  newWrite(id: string, kind: WriteRecord['kind']): WriteRecord {
    const record: WriteRecord = { id, kind, commits: [], outcome: 'pending' }
    this.writes.set(id, record)
    return record
  }

  /** The application was told its write succeeded. */
  acked(record: WriteRecord): void {
    record.outcome = 'acked'
    const commit = record.commits[0]
    if (!commit) return this.fail('acked-not-committed', `${record.id} acknowledged but never committed anywhere`)
    if (commit.leftBefore) this.fail('acked-by-left-node', `${record.id} committed on ${commit.node.name} at ${commit.at.toFixed(1)}, after the pool had left it, and was acknowledged`)
  }

  fail(invariant: string, detail: string): void {
    if (this.violation) return
    this.violation = new Violation(invariant, detail)
    this.trace(`VIOLATION ${this.violation.message}`)
  }

  /** The node PostgreSQL itself would call the primary: writable, on the newest timeline. */
  truePrimary(): SimNode | null {
    const writable = this.nodes.filter((n) => n.role === 'primary' && n.state !== 'down')
    if (writable.length === 0) return null
    return writable.reduce((a, b) => (b.timeline > a.timeline ? b : a))
  }
}

/** True when `wanted` holds a commit `history` does not (they part somewhere, or `history` is shorter). */
function lacks(history: readonly string[], wanted: readonly string[]): boolean {
  if (wanted.length > history.length) return true
  for (let i = 0; i < wanted.length; i++) if (wanted[i] !== history[i]) return true
  return false
}
