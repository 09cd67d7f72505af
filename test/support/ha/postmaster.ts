/**
 * Find, kill and clean up after PostgreSQL postmasters that a tool (Patroni, repmgr, pg_ctl)
 * started in a data directory, using only `postmaster.pid`.
 */
import { spawnSync } from 'node:child_process'
import { readFileSync, unlinkSync } from 'node:fs'
import path from 'node:path'
import { childPids, commandLine, isAlive, processState, signal } from '../pg-binaries.js'
import { waitUntil } from '../wait.js'

function pidFileLines(dataDir: string): string[] | null {
  try {
    return readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\n')
  } catch {
    return null
  }
}

function isPostgres(pid: number): boolean {
  // Arguments are joined by spaces: the executable is the first word ("/usr/lib/.../postgres -D ...",
  // or a retitled "postgres: ..." child).
  const cmd = commandLine(pid) ?? ''
  return /^(\S*\/)?postgres(\s|$)/.test(cmd) || cmd.startsWith('postgres:')
}

/** Pid of the live postmaster of `dataDir` (from postmaster.pid), or null when none runs. */
export function postmasterPid(dataDir: string): number | null {
  const pid = Number(pidFileLines(dataDir)?.[0]?.trim())
  return Number.isInteger(pid) && pid > 0 && isAlive(pid) && isPostgres(pid) ? pid : null
}

/** SysV shared memory id (line 7 of postmaster.pid: "<key> <shmid>"), or null. */
export function shmIdOf(dataDir: string): number | null {
  const m = /^\s*\d+\s+(\d+)\s*$/.exec(pidFileLines(dataDir)?.[6] ?? '')
  return m ? Number(m[1]) : null
}

/** The postmaster of `dataDir` and its live children ([] when not running). */
export function serverPids(dataDir: string): number[] {
  const pid = postmasterPid(dataDir)
  return pid === null ? [] : [pid, ...childPids(pid)]
}

/** Remove a SysV shared memory segment if no process is attached any more. */
export function removeShmIfUnused(shmId: number | null): void {
  if (shmId === null) return
  try {
    const line = readFileSync('/proc/sysvipc/shm', 'utf8')
      .split('\n')
      .map((l) => l.trim().split(/\s+/))
      .find((f) => f[1] === String(shmId))
    // columns: key shmid perms size cpid lpid nattch ...
    if (line === undefined || Number(line[6]) !== 0) return
  } catch {
    return
  }
  spawnSync('ipcrm', ['-m', String(shmId)], { stdio: 'ignore' })
}

/** Remove postmaster.pid (only call when its postmaster is known dead, e.g. a zombie nobody reaps). */
function removeStalePidFile(dataDir: string): void {
  try {
    unlinkSync(path.join(dataDir, 'postmaster.pid'))
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err
  }
}

/**
 * Remove postmaster.pid unless a live postmaster owns it. A postmaster we killed may linger as a
 * zombie nobody reaped: its pid file then blocks a restart, and Patroni (psutil) would take it for
 * a running server.
 */
export function removePidFileUnlessLive(dataDir: string): void {
  if (postmasterPid(dataDir) === null) removeStalePidFile(dataDir)
}

/**
 * Wait up to 5 s until `pids` have left the process table, i.e. were reaped by their subreaper and
 * not merely killed (a zombie keeps its pid, so postmaster.pid would still name a "running"
 * process). Gives up silently: the caller's teardown goes on either way.
 */
export async function waitReaped(pids: number[]): Promise<void> {
  await waitUntil(() => pids.every((p) => processState(p) === undefined), {
    what: 'killed server processes to be reaped',
    timeout: 5000,
    interval: 10,
  }).catch(() => undefined)
}

/**
 * SIGKILL the postmaster of `dataDir` (and, with `children`, all its children at once) and wait
 * until those processes are gone. Returns the killed postmaster's pid, or null if none ran.
 */
export async function killPostmaster(dataDir: string, children: boolean, timeoutMs = 10_000): Promise<number | null> {
  const pid = postmasterPid(dataDir)
  if (pid === null) return null
  const pids = children ? [pid, ...childPids(pid)] : [pid]
  for (const p of pids) signal(p, 'SIGKILL')
  await waitUntil(() => !pids.some((p) => isAlive(p)), {
    what: `postmaster ${pid} of ${dataDir}${children ? ' and its children' : ''} to die after SIGKILL`,
    timeout: timeoutMs,
    interval: 10,
  })
  return pid
}
