/** One member as an HA manager sees it. */
export interface HaMember {
  /** The manager's name for the member (Patroni's member name). */
  readonly name: string
  /** Where the manager says its PostgreSQL listens. */
  readonly host: string
  readonly port: number
  /** The manager's role: Patroni says `leader`, `replica`, `sync_standby` or `standby_leader`. */
  readonly role: string
  /** The manager's state: Patroni says `running`, `streaming`, `starting`, `stopped`, `crashed`, ... */
  readonly state: string
  readonly timeline: number | null
  /** Replication lag in bytes as the manager reports it, or null when unknown. */
  readonly lagBytes: number | null
}

/** What an HA manager says about the cluster at one moment. */
export interface HaView {
  /** The member holding the leader key, or null when none does. */
  readonly leader: string | null
  readonly members: readonly HaMember[]
}

/**
 * An HA manager the pool asks for a second opinion (opt-in through the `haManager` option). Its
 * view is a hint, never an authority: the node it names must still verify as writable, and a
 * manager that cannot be reached changes nothing.
 */
export interface HaManager {
  /** What kind of manager this is, for `status()` (e.g. `'patroni'`). */
  readonly kind: string
  /**
   * Reads the manager's current view within `timeoutMs` (milliseconds).
   * @throws when no API answers in time, or answers something that is not a view.
   */
  view(timeoutMs: number): Promise<HaView>
  /**
   * The pool endpoint name of a member: by default a member matches the endpoint of the same name,
   * else the endpoint at the same host and port. Return null for a member the pool does not use.
   */
  endpointOf?(member: HaMember, endpoints: ReadonlyArray<{ name: string; host: string; port: number }>): string | null
}

/** Default member → endpoint matching: same name, else same host and port. */
export function matchEndpoint(member: HaMember, endpoints: ReadonlyArray<{ name: string; host: string; port: number }>): string | null {
  return endpoints.find((e) => e.name === member.name)?.name ?? endpoints.find((e) => e.host === member.host && e.port === member.port)?.name ?? null
}
