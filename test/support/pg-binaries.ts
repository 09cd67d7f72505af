/**
 * Low-level helpers for the PostgreSQL test harness: locating the server
 * binaries, running them (as the `postgres` OS user when we are root), and
 * inspecting / signalling server processes.
 *
 * Nothing in here knows about clusters; see `cluster.ts` for that.
 */
import { execFileSync, spawn, spawnSync } from 'node:child_process'
import { chownSync, existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs'
import path from 'node:path'

/** True when the current process runs as root (PostgreSQL then has to run as `postgres`). */
export const IS_ROOT: boolean = typeof process.getuid === 'function' && process.getuid() === 0

/** Whether /proc can be read (Linux): probed once, not on every call of the polling helpers below. */
const HAS_PROC: boolean = existsSync('/proc/self/stat')

let cachedBinDir: string | undefined
let aptInstallAttempted = false

function holdsServerBinaries(dir: string): boolean {
  return dir !== '' && existsSync(path.join(dir, 'pg_ctl')) && existsSync(path.join(dir, 'initdb'))
}

function locatePgBinDir(): string | undefined {
  try {
    const out = execFileSync('pg_config', ['--bindir'], {
      encoding: 'utf8',
      stdio: ['ignore', 'pipe', 'ignore'],
    }).trim()
    if (holdsServerBinaries(out)) return out
  } catch {
    // pg_config missing or broken: fall through
  }
  try {
    const versions = readdirSync('/usr/lib/postgresql')
      .filter((v) => /^\d+(\.\d+)?$/.test(v))
      .sort((a, b) => Number(b) - Number(a))
    for (const v of versions) {
      const dir = path.join('/usr/lib/postgresql', v, 'bin')
      if (holdsServerBinaries(dir)) return dir
    }
  } catch {
    // no Debian-style layout
  }
  // Last resort (e.g. Homebrew, custom builds): pg_ctl somewhere on PATH.
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (holdsServerBinaries(dir)) return dir
  }
  return undefined
}

/**
 * Locate the PostgreSQL server binaries (initdb, pg_ctl, postgres, pg_basebackup, pg_rewind).
 *
 * Order: `pg_config --bindir` if it holds pg_ctl, else the newest `/usr/lib/postgresql/<n>/bin`,
 * else a PATH entry holding pg_ctl. If nothing is found and we run as root, `apt-get update` and
 * `apt-get install -y postgresql` are run once (output is only shown on failure). Otherwise an
 * Error explaining how to install PostgreSQL is thrown. The result is cached per process.
 */
export function findPgBinDir(): string {
  if (cachedBinDir !== undefined) return cachedBinDir
  let found = locatePgBinDir()
  if (found === undefined && IS_ROOT && !aptInstallAttempted) {
    aptInstallAttempted = true
    const env = { ...process.env, DEBIAN_FRONTEND: 'noninteractive' }
    for (const args of [['update'], ['install', '-y', '--no-install-recommends', 'postgresql']]) {
      const r = spawnSync('apt-get', args, { env, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] })
      if (r.error !== undefined || r.status !== 0) {
        throw new Error(
          `PostgreSQL server binaries not found and \`apt-get ${args.join(' ')}\` failed ` +
            `(exit code ${String(r.status)}${r.error ? `, ${r.error.message}` : ''}):\n` +
            tail(`${r.stdout ?? ''}\n${r.stderr ?? ''}`, 20),
        )
      }
    }
    found = locatePgBinDir()
  }
  if (found === undefined) {
    throw new Error(
      'PostgreSQL server binaries (initdb, pg_ctl, postgres) were not found. ' +
        'Install a PostgreSQL server, e.g. `sudo apt-get install -y postgresql` (Debian/Ubuntu), ' +
        '`sudo dnf install postgresql-server` (Fedora/RHEL) or `brew install postgresql@15` (macOS), ' +
        'and make sure `pg_config --bindir` points at the directory holding pg_ctl ' +
        '(or put that directory on PATH).',
    )
  }
  cachedBinDir = found
  return found
}

/** Last `lines` lines of `text` (trailing blank lines dropped). */
export function tail(text: string, lines: number): string {
  const all = text.replace(/\s+$/, '').split('\n')
  return all.slice(Math.max(0, all.length - lines)).join('\n')
}

let postgresIds: { uid: number; gid: number } | undefined

/** uid/gid of the `postgres` OS user (only needed when running as root). */
export function postgresUser(): { uid: number; gid: number } {
  if (postgresIds === undefined) {
    try {
      const uid = Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim())
      const gid = Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim())
      postgresIds = { uid, gid }
    } catch (err) {
      throw new Error(
        'Running as root but there is no `postgres` OS user to run the PostgreSQL server as ' +
          `(PostgreSQL refuses to run as root). Create one (e.g. \`useradd -r -m postgres\`). Cause: ${String(err)}`,
      )
    }
  }
  return postgresIds
}

/** chown a path to the postgres user when running as root (no-op otherwise). */
export function chownToServerUser(p: string): void {
  if (!IS_ROOT) return
  const { uid, gid } = postgresUser()
  chownSync(p, uid, gid)
}

/** Write a file the server (or a tool running as the postgres user) reads: mode 0600 by default, owned by that user. */
export function writeServerFile(file: string, content: string, mode = 0o600): void {
  writeFileSync(file, content, { mode })
  chownToServerUser(file)
}

/** Quote a string as a postgresql.conf / SQL literal. */
export function pgLiteral(value: string): string {
  return `'${value.replace(/'/g, "''")}'`
}

/**
 * (Re)write a harness's block of `settings` at the end of a postgresql.conf, from the line `begin`
 * to the line `end`: whatever stood from `begin` on is replaced, the rest of the file is kept (the
 * last setting of a name wins, so the block overrides what initdb or a clone wrote above it).
 */
export function writeConfBlock(file: string, begin: string, end: string, settings: Record<string, string | number>): void {
  let text = readFileSync(file, 'utf8')
  const at = text.indexOf(begin)
  if (at >= 0) text = text.slice(0, at)
  const block = Object.entries(settings).map(([k, v]) => `${k} = ${typeof v === 'number' ? String(v) : pgLiteral(v)}`)
  writeServerFile(file, `${text.replace(/\n*$/, '\n')}${begin}\n${block.join('\n')}\n${end}\n`)
}

/** Options for {@link runPgTool}. */
export interface RunOptions {
  /** Extra environment variables (merged over process.env). */
  env?: Record<string, string>
  /** Working directory (must be accessible by the postgres user). */
  cwd?: string
  /** A server log file whose tail is appended to the error message on failure. */
  logFile?: string
  /** Only include log content written after this byte offset. */
  logOffset?: number
  /** Kill the command after this many ms (default 120 s). */
  timeoutMs?: number
  /** Strings to mask in error messages (e.g. passwords). */
  secrets?: string[]
}

/** Output of a successful {@link runPgTool} call. */
export interface RunResult {
  stdout: string
  stderr: string
}

/** Size of a file in bytes, 0 when it does not exist. */
export function fileSize(file: string): number {
  try {
    return statSync(file).size
  } catch {
    return 0
  }
}

/** Contents of a log file from byte `offset` on ('' when missing). */
export function readLogFrom(file: string, offset = 0): string {
  try {
    const buf = readFileSync(file)
    return buf.subarray(Math.min(offset, buf.length)).toString('utf8')
  } catch {
    return ''
  }
}

function mask(text: string, secrets: string[] | undefined): string {
  let out = text
  for (const s of secrets ?? []) if (s !== '') out = out.split(s).join('********')
  return out
}

/**
 * Run a PostgreSQL tool from `binDir` (via `runuser -u postgres --` when root), collecting output.
 * Rejects with an Error that names the command, its exit code, the stderr tail and (if given)
 * the tail of the server log file.
 */
export function runPgTool(binDir: string, tool: string, args: string[], opts: RunOptions = {}): Promise<RunResult> {
  const exe = path.join(binDir, tool)
  const file = IS_ROOT ? 'runuser' : exe
  const argv = IS_ROOT ? ['-u', 'postgres', '--', exe, ...args] : args
  const display = [file, ...argv].map((a) => (/^[\w./=:,@+-]+$/.test(a) ? a : JSON.stringify(a))).join(' ')
  const timeoutMs = opts.timeoutMs ?? 120_000
  return new Promise<RunResult>((resolve, reject) => {
    const child = spawn(file, argv, {
      cwd: opts.cwd,
      env: { ...process.env, ...opts.env },
      stdio: ['ignore', 'pipe', 'pipe'],
    })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      stdout = (stdout + d).slice(-65536)
    })
    child.stderr.setEncoding('utf8').on('data', (d: string) => {
      stderr = (stderr + d).slice(-65536)
    })
    let timedOut = false
    const timer = setTimeout(() => {
      timedOut = true
      child.kill('SIGTERM')
    }, timeoutMs)
    const fail = (why: string): void => {
      let msg = `Command failed (${why}): ${display}`
      const errTail = tail(stderr, 25)
      if (errTail !== '') msg += `\n--- stderr (tail) ---\n${errTail}`
      else if (stdout.trim() !== '') msg += `\n--- stdout (tail) ---\n${tail(stdout, 25)}`
      if (opts.logFile !== undefined) {
        const logTail = tail(readLogFrom(opts.logFile, opts.logOffset ?? 0), 30)
        msg += `\n--- ${opts.logFile} (tail) ---\n${logTail === '' ? '(empty)' : logTail}`
      }
      reject(new Error(mask(msg, opts.secrets)))
    }
    child.on('error', (err) => {
      clearTimeout(timer)
      fail(`spawn error: ${err.message}`)
    })
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      if (timedOut) fail(`timed out after ${timeoutMs} ms`)
      else if (code === 0) resolve({ stdout, stderr })
      else fail(signal !== null ? `killed by ${signal}` : `exit code ${String(code)}`)
    })
  })
}

// ---------------------------------------------------------------------------------------------
// Processes

/** Minimal process-table entry. */
export interface ProcInfo {
  pid: number
  ppid: number
  /** Process group id. */
  pgrp: number
  /** Single-letter state as in /proc/<pid>/stat or ps (R, S, D, T, t, Z, X, ...). */
  state: string
}

/** Snapshot of the process table (from /proc on Linux, `ps` elsewhere). */
export function listProcesses(): ProcInfo[] {
  const out: ProcInfo[] = []
  if (HAS_PROC) {
    for (const ent of readdirSync('/proc')) {
      if (!/^\d+$/.test(ent)) continue
      let stat: string
      try {
        stat = readFileSync(`/proc/${ent}/stat`, 'utf8')
      } catch {
        continue
      }
      // "pid (comm) state ppid pgrp ..." — comm may contain spaces and parentheses.
      const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ')
      out.push({ pid: Number(ent), state: rest[0] ?? '?', ppid: Number(rest[1]), pgrp: Number(rest[2]) })
    }
    return out
  }
  const r = spawnSync('ps', ['-A', '-o', 'pid=,ppid=,pgid=,stat='], { encoding: 'utf8' })
  for (const line of (r.stdout ?? '').split('\n')) {
    const m = /^\s*(\d+)\s+(\d+)\s+(\d+)\s+(\S)/.exec(line)
    if (m) out.push({ pid: Number(m[1]), ppid: Number(m[2]), pgrp: Number(m[3]), state: m[4] ?? '?' })
  }
  return out
}

function live(p: ProcInfo): boolean {
  return p.state !== 'Z' && p.state !== 'X'
}

/** Pids of live (non-zombie) processes whose process group is `pgid`. */
export function groupMembers(pgid: number): number[] {
  return listProcesses()
    .filter((p) => p.pgrp === pgid && live(p))
    .map((p) => p.pid)
}

/** A process's command line, arguments joined by spaces; undefined once it is gone. */
export function commandLine(pid: number): string | undefined {
  if (HAS_PROC) {
    try {
      return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0').join(' ').trim()
    } catch {
      return undefined
    }
  }
  const r = spawnSync('ps', ['-p', String(pid), '-o', 'args='], { encoding: 'utf8' })
  return r.status === 0 ? r.stdout.trim() : undefined
}

/** Live processes other than this one whose command line mentions `needle` (a temp dir, say: what a teardown must leave none of). */
export function processesMentioning(needle: string): Array<{ pid: number; cmd: string }> {
  const out: Array<{ pid: number; cmd: string }> = []
  for (const p of listProcesses()) {
    if (p.pid === process.pid || !live(p)) continue
    const cmd = commandLine(p.pid)
    if (cmd?.includes(needle)) out.push({ pid: p.pid, cmd })
  }
  return out
}

/** Direct children of `ppid` that are not zombies. */
export function childPids(ppid: number): number[] {
  return listProcesses()
    .filter((p) => p.ppid === ppid && live(p))
    .map((p) => p.pid)
}

/** State letter of a process, or undefined if it does not exist. */
export function processState(pid: number): string | undefined {
  if (HAS_PROC) {
    try {
      const stat = readFileSync(`/proc/${pid}/stat`, 'utf8')
      return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[0]
    } catch {
      return undefined
    }
  }
  return listProcesses().find((p) => p.pid === pid)?.state
}

/** True if the process exists and is not a zombie. */
export function isAlive(pid: number): boolean {
  const s = processState(pid)
  return s !== undefined && s !== 'Z' && s !== 'X'
}

/** process.kill that ignores "no such process". */
export function signal(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/**
 * process.kill that ignores every error, not just "no such process": for teardown, where a pid
 * read a moment ago may have exited or been reused and one failed kill must not stop the rest.
 */
export function signalQuiet(pid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(pid, sig)
  } catch {
    // gone
  }
}

/** Block the thread for `ms` milliseconds (usable inside 'exit' handlers; elsewhere use `sleep` from wait.ts). */
export function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms)
}

/** Block until none of `pids` is alive (a zombie counts as gone), at most `timeoutMs`: for 'exit' handlers. */
export function waitGoneSync(pids: readonly number[], timeoutMs: number): void {
  const deadline = Date.now() + timeoutMs
  while (Date.now() < deadline && pids.some((p) => isAlive(p))) sleepSync(10)
}
