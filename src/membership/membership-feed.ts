import type { ClientConfig } from 'pg'
import { type Clock, type TimerHandle, jitter, randomOf, withDeadline } from '../clock.js'
import { type ResolvedEndpoint, resolveEndpoints } from '../endpoint/endpoint-config.js'
import { EndpointSourceError, asError } from '../errors.js'
import { checkEndpointOptions } from '../options.js'
import type { EndpointProvider } from './endpoint-provider.js'

/** Who hears what a provider answered: the pool applies a good list and reports a bad one. */
export interface MembershipListener {
  /** A usable list that differs from the last one applied (the first good answer included). */
  changed(endpoints: readonly ResolvedEndpoint[]): void
  /** An answer that was not applied; the last good list stays. */
  rejected(error: EndpointSourceError): void
}

/**
 * Checks one provider answer the way `new FailoverPool()` checks the `endpoints` option (the same
 * forms, names and duplicate rules), merged over the pool's shared client settings.
 * @throws EndpointSourceError naming what is wrong (never a password).
 */
export function checkAnswer(source: string, answer: unknown, shared: ClientConfig): ResolvedEndpoint[] {
  if (!Array.isArray(answer)) throw new EndpointSourceError(source, `expected a list of endpoints, got ${answer === null ? 'null' : typeof answer}`)
  if (answer.length === 0) throw new EndpointSourceError(source, 'the list is empty')
  try {
    const endpoints = resolveEndpoints(answer, shared)
    checkEndpointOptions(endpoints)
    return endpoints
  } catch (err) {
    throw new EndpointSourceError(source, asError(err).message, { cause: err })
  }
}

/** What makes two lists the same for the pool: every endpoint's name, address, read weight and client settings. */
function signature(endpoints: readonly ResolvedEndpoint[]): string {
  return JSON.stringify(
    [...endpoints]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((e) => [e.name, e.host, e.port, e.database ?? null, e.weight, e.config, (e.config as { password?: unknown }).password ?? null]),
  )
}

/**
 * Asks a provider for the endpoint list every `refreshMs` (jittered, so a fleet does not ask in
 * lockstep) and whenever `refreshNow()` is called, one question at a time, each bounded by
 * `timeoutMs`. A good answer that differs from the last applied goes to `changed`; a failed or
 * unusable one to `rejected`, and the last good list stays.
 */
export class MembershipFeed {
  #timer: TimerHandle | null = null
  #asking = false
  /** A refresh asked for while one was running: run another right after it. */
  #again = false
  #stopped = false
  #applied: string | null = null
  #lastError: EndpointSourceError | null = null
  #lastAnswerAt: number | null = null

  constructor(
    private readonly provider: EndpointProvider,
    private readonly shared: ClientConfig,
    private readonly timeoutMs: number,
    private readonly clock: Clock,
    private readonly listener: MembershipListener,
  ) {}

  /** The last answer that was not applied, or null once a good one came after it. */
  get lastError(): EndpointSourceError | null {
    return this.#lastError
  }

  /** Clock ms of the last good answer, or null. */
  get lastAnswerAt(): number | null {
    return this.#lastAnswerAt
  }

  /** What the provider asks (its description). */
  get description(): string {
    return this.provider.description
  }

  /** The list last handed to `changed` was not applied after all (refused): the next answer is applied again. */
  forgetApplied(): void {
    this.#applied = null
  }

  /** Asks now, then every `refreshMs`. */
  start(): void {
    this.refreshNow()
  }

  /** Asks again now (coalesced with a question already under way). */
  refreshNow(): void {
    if (this.#stopped) return
    if (this.#asking) {
      this.#again = true
      return
    }
    if (this.#timer !== null) this.clock.clearTimeout(this.#timer)
    this.#timer = null
    this.#asking = true
    void this.#ask().finally(() => {
      this.#asking = false
      if (this.#stopped) return
      if (this.#again) {
        this.#again = false
        this.refreshNow()
        return
      }
      this.#timer = this.clock.setTimeout(() => {
        this.#timer = null
        this.refreshNow()
      }, jitter(this.provider.refreshMs, 0.1, randomOf(this.clock)))
    })
  }

  /** Stops asking; an answer under way is dropped. */
  stop(): void {
    this.#stopped = true
    if (this.#timer !== null) this.clock.clearTimeout(this.#timer)
    this.#timer = null
  }

  async #ask(): Promise<void> {
    const source = this.provider.description
    let endpoints: ResolvedEndpoint[]
    try {
      const answer = await withDeadline(
        Promise.resolve().then(() => this.provider.list(this.timeoutMs)),
        this.timeoutMs,
        () => new Error(`no answer within ${this.timeoutMs} ms`),
        this.clock,
      )
      endpoints = checkAnswer(source, answer, this.shared)
    } catch (err) {
      if (this.#stopped) return
      const error = err instanceof EndpointSourceError ? err : new EndpointSourceError(source, asError(err).message, { cause: err })
      this.#lastError = error
      this.listener.rejected(error)
      return
    }
    if (this.#stopped) return
    this.#lastError = null
    this.#lastAnswerAt = this.clock.now()
    const sig = signature(endpoints)
    if (sig === this.#applied) return
    this.#applied = sig
    this.listener.changed(endpoints)
  }
}
