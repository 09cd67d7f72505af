import type { EndpointConfig } from '../endpoint/endpoint-config.js'
import { ConfigError } from '../errors.js'

/** One answer of a provider: the endpoint list, in the forms the `endpoints` option accepts. */
export type EndpointList = ReadonlyArray<string | EndpointConfig>

/**
 * A source of the pool's endpoints that may change while it runs: Patroni's member list
 * ({@link patroniMembers}), DNS SRV records ({@link dnsSrv}) or your own code ({@link endpointsFrom}).
 * The pool asks it every `refreshMs`; an answer that is not a usable list (the source unreachable,
 * an empty list, duplicates, a malformed entry) keeps the last good one and is reported, never applied.
 */
export interface EndpointProvider {
  /** Marks the object as a provider, so the `endpoints` option can hold one. */
  readonly kind: 'endpoint-provider'
  /** What it asks, for events and `status()`; never holds a password. */
  readonly description: string
  /** How often the pool asks again, in milliseconds. */
  readonly refreshMs: number
  /** Resolves with the current list; rejects when the source cannot answer within `timeoutMs` (ms). */
  list(timeoutMs: number): Promise<EndpointList>
}

/** Options of {@link endpointsFrom}. */
export interface EndpointsFromOptions {
  /** How often the pool asks again, in milliseconds. Default 5000. */
  refreshMs?: number
  /** What it asks, for events and `status()`. Default `'custom provider'`. */
  description?: string
}

/** Default interval between two answers of a provider, in milliseconds. */
export const DEFAULT_REFRESH_MS = 5_000

/**
 * Your own code as the source of the endpoint list: `fn` is called every `refreshMs` (and when the
 * pool sees the topology change); what it returns takes the same forms as the `endpoints` option.
 * @throws ConfigError when `fn` is not a function or `refreshMs` is not a positive number.
 */
export function endpointsFrom(fn: () => EndpointList | Promise<EndpointList>, options: EndpointsFromOptions = {}): EndpointProvider {
  if (typeof fn !== 'function') throw new ConfigError('endpointsFrom', fn, 'expected a function returning the endpoint list')
  const refreshMs = checkRefreshMs(options.refreshMs, 'endpointsFrom.refreshMs')
  return {
    kind: 'endpoint-provider',
    description: options.description ?? 'custom provider',
    refreshMs,
    list: async () => fn(),
  }
}

/** True when `value` is an {@link EndpointProvider}. */
export function isEndpointProvider(value: unknown): value is EndpointProvider {
  return typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'endpoint-provider' && typeof (value as { list?: unknown }).list === 'function'
}

/** `refreshMs` as given (a positive finite number of ms), or the default. @throws ConfigError otherwise. */
export function checkRefreshMs(value: unknown, field: string): number {
  if (value === undefined) return DEFAULT_REFRESH_MS
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 100) throw new ConfigError(field, value, 'expected a number of milliseconds, at least 100')
  return value
}
