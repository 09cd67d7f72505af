/**
 * Small shared helpers of the HA harnesses: free loopback ports, polling with a deadline, plain
 * HTTP calls (Patroni REST, etcd health), one-shot SQL, temp directories owned by the server user.
 *
 * Ports come from test/support/ports.ts, as for test/support/cluster.ts and redis.ts (bind port 0
 * on 127.0.0.1, close, never hand out the same port twice in one process; re-exported here).
 * Another process may still grab a port between the pick and the daemon's bind; harnesses that
 * can cheaply retry with new ports do so.
 */
import { mkdtempSync } from 'node:fs'
import http from 'node:http'
import os from 'node:os'
import path from 'node:path'
import pg from 'pg'
import { chownToServerUser, IS_ROOT, postgresUser } from '../pg-binaries.js'
import { runProcess, type RunResult } from '../process.js'
import { sleep, waitUntil } from '../wait.js'

export { freePort, probePort } from '../ports.js'

export { GiveUp } from '../wait.js'

/**
 * {@link waitUntil} with positional arguments, as the HA harnesses call it: poll `fn` every
 * `intervalMs` until it returns a truthy value (a thrown error counts as "not yet", except
 * {@link GiveUp}, which ends the wait at once); throw after `timeoutMs` with the last error and
 * optional diagnostics.
 */
export function waitFor<T>(
  what: string,
  timeoutMs: number,
  intervalMs: number,
  fn: () => Promise<T | false | null | undefined>,
  diagnostics?: () => string | Promise<string>,
): Promise<T> {
  return waitUntil(fn, { what, timeout: timeoutMs, interval: intervalMs, diagnostics }) as Promise<T>
}

/** Response of {@link httpRequest}. */
export interface HttpResponse {
  status: number
  body: string
}

/** One HTTP request without keep-alive (the socket never outlives the call). Rejects on network errors and after `timeoutMs`. */
export function httpRequest(
  method: string,
  url: string,
  body?: unknown,
  timeoutMs = 3000,
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const payload = body === undefined ? undefined : JSON.stringify(body)
    const req = http.request(
      url,
      {
        method,
        agent: false,
        timeout: timeoutMs,
        headers: payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) },
      },
      (res) => {
        let data = ''
        res.setEncoding('utf8')
        res.on('data', (d: string) => {
          data += d
        })
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }))
        res.on('error', reject)
      },
    )
    req.on('timeout', () => req.destroy(new Error(`${method} ${url}: no answer within ${timeoutMs} ms`)))
    req.on('error', reject)
    req.end(payload)
  })
}

/** Connection settings of one PostgreSQL server, as node-postgres takes them. */
export interface PgConfig {
  host: string
  port: number
  user: string
  password: string
  database: string
}

/** Run one statement on a fresh pg.Client (connect timeout 2 s by default) and return its rows. */
export async function pgQuery<T = any>(
  config: PgConfig & Partial<pg.ClientConfig>,
  text: string,
  values?: unknown[],
): Promise<T[]> {
  const client = new pg.Client({ connectionTimeoutMillis: 2000, application_name: 'pgfp-ha-harness', ...config })
  client.on('error', () => undefined)
  try {
    await client.connect()
    const res = await client.query(text, values)
    return res.rows as T[]
  } finally {
    await Promise.race([client.end().catch(() => undefined), sleep(1000)])
  }
}

/**
 * Current timeline of a server: of its WAL insert position on a primary, of the WAL receiver on a
 * standby (0 when the standby has none).
 */
export async function timelineOf(config: PgConfig): Promise<number> {
  const [row] = await pgQuery<{ f: string | null }>(
    config,
    `SELECT CASE WHEN pg_is_in_recovery() THEN (SELECT received_tli::text FROM pg_stat_wal_receiver)
                 ELSE pg_walfile_name(pg_current_wal_lsn()) END AS f`,
  )
  const f = row?.f ?? ''
  return f.length >= 8 ? parseInt(f.slice(0, 8), 16) : Number(f)
}

/** mkdtemp under the OS temp dir, chowned to the postgres server user when root. */
export function makeServerTempDir(prefix: string): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), prefix))
  chownToServerUser(dir)
  return dir
}

/**
 * Run a command to completion as the postgres OS user when root (directly otherwise) and collect
 * its output; never rejects (check `code`: null when killed, or when it could not be spawned,
 * with the reason in `stderr`). Killed after `timeoutMs`.
 */
export function runAsServerUser(
  command: string,
  args: string[],
  opts: { cwd?: string; env?: Record<string, string>; timeoutMs?: number } = {},
): Promise<RunResult> {
  return runProcess(command, args, {
    cwd: opts.cwd ?? process.cwd(),
    env: { ...process.env, ...opts.env },
    timeoutMs: opts.timeoutMs ?? 60_000,
    ...(IS_ROOT ? postgresUser() : {}),
  }).catch((err: Error) => ({ code: null, stdout: '', stderr: err.message }))
}
