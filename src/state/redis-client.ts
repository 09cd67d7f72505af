/** What a RedisStateStore needs of an ioredis client (structural: the library never imports ioredis). */
/**
 * The few methods of an ioredis client this store calls. Declared structurally so the library
 * never imports ioredis (an optional peer dependency): pass any `new Redis(...)` instance.
 */
export interface RedisLike {
  /** `EVAL script numkeys ...keysAndArgs`; resolves to the script's reply. */
  eval(script: string, numKeys: number, ...keysAndArgs: string[]): Promise<unknown>
  /** `GET key`; null when the key does not exist. */
  get(key: string): Promise<string | null>
  /** A new connection with the same options, used for the subscription of {@link RedisStateStore.watch}. */
  duplicate(): RedisSubscriberLike
  /**
   * Optional (ioredis has it): the connection's state, `'ready'` once commands can be sent. With
   * `enableOfflineQueue: false` a command sent before then fails at once, so the store waits for
   * `'ready'` (within the command's deadline) instead of losing the stored hint at startup.
   */
  readonly status?: string
  /** Optional (ioredis has it): used with {@link status} to wait for `'ready'`. */
  once?(event: 'ready', listener: () => void): unknown
  /** Optional: removes the `'ready'` listener when the wait ends first. */
  removeListener?(event: 'ready', listener: () => void): unknown
}

/** The methods of the duplicated connection that carries the subscription. */
export interface RedisSubscriberLike {
  /** `SUBSCRIBE channel [channel ...]`; resolves once the server confirmed it. */
  subscribe(...channels: string[]): Promise<unknown>
  /** Events used: 'message' (channel, message), 'ready', 'close', 'error'. */
  on(event: string, listener: (...args: any[]) => void): unknown
  /** Closes the connection at once, without waiting for replies (a frozen server cannot delay it). */
  disconnect(): void
}
