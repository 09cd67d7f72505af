/**
 * One application instance of a fleet, in a process of its own (shared monitoring is about what
 * separate processes hold on the database): a FailoverPool with `monitor: 'shared'` over a
 * RedisStateStore, driven over stdin with one JSON command per line and answering on stdout with
 * one JSON line per event.
 *
 *   node --import tsx test/support/fleet-instance.ts '<json: { endpoints, redisUrl, options }>'
 *
 * Commands: {"cmd":"status"} -> {"kind":"status",...}; {"cmd":"write","id":N} -> {"kind":"ack"|"error","id":N,...}
 * (one INSERT INTO fleet_ledger); {"cmd":"writes","every":ms,"from":N} starts a write loop of its own,
 * one at a time (each acknowledgement reported); {"cmd":"stop-writes"} (answered once the last write settled); {"cmd":"end"} ends the pool and exits.
 * Events: {"kind":"ready"}, {"kind":"role","role":...,"at":ms}, {"kind":"failover","to":...,"at":ms}.
 * Times are wall-clock ms (Date.now()), comparable across the processes of one machine.
 */
import { Redis } from 'ioredis'
import { type EndpointConfig, FailoverPool, type FailoverPoolOptions, RedisStateStore } from '../../src/index.js'
import { onJsonLines } from './json-lines.js'

interface Config {
  readonly endpoints: EndpointConfig[]
  readonly redisUrl: string
  readonly options?: Partial<FailoverPoolOptions>
  /** Every instance of one fleet names itself, for the ledger. */
  readonly name: string
}

const config = JSON.parse(process.argv[2] ?? '{}') as Config
const send = (message: Record<string, unknown>): void => void process.stdout.write(`${JSON.stringify(message)}\n`)

const redis = new Redis(config.redisUrl, { maxRetriesPerRequest: 0, enableOfflineQueue: false, retryStrategy: () => 100 })
redis.on('error', () => undefined)
const pool = new FailoverPool({
  endpoints: config.endpoints,
  stateStore: new RedisStateStore({ client: redis, commandTimeoutMs: 300 }),
  monitor: 'shared',
  max: 2,
  ...config.options,
})
pool.on('error', () => undefined)
pool.on('failover', (e) => send({ kind: 'failover', to: e.to, from: e.from, at: Date.now() }))

let lastRole: string | null = null
const roleTimer = setInterval(() => {
  const role = pool.status().monitor.role
  if (role !== lastRole) {
    lastRole = role
    send({ kind: 'role', role, at: Date.now() })
  }
}, 5)

let writing: { every: number; next: number } | null = null
/** The write loop running, if any: 'stop-writes' answers once its last write has settled. */
let loop: Promise<void> | null = null
async function write(id: number): Promise<void> {
  const sentAt = Date.now()
  try {
    const { rows } = await pool.query<{ port: number }>('INSERT INTO fleet_ledger (instance, id) VALUES ($1, $2) RETURNING inet_server_port() AS port', [config.name, id])
    send({ kind: 'ack', id, sentAt, at: Date.now(), port: rows[0]!.port })
  } catch (err) {
    send({ kind: 'error', id, sentAt, at: Date.now(), message: (err as Error).message, code: (err as { code?: string }).code ?? null })
  }
}
async function writeLoop(): Promise<void> {
  while (writing !== null) {
    const id = writing.next++
    await write(id)
    if (writing !== null && writing.every > 0) await new Promise((resolve) => setTimeout(resolve, writing!.every))
  }
}

onJsonLines(process.stdin, (command) => void handle(command))

async function handle(command: Record<string, unknown>): Promise<void> {
  switch (command.cmd) {
    case 'status':
      return send({ kind: 'status', status: pool.status(), at: Date.now() })
    case 'write':
      return write(command.id as number)
    case 'writes':
      if (writing === null) {
        writing = { every: (command.every as number) ?? 0, next: (command.from as number) ?? 1 }
        loop = writeLoop()
      }
      return
    case 'stop-writes':
      writing = null
      // Every write sent has answered (ack or error) before this reply.
      await loop
      loop = null
      return send({ kind: 'stopped-writes' })
    case 'end':
      writing = null
      clearInterval(roleTimer)
      await pool.end()
      redis.disconnect()
      send({ kind: 'ended' })
      process.exit(0)
  }
}

void pool.query('SELECT 1').then(
  () => send({ kind: 'ready', at: Date.now() }),
  (err: Error) => send({ kind: 'error', id: null, message: err.message }),
)
