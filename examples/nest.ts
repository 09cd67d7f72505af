/**
 * NestJS: the pool as a provider (useFactory), and its shutdown in a separate provider.
 *
 * Usage:
 *   PGFP_ENDPOINTS='postgres://app:secret@db1:5432/app,postgres://app:secret@db2:5432/app' \
 *     npx tsx examples/nest.ts
 *
 * It boots an application context, runs one query through an injected service and closes the
 * context, which closes the pool. An HTTP app (@nestjs/platform-express) wires the same module.
 *
 * No decorators here: this repository compiles without `experimentalDecorators`, and factory
 * providers with `inject` need none. With decorators the same providers read:
 *
 *   @Injectable() class PoolShutdown implements OnApplicationShutdown {
 *     constructor(@Inject(PG_POOL) private readonly pool: FailoverPool) {}
 *     onApplicationShutdown() { return this.pool.end() }
 *   }
 *   @Controller() class HealthController {
 *     constructor(@Inject(PG_POOL) private readonly pool: FailoverPool) {}
 *     @Get('ready') ready(@Req() req: Request, @Res() res: Response) { healthHandler(this.pool)(req, res) }
 *   }
 */
import 'reflect-metadata'
import { type DynamicModule, Logger, type OnApplicationShutdown } from '@nestjs/common'
import { NestFactory } from '@nestjs/core'
import { FailoverPool, type FailoverPoolOptions } from '../src/index.js' // in your code: from 'pg-failover-pool'

/** Injection token: inject the pool by this, not by class, so a test can provide a stand-in. */
export const PG_POOL = Symbol('PG_POOL')

/**
 * Ends the pool when Nest shuts down. It lives in its own class because Nest calls lifecycle
 * methods on every provider instance, and the pool deliberately has none of those names:
 * whoever creates it decides when it ends.
 */
class PoolShutdown implements OnApplicationShutdown {
  constructor(private readonly pool: FailoverPool) {}
  async onApplicationShutdown(): Promise<void> {
    await this.pool.end()
  }
}

/** `imports: [DatabaseModule.forRoot(options)]` once, in the root module; global, so every module can inject PG_POOL. */
export class DatabaseModule {
  static forRoot(options: FailoverPoolOptions): DynamicModule {
    return {
      module: DatabaseModule,
      global: true,
      providers: [
        {
          provide: PG_POOL,
          useFactory: () => {
            const pool = new FailoverPool(options)
            const log = new Logger('Database')
            pool.on('failover', (e) => log.warn(`failover ${e.from} -> ${e.to} (${e.reason}) in ${e.durationMs} ms`))
            pool.on('error', (err) => log.warn(`idle connection lost: ${err.message}`))
            return pool
          },
        },
        { provide: PoolShutdown, useFactory: (pool: FailoverPool) => new PoolShutdown(pool), inject: [PG_POOL] },
      ],
      exports: [PG_POOL],
    }
  }
}

/** A service of your app: it gets the pool injected and uses it as a pg.Pool. */
export class ClockService {
  constructor(private readonly pool: FailoverPool) {}
  async now(): Promise<{ now: Date; port: number }> {
    // Reads that may be stale can go through this.pool.reader instead.
    const { rows } = await this.pool.query<{ now: Date; port: number }>('SELECT now() AS now, inet_server_port() AS port')
    return rows[0]!
  }
}

const endpoints = (process.env.PGFP_ENDPOINTS ?? '').split(',').filter((url) => url.trim() !== '')
if (endpoints.length === 0) {
  console.error('Set PGFP_ENDPOINTS to comma-separated postgres:// URLs (primary and replicas).')
  process.exit(2)
}

const app = await NestFactory.createApplicationContext(
  {
    imports: [DatabaseModule.forRoot({ endpoints, max: 10, connectionTimeoutMillis: 3_000 })],
    providers: [{ provide: ClockService, useFactory: (pool: FailoverPool) => new ClockService(pool), inject: [PG_POOL] }],
  },
  { logger: ['error', 'warn'] },
)
// SIGTERM from an orchestrator runs onApplicationShutdown, so the pool closes its connections.
app.enableShutdownHooks()

const { now, port } = await app.get(ClockService).now()
console.log(`primary (port ${port}) says it is ${now.toISOString()}`)
await app.close() // runs PoolShutdown.onApplicationShutdown -> pool.end()
console.log(`pool ended: ${app.get<FailoverPool>(PG_POOL).ended}`)
