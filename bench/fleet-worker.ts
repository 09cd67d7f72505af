/**
 * One process of the fleet bench (bench/fleet.ts): hosts `count` application instances, each a
 * FailoverPool with its own Redis clients and its own pg Client class — so, as separate processes
 * would, each has its own monitor sessions (the pools of one process otherwise share them).
 * Driven over stdin (one JSON command per line), answering on stdout (one JSON line each).
 *
 * Commands: {"cmd":"writes","pauseMs":N} every instance keeps one INSERT in flight, pausing N ms
 * after each; {"cmd":"stop-writes"}; {"cmd":"report"} -> {"kind":"report", instances: [...]}
 * (roles, acknowledged ids, first acknowledgement after each wall time asked for); {"cmd":"end"}.
 */
import { Redis } from 'ioredis'
import pg from 'pg'
import { type EndpointConfig, FailoverPool, RedisStateStore } from '../src/index.js'
import { onJsonLines } from '../test/support/json-lines.js'

interface WorkerConfig {
  readonly endpoints: EndpointConfig[]
  readonly redisUrl: string
  readonly count: number
  readonly prefix: string
  readonly mode: 'local' | 'shared'
  /** `warmStandbys` on every instance. */
  readonly warm: boolean
  readonly applicationName: string
}

interface Instance {
  readonly name: string
  readonly pool: FailoverPool
  readonly redis: Redis
  readonly acks: Array<{ id: number; at: number; port: number }>
  readonly errors: Array<{ id: number; at: number; message: string }>
  roleChanges: Array<{ role: string | null; at: number }>
  /** Wall times of the pool's 'failover' events (its adoption of a new primary). */
  readonly failovers: number[]
  next: number
}

const config = JSON.parse(process.argv[2]!) as WorkerConfig
const send = (message: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(message)}\n`)

const instances: Instance[] = []
function makeInstance(i: number): Instance {
  const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 200 })
  redis.on('error', () => undefined)
  // A class of its own: the process-wide monitor registry keys monitors by Client class, so this
  // instance gets its own monitor sessions, as it would in a process of its own.
  const Client = class extends pg.Client {}
  const pool = new FailoverPool({
    endpoints: config.endpoints,
    Client,
    max: 1,
    application_name: config.applicationName,
    connectionTimeoutMillis: 5_000,
    failoverTimeoutMs: 30_000,
    warmStandbys: config.warm,
    ...(config.mode === 'shared' ? { stateStore: new RedisStateStore({ client: redis }), monitor: 'shared' as const } : {}),
  })
  pool.on('error', () => undefined)
  const failovers: number[] = []
  pool.on('failover', () => failovers.push(Date.now()))
  return { name: `${config.prefix}${i}`, pool, redis, acks: [], errors: [], roleChanges: [], failovers, next: 1 }
}

const roleTimer = setInterval(() => {
  for (const instance of instances) {
    const role = instance.pool.status().monitor.role
    if (instance.roleChanges.at(-1)?.role !== role) instance.roleChanges.push({ role, at: Date.now() })
  }
}, 25)

// FLEET_TRACE=1: when this process's event loop was held up (gaps over 4 ms in a 1 ms timer), as [wall ms, gap ms].
const stalls: Array<[number, number]> = []
if (process.env.FLEET_TRACE) {
  let last = Date.now()
  setInterval(() => {
    const now = Date.now()
    if (now - last > 4) stalls.push([last, now - last])
    last = now
  }, 1).unref()
}

// FLEET_PROF: what maps the CPU profile's clock (microseconds of the monotonic clock) onto wall time.
if (process.env.FLEET_PROF) process.stderr.write(`clock ${config.prefix} hrtime_us=${process.hrtime.bigint() / 1000n} wall_ms=${Date.now()}\n`)

let writing: { pauseMs: number } | null = null
async function writeLoop(instance: Instance): Promise<void> {
  while (writing !== null) {
    const id = instance.next++
    try {
      const { rows } = await instance.pool.query<{ port: number }>('INSERT INTO fleet_ledger (instance, id) VALUES ($1, $2) RETURNING inet_server_port() AS port', [instance.name, id])
      instance.acks.push({ id, at: Date.now(), port: rows[0]!.port })
    } catch (err) {
      // Outcome unknown or failed: not counted as acknowledged.
      instance.errors.push({ id, at: Date.now(), message: (err as Error).message })
    }
    if (writing !== null) await new Promise((resolve) => setTimeout(resolve, writing!.pauseMs))
  }
}

onJsonLines(process.stdin, (command) => void handle(command))

async function handle(command: Record<string, unknown>): Promise<void> {
  switch (command.cmd) {
    case 'writes':
      writing = { pauseMs: command.pauseMs as number }
      for (const instance of instances) void writeLoop(instance)
      return send({ kind: 'writing' })
    case 'stop-writes':
      writing = null
      await new Promise((resolve) => setTimeout(resolve, 500))
      return send({ kind: 'stopped' })
    case 'report':
      return send({
        kind: 'report',
        stalls,
        instances: instances.map((i) => ({ name: i.name, role: i.pool.status().monitor.role, roleChanges: i.roleChanges, primary: i.pool.status().primary, acks: i.acks, errors: i.errors, failovers: i.failovers })),
      })
    case 'end':
      writing = null
      clearInterval(roleTimer)
      await Promise.all(instances.map((i) => i.pool.end().catch(() => undefined)))
      for (const i of instances) i.redis.disconnect()
      send({ kind: 'ended' })
      process.exit(0)
  }
}

// Instances start five at a time, as a rollout does: a 2-core machine cannot open hundreds of
// sessions in the same second and still answer probes within their deadline.
async function startAll(): Promise<void> {
  for (let i = 0; i < config.count; i += 5) {
    const batch = Array.from({ length: Math.min(5, config.count - i) }, (_, k) => makeInstance(i + k))
    instances.push(...batch)
    await Promise.all(batch.map((b) => b.pool.query('SELECT 1')))
  }
}
void startAll().then(
  () => send({ kind: 'ready' }),
  (err: Error) => send({ kind: 'failed', message: err.message }),
)
