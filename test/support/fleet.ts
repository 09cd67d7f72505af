import { type ChildProcess, spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'
import type { EndpointConfig, FailoverPoolOptions } from '../../src/index.js'
import { onJsonLines } from './json-lines.js'

const SCRIPT = fileURLToPath(new URL('./fleet-instance.ts', import.meta.url))

/** One line an instance printed (see fleet-instance.ts). */
export type InstanceEvent = { readonly kind: string; readonly at?: number } & Record<string, unknown>

/** A running instance (a process of its own) of a fleet sharing monitoring. */
export class FleetInstance {
  readonly events: InstanceEvent[] = []
  readonly #child: ChildProcess
  readonly #waiters = new Set<() => void>()
  #exited = false
  #stderr = ''

  constructor(
    readonly name: string,
    endpoints: EndpointConfig[],
    redisUrl: string,
    options: Partial<FailoverPoolOptions> = {},
  ) {
    this.#child = spawn(process.execPath, ['--import', 'tsx', SCRIPT, JSON.stringify({ name, endpoints, redisUrl, options })], { stdio: ['pipe', 'pipe', 'pipe'] })
    onJsonLines(this.#child.stdout!, (event) => {
      this.events.push(event as InstanceEvent)
      for (const wake of [...this.#waiters]) wake()
    })
    this.#child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (this.#stderr = (this.#stderr + chunk).slice(-4_000)))
    this.#child.on('exit', () => {
      this.#exited = true
      for (const wake of [...this.#waiters]) wake()
    })
  }

  get pid(): number {
    return this.#child.pid!
  }

  /** The instance's role in the fleet, as it last reported it. */
  get role(): string | null {
    const last = [...this.events].reverse().find((e) => e.kind === 'role')
    return (last?.role as string | null | undefined) ?? null
  }

  send(command: Record<string, unknown>): void {
    if (!this.#exited) this.#child.stdin!.write(`${JSON.stringify(command)}\n`)
  }

  /** The first event (from index `from` on) matching `match`, waiting up to `timeoutMs`. */
  next(match: (e: InstanceEvent) => boolean, timeoutMs = 10_000, from = 0): Promise<InstanceEvent> {
    return new Promise((resolve, reject) => {
      const check = (): boolean => {
        const found = this.events.slice(from).find(match)
        if (found) {
          done()
          resolve(found)
          return true
        }
        if (this.#exited) {
          done()
          reject(new Error(`${this.name} exited; stderr: ${this.#stderr}`))
          return true
        }
        return false
      }
      const timer = setTimeout(() => {
        done()
        reject(new Error(`${this.name}: no matching event within ${timeoutMs} ms; last events ${JSON.stringify(this.events.slice(-5))}; stderr: ${this.#stderr}`))
      }, timeoutMs)
      const done = (): void => {
        clearTimeout(timer)
        this.#waiters.delete(wake)
      }
      const wake = (): void => void check()
      this.#waiters.add(wake)
      check()
    })
  }

  /** The pool's status() now. */
  async status(): Promise<Record<string, any>> {
    const from = this.events.length
    this.send({ cmd: 'status' })
    return (await this.next((e) => e.kind === 'status', 10_000, from)).status as Record<string, any>
  }

  /** Ends the pool cleanly and waits for the process to exit. */
  async end(): Promise<void> {
    if (this.#exited) return
    const exited = new Promise<void>((resolve) => this.#child.once('exit', () => resolve()))
    this.send({ cmd: 'end' })
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 10_000)
    await exited
    clearTimeout(timer)
  }

  /** Sends a signal (SIGKILL: a crash; SIGSTOP/SIGCONT: a frozen process). */
  signal(signal: NodeJS.Signals): void {
    if (!this.#exited) this.#child.kill(signal)
  }

  /** Waits for the process to be gone. */
  async exited(): Promise<void> {
    if (this.#exited) return
    await new Promise<void>((resolve) => this.#child.once('exit', () => resolve()))
  }
}
