/**
 * One long-running tool process (etcd, patroni, repmgrd, pgbouncer, haproxy) of an HA harness.
 *
 * The process is spawned directly with the postgres OS user's uid/gid when we are root (no
 * `runuser` wrapper, so the pid is the tool's own and signals reach it), in a new session
 * (`detached`), so that it and every helper it forks share one process group that can be killed
 * at once. stdout and stderr are appended to a log file. Note that PostgreSQL postmasters started
 * by Patroni are NOT in that group (Patroni starts them in their own session); see postmaster.ts.
 */
import { type ChildProcess, spawn } from 'node:child_process'
import { closeSync, openSync } from 'node:fs'
import path from 'node:path'
import { TempHarness } from '../temp-harness.js'
import { chownToServerUser, fileSize, groupMembers, IS_ROOT, postgresUser, readLogFrom, signal, sleepSync, tail } from '../pg-binaries.js'
import { GiveUp, sleep, waitUntil } from '../wait.js'

/** Options for {@link Daemon}. */
export interface DaemonOptions {
  /** Short name used in error messages. */
  name: string
  /** Executable (absolute path or on PATH). */
  command: string
  args: string[]
  /** stdout and stderr are appended here. */
  logFile: string
  /** Extra environment (merged over process.env; `undefined` removes a variable). */
  env?: Record<string, string | undefined>
  cwd?: string
  /** Run as the postgres OS user when root (default true). */
  asServerUser?: boolean
  /**
   * Run the command under a small python3 "subreaper" (default false): the wrapper marks itself
   * PR_SET_CHILD_SUBREAPER, so every process orphaned below it (e.g. a postmaster that Patroni
   * starts in its own session) is re-parented to it and reaped the moment it dies. Otherwise
   * orphans go to PID 1, which here (a Firecracker VM's init) reaps only every ~2 s, and in some
   * containers never: meanwhile the zombie postmaster's pid is "running" for psutil, so Patroni
   * would not notice that its postmaster was killed (or, with a reaper-less PID 1, never). The wrapper
   * forwards SIGTERM/SIGINT/SIGHUP/SIGQUIT to the command and exits once it has no children left.
   */
  subreaper?: boolean
}

/** python3 program used by {@link DaemonOptions.subreaper}; argv: the command to run. */
export const SUBREAPER_PY = String.raw`
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(36, 1, 0, 0, 0)  # PR_SET_CHILD_SUBREAPER
argv = sys.argv[1:]
pid = os.fork()
if pid == 0:
    for s in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGQUIT):
        signal.signal(s, signal.SIG_DFL)
    try:
        os.execvp(argv[0], argv)
    finally:
        os._exit(127)
def forward(sig, frame):
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass
for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT):
    signal.signal(s, forward)
code = 0
while True:
    try:
        p, st = os.wait()
    except ChildProcessError:
        break
    except InterruptedError:
        continue
    if p == pid:
        code = os.waitstatus_to_exitcode(st)
        code = 128 - code if code < 0 else code
sys.exit(code)
`

function killGroup(pgid: number, sig: NodeJS.Signals): void {
  try {
    process.kill(-pgid, sig)
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ESRCH') throw err
  }
}

/** A spawned tool process and its process group. Restartable: start() again after it exited. */
export class Daemon {
  private child: ChildProcess | null = null
  private exited: Promise<void> = Promise.resolve()
  private pgid: number | null = null
  /** Exit code / signal of the last run, once it ended. */
  lastExit: { code: number | null; signal: NodeJS.Signals | null } | null = null
  /** Set when the executable could not be spawned at all (e.g. ENOENT). */
  spawnError: Error | null = null

  constructor(readonly options: DaemonOptions) {}

  /** Pid of the running process (also its process-group id), or null. */
  get pid(): number | null {
    return this.child !== null && this.lastExit === null ? (this.child.pid ?? null) : null
  }

  /** True while the spawned process has not exited. */
  get running(): boolean {
    return this.pid !== null
  }

  /** Spawn the process. Throws if it is already running. */
  start(): void {
    if (this.running) throw new Error(`${this.options.name} is already running (pid ${String(this.pid)})`)
    const o = this.options
    const env: Record<string, string> = {}
    for (const [k, v] of Object.entries({ ...process.env, ...o.env })) if (v !== undefined) env[k] = v
    const fd = openSync(o.logFile, 'a')
    const asUser = IS_ROOT && o.asServerUser !== false
    // The tool may reopen its log itself (e.g. `pg_ctl -l` when repmgr restarts a server).
    if (asUser) chownToServerUser(o.logFile)
    try {
      const [command, args] = o.subreaper === true ? ['python3', ['-c', SUBREAPER_PY, o.command, ...o.args]] : [o.command, o.args]
      const child = spawn(command, args, {
        cwd: o.cwd,
        env,
        stdio: ['ignore', fd, fd],
        detached: true,
        ...(asUser ? { uid: postgresUser().uid, gid: postgresUser().gid } : {}),
      })
      this.child = child
      this.lastExit = null
      this.spawnError = null
      this.pgid = child.pid ?? null
      this.exited = new Promise<void>((resolve) => {
        child.once('exit', (code, sig) => {
          this.lastExit = { code, signal: sig }
          resolve()
        })
        child.once('error', (err) => {
          this.lastExit = { code: -1, signal: null }
          this.spawnError = err
          resolve()
        })
      })
      // A harness daemon must never keep the test process alive.
      child.unref()
    } finally {
      closeSync(fd)
    }
  }

  /**
   * Live members of the process group other than the main process, while that runs ([] once it
   * has exited). Under a subreaper: the command and whatever it forked, so that they can be
   * killed while the subreaper lives on to reap them (and any postmaster it adopted).
   */
  groupMembersButMain(): number[] {
    const pid = this.pid
    return pid === null ? [] : groupMembers(pid).filter((p) => p !== pid)
  }

  /** Send `sig` to the whole process group (no-op if nothing is left). */
  signal(sig: NodeJS.Signals): void {
    if (this.pgid !== null) killGroup(this.pgid, sig)
  }

  /** Send `sig` to the main process only. */
  signalMain(sig: NodeJS.Signals): void {
    const pid = this.pid
    if (pid !== null) signal(pid, sig)
  }

  /** Resolves when the main process has exited (at once if it is not running). */
  waitExit(): Promise<void> {
    return this.exited
  }

  /**
   * SIGKILL the process group and wait until the main process and every group member are gone
   * (up to `timeoutMs`, then throws).
   */
  async kill(timeoutMs = 10_000): Promise<void> {
    await this.terminate('SIGKILL', timeoutMs)
  }

  /**
   * SIGTERM the main process (the subreaper forwards it to the command), wait up to `graceMs`
   * until the process group is gone, then SIGKILL the group and wait.
   */
  async stop(graceMs = 5000): Promise<void> {
    try {
      await this.terminate('SIGTERM', graceMs, false)
    } catch {
      await this.kill()
    }
  }

  private async terminate(sig: NodeJS.Signals, timeoutMs: number, group = true): Promise<void> {
    const pgid = this.pgid
    if (pgid === null) return
    if (group) killGroup(pgid, sig)
    else this.signalMain(sig)
    const deadline = Date.now() + timeoutMs
    while (this.running || groupMembers(pgid).length > 0) {
      if (Date.now() > deadline) {
        throw new Error(`${this.options.name}: process group ${pgid} still alive ${timeoutMs} ms after ${sig}`)
      }
      if (sig === 'SIGKILL') killGroup(pgid, 'SIGKILL') // members forked meanwhile
      await sleep(10)
    }
    await this.exited
  }

  /** Synchronous SIGKILL of the group for exit handlers (waits up to 2 s for it to vanish). */
  killSync(): void {
    const pgid = this.pgid
    if (pgid === null) return
    killGroup(pgid, 'SIGCONT')
    killGroup(pgid, 'SIGKILL')
    const deadline = Date.now() + 2000
    while (Date.now() < deadline && groupMembers(pgid).length > 0) sleepSync(10)
  }

  /** Last `lines` lines of the log file. */
  logTail(lines = 30): string {
    return tail(readLogFrom(this.options.logFile), lines)
  }
}

/** What {@link SingleDaemonHarness.startDaemon} starts and how it knows the daemon is up. */
export interface DaemonStart {
  /** Pick fresh ports, write the config, and return the daemon to run (called once per attempt). */
  prepare: () => Promise<DaemonOptions>
  /** What is awaited, for the timeout message (called after prepare, so it may name the ports). */
  what: () => string
  timeoutMs: number
  intervalMs: number
  /** True once the daemon serves (a throw counts as "not yet"). */
  ready: () => Promise<boolean>
  /** The daemon's log says another process took its port between our pick and its bind. */
  portTaken: RegExp
}

/**
 * Base of the harnesses that are one {@link Daemon} in one temp directory (etcd, HAProxy,
 * PgBouncer): destroy() kills the daemon's process group and removes the directory, and the same
 * happens synchronously on process exit, SIGINT and SIGTERM if destroy() is never called. The
 * subclass creates `daemon` in its start() through {@link startDaemon} (a new one per port retry).
 */
export abstract class SingleDaemonHarness extends TempHarness {
  daemon: Daemon | null = null

  /** Takes `dir` (already created); the exit cleanup is registered at once (see TempHarness). */
  constructor(dir: string) {
    super(dir)
  }

  /** The harness's temp directory (its {@link baseDir}). */
  get dir(): string {
    return this.baseDir
  }

  /** Pid of the daemon, or null once it is gone. */
  get pid(): number | null {
    return this.daemon?.pid ?? null
  }

  /** The last lines of the daemon's log. */
  logTail(lines = 30): string {
    return this.daemon?.logTail(lines) ?? ''
  }

  /**
   * Start the daemon that `start.prepare()` describes and wait until `start.ready()` holds, giving
   * up at once if it exits. One that does not come up is killed; when its log says that its port
   * was taken, it is prepared (new ports) and started again, three attempts in all.
   */
  protected async startDaemon(start: DaemonStart): Promise<void> {
    for (let attempt = 1; ; attempt++) {
      const d = new Daemon(await start.prepare())
      this.daemon = d
      // The log is appended to across attempts: only what this attempt writes may say "port taken".
      const logOffset = fileSize(d.options.logFile)
      d.start()
      try {
        await waitUntil(
          async () => {
            if (!d.running) throw new GiveUp(`${d.options.name} exited (${JSON.stringify(d.lastExit)})`)
            return start.ready()
          },
          {
            what: start.what(),
            timeout: start.timeoutMs,
            interval: start.intervalMs,
            diagnostics: () => `--- ${path.basename(d.options.logFile)} (tail) ---\n${d.logTail(20)}`,
          },
        )
        return
      } catch (err) {
        // A daemon that will not die must not hide why it did not come up; it stays this.daemon
        // (no retry then), so destroy() and the exit cleanup kill it again.
        const killed = await d.kill().then(
          () => true,
          () => false,
        )
        if (killed && attempt < 3 && start.portTaken.test(readLogFrom(d.options.logFile, logOffset))) continue
        throw err
      }
    }
  }

  protected async killAll(): Promise<void> {
    await this.daemon?.kill()
  }

  protected killAllSync(): void {
    this.daemon?.killSync()
  }
}
