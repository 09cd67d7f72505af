/**
 * A real, throw-away `redis-server` for integration tests of RedisStateStore.
 *
 * The server listens on 127.0.0.1 only, on a free port, with its config, log and append-only
 * file in a temp directory (`$TMPDIR/pgfp-redis-XXXXXX`). The harness can stop and start it again
 * on the same port (the data survives: appendfsync always), and freeze it (SIGSTOP) to play a
 * store that accepts connections but never answers.
 *
 * Every server registers an exit cleanup (TempHarness, see temp-harness.ts / exit-cleanup.ts) and
 * is killed (SIGCONT + SIGKILL, then rm -rf) on process exit, SIGINT and SIGTERM even if
 * `destroy()` is never called.
 */
import { fileSize, readLogFrom, tail } from './pg-binaries.js'
import { freePort } from './ports.js'
import { TempHarness } from './temp-harness.js'
import { waitUntil } from './wait.js'
import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, writeFileSync } from 'node:fs'
import net from 'node:net'
import os from 'node:os'
import path from 'node:path'

/** Options for {@link startRedis}. */
export interface RedisServerOptions {
  /** `requirepass` for the default user; none by default. */
  password?: string
}

/** A running (or stopped) redis-server created by {@link startRedis}. */
export interface RedisServer {
  /** Always loopback. */
  readonly host: '127.0.0.1'
  /** TCP port; the same across stop()/start(). */
  readonly port: number
  /** `redis://[:password@]127.0.0.1:<port>` */
  readonly url: string
  /** Temp directory with redis.conf, redis.log and the append-only files. */
  readonly dir: string
  /** Pid of the server, or null while stopped. */
  readonly pid: number | null
  /** Whether the server is stopped by freeze(). */
  readonly frozen: boolean
  /** Stops the server (thawing it first): SIGTERM and wait, or SIGKILL with `'kill'`. No-op if stopped. */
  stop(mode?: 'graceful' | 'kill'): Promise<void>
  /** Starts the server again on the same port and waits until it answers PING. No-op if running. */
  start(): Promise<void>
  /** SIGSTOP: the port stays open, commands never get an answer. */
  freeze(): void
  /** SIGCONT after freeze(). */
  thaw(): void
  /** Kills the server and deletes the temp directory. Idempotent. */
  destroy(): Promise<void>
  /** The last lines of the server log. */
  logTail(lines?: number): string
}

// ---------------------------------------------------------------------------------------------
// Locating redis-server

const IS_ROOT = typeof process.getuid === 'function' && process.getuid() === 0
let cachedBinary: string | undefined
let aptInstallAttempted = false

function works(binary: string): boolean {
  const r = spawnSync(binary, ['--version'], { stdio: 'ignore' })
  return r.error === undefined && r.status === 0
}

function aptGet(args: string[]): { ok: boolean; output: string } {
  const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
  const r = spawnSync('apt-get', args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
  const output = `${r.stdout ?? ''}\n${r.stderr ?? ''}${r.error ? `\n${r.error.message}` : ''}`
  return { ok: r.error === undefined && r.status === 0, output }
}

/**
 * `redis-server` from PATH (or /usr/bin, /usr/sbin, /usr/local/bin). When missing and we are root,
 * `apt-get install -y redis-server` is run once (after `apt-get update` if the first try fails).
 * Otherwise throws an Error saying how to install it. Cached per process.
 */
export function findRedisServer(): string {
  if (cachedBinary !== undefined) return cachedBinary
  const candidates = ['redis-server', '/usr/bin/redis-server', '/usr/sbin/redis-server', '/usr/local/bin/redis-server']
  let found = candidates.find(works)
  if (found === undefined && IS_ROOT && !aptInstallAttempted) {
    aptInstallAttempted = true
    let install = aptGet(['install', '-y', 'redis-server'])
    if (!install.ok) {
      const update = aptGet(['update'])
      if (!update.ok) throw new Error(`redis-server not found and \`apt-get update\` failed:\n${tail(update.output, 20)}`)
      install = aptGet(['install', '-y', 'redis-server'])
    }
    if (!install.ok) throw new Error(`redis-server not found and \`apt-get install -y redis-server\` failed:\n${tail(install.output, 20)}`)
    found = candidates.find(works)
  }
  if (found === undefined) {
    throw new Error(
      'redis-server was not found. Install Redis, e.g. `sudo apt-get install -y redis-server` (Debian/Ubuntu), ' +
        '`sudo dnf install redis` (Fedora/RHEL) or `brew install redis` (macOS), and make sure redis-server is on PATH.',
    )
  }
  cachedBinary = found
  return found
}

// ---------------------------------------------------------------------------------------------
// Small helpers

/** A redis.conf string argument. */
function quote(value: string): string {
  return `"${value.replace(/["\\]/g, '\\$&')}"`
}

/** Sends PING; 'up' on +PONG or -NOAUTH (the server answers), 'down' otherwise. */
function ping(port: number, timeoutMs = 500): Promise<'up' | 'down'> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    let reply = ''
    const done = (r: 'up' | 'down'): void => {
      clearTimeout(timer)
      sock.destroy()
      resolve(r)
    }
    const timer = setTimeout(() => done('down'), timeoutMs)
    sock.on('connect', () => sock.write('PING\r\n'))
    sock.on('data', (chunk) => {
      reply += chunk.toString('latin1')
      if (reply.includes('\r\n')) done(/^(\+PONG|-NOAUTH)/.test(reply) ? 'up' : 'down')
    })
    sock.on('error', () => done('down'))
  })
}

function alive(child: ChildProcess | null): child is ChildProcess {
  return child !== null && child.exitCode === null && child.signalCode === null
}

function waitExit(child: ChildProcess, timeoutMs: number): Promise<boolean> {
  if (!alive(child)) return Promise.resolve(true)
  return new Promise((resolve) => {
    const timer = setTimeout(() => resolve(false), timeoutMs)
    child.once('exit', () => {
      clearTimeout(timer)
      resolve(true)
    })
  })
}

// ---------------------------------------------------------------------------------------------

class RedisServerImpl extends TempHarness implements RedisServer {
  readonly host = '127.0.0.1' as const
  readonly #binary: string
  readonly #password: string | undefined
  #port = 0
  #child: ChildProcess | null = null
  #frozen = false

  constructor(binary: string, options: RedisServerOptions) {
    super(mkdtempSync(path.join(os.tmpdir(), 'pgfp-redis-')))
    this.#binary = binary
    this.#password = options.password
  }

  // RedisServer has always called its temp directory `dir`.
  get dir(): string {
    return this.baseDir
  }

  get port(): number {
    return this.#port
  }

  get url(): string {
    const auth = this.#password === undefined ? '' : `:${encodeURIComponent(this.#password)}@`
    return `redis://${auth}127.0.0.1:${this.#port}`
  }

  get pid(): number | null {
    return alive(this.#child) ? (this.#child.pid ?? null) : null
  }

  get frozen(): boolean {
    return this.#frozen
  }

  get #logFile(): string {
    return path.join(this.dir, 'redis.log')
  }

  logTail(lines = 20): string {
    // '' before the first start.
    return `--- ${this.#logFile} (tail) ---\n${tail(readLogFrom(this.#logFile), lines) || '(empty)'}`
  }

  /** @internal First start: pick a free port, retrying with another one if it was taken meanwhile. */
  async init(): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      this.#port = await freePort()
      // Only what this attempt logs counts: an earlier attempt's "address already in use" must
      // not make a different failure retry.
      const offset = fileSize(this.#logFile)
      try {
        await this.start()
        return
      } catch (err) {
        if (!/address already in use/i.test(readLogFrom(this.#logFile, offset)) || attempt >= 5) throw err
      }
    }
  }

  async start(): Promise<void> {
    this.#assertUsable()
    if (alive(this.#child)) return
    const conf = path.join(this.dir, 'redis.conf')
    const lines = [
      'bind 127.0.0.1',
      `port ${this.#port}`,
      'protected-mode yes',
      'daemonize no',
      `dir ${quote(this.dir)}`,
      `logfile ${quote(this.#logFile)}`,
      'save ""',
      // The data must survive stop()/start(), even a SIGKILL.
      'appendonly yes',
      'appendfsync always',
      ...(this.#password === undefined ? [] : [`requirepass ${quote(this.#password)}`]),
    ]
    writeFileSync(conf, `${lines.join('\n')}\n`, { mode: 0o600 })
    const child = spawn(this.#binary, [conf], { cwd: this.dir, stdio: 'ignore' })
    child.on('error', () => undefined) // reported through the wait below
    // A forgotten server must not keep the test process alive; the exit handlers kill it.
    child.unref()
    this.#child = child
    this.#frozen = false
    // 'exited' ends the wait early: a server that died (port taken, bad config) never answers.
    const outcome = await waitUntil(async () => (!alive(child) ? 'exited' : (await ping(this.#port)) === 'up' && 'up'), {
      what: `redis-server on 127.0.0.1:${this.#port} to answer PING`,
      timeout: 10_000,
      interval: 10,
    }).catch((err: unknown) => (err instanceof Error ? err.message : String(err)))
    if (outcome !== 'up') {
      child.kill('SIGKILL')
      this.#child = null
      throw new Error(`redis-server on 127.0.0.1:${this.#port} did not start (${outcome})\n${this.logTail(15)}`)
    }
  }

  async stop(mode: 'graceful' | 'kill' = 'graceful'): Promise<void> {
    this.#assertUsable()
    const child = this.#child
    if (!alive(child)) return
    this.thaw()
    child.kill(mode === 'kill' ? 'SIGKILL' : 'SIGTERM')
    if (!(await waitExit(child, 10_000))) {
      child.kill('SIGKILL')
      await waitExit(child, 5_000)
    }
    this.#child = null
  }

  freeze(): void {
    this.#assertUsable()
    if (!alive(this.#child)) throw new Error('redis-server is not running')
    this.#child.kill('SIGSTOP')
    this.#frozen = true
  }

  thaw(): void {
    if (!this.#frozen) return
    if (alive(this.#child)) this.#child.kill('SIGCONT')
    this.#frozen = false
  }

  /** For destroy(): SIGKILL the server (thawed, so it dies at once) and wait for it. */
  protected async killAll(): Promise<void> {
    const child = this.#child
    if (alive(child)) {
      this.thaw()
      child.kill('SIGKILL')
      await waitExit(child, 5_000)
    }
    this.#child = null
  }

  /** For the exit handlers: SIGCONT + SIGKILL, without waiting. */
  protected killAllSync(): void {
    const pid = this.pid
    if (pid !== null) {
      for (const sig of ['SIGCONT', 'SIGKILL'] as const) {
        try {
          process.kill(pid, sig)
        } catch {
          // already gone
        }
      }
    }
  }

  #assertUsable(): void {
    if (this.destroyed) throw new Error('redis server has been destroyed')
  }
}

/**
 * Starts a redis-server on a free port of 127.0.0.1 and waits until it answers PING. On failure
 * everything created so far is removed and the error is rethrown.
 */
export async function startRedis(options: RedisServerOptions = {}): Promise<RedisServer> {
  const server = new RedisServerImpl(findRedisServer(), options)
  try {
    await server.init()
  } catch (err) {
    await server.destroy().catch(() => undefined)
    throw err
  }
  return server
}
