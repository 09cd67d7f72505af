/**
 * Running a child process from a test (an example script, a CLI) and collecting its output.
 * No vitest import: usable from harness code too.
 */
import { spawn } from 'node:child_process'
import { fileURLToPath } from 'node:url'

/** The repository root (examples are run from there, as a reader would). */
export const ROOT = fileURLToPath(new URL('../..', import.meta.url))

export interface RunResult {
  /** Exit code, or null when the process was killed (by the timeout or a signal). */
  code: number | null
  stdout: string
  stderr: string
}

export interface RunOptions {
  /** Working directory (default {@link ROOT}). */
  cwd?: string
  /** The whole environment of the child (default: this process's). */
  env?: NodeJS.ProcessEnv
  /**
   * SIGKILL after this many ms. A script that never exits (a timer or socket left open after
   * pool.end()) then fails its test with code null instead of hanging it.
   */
  timeoutMs: number
  /** Run as this user and group (the postgres OS user's, when we are root). */
  uid?: number
  gid?: number
}

/** Runs `command args` to completion; never rejects for a non-zero exit (the caller asserts on `code`). */
export function runProcess(command: string, args: readonly string[], options: RunOptions): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, {
      cwd: options.cwd ?? ROOT,
      env: options.env ?? process.env,
      stdio: ['ignore', 'pipe', 'pipe'],
      uid: options.uid,
      gid: options.gid,
    })
    let stdout = ''
    let stderr = ''
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()))
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()))
    const timer = setTimeout(() => child.kill('SIGKILL'), options.timeoutMs)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(err)
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, stdout, stderr })
    })
  })
}

/** Runs `examples/<file>` with tsx against the nodes in `endpoints` (PGFP_ENDPOINTS), as examples/README.md says. */
export function runExample(file: string, endpoints: readonly string[], timeoutMs = 30_000): Promise<RunResult> {
  return runProcess('npx', ['tsx', `examples/${file}`], { env: { ...process.env, PGFP_ENDPOINTS: endpoints.join(',') }, timeoutMs })
}
