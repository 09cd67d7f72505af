import { execFileSync } from 'node:child_process'
import { chmodSync } from 'node:fs'
import net from 'node:net'
import path from 'node:path'
import pg from 'pg'
import { QueryTypes, Sequelize } from 'sequelize'
import { describe, expect, it } from 'vitest'
import { sequelizeDialect } from '../../src/integrations/sequelize.js'
import type { ClusterNode } from '../support/cluster.js'
import { chownToServerUser } from '../support/pg-binaries.js'
import { useResources } from '../support/pools.js'

const res = useResources()

/** A self-signed certificate and key the postgres user can read (the key private to it, as PostgreSQL demands). */
function serverCertificate(): { cert: string; key: string } {
  const dir = res.tempDir('pgfp-tls-')
  const cert = path.join(dir, 'server.crt')
  const key = path.join(dir, 'server.key')
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=127.0.0.1', '-keyout', key, '-out', cert], { stdio: 'ignore' })
  chmodSync(key, 0o600)
  chmodSync(dir, 0o755)
  for (const p of [dir, cert, key]) chownToServerUser(p)
  return { cert, key }
}

/** The application_name of the Sequelize connections the proxy in the third test may cut. */
const SEQUELIZE_APP = 'sequelize-under-test'

/** The application_name in a PostgreSQL startup message (length, protocol, then name/value pairs), or '' when it has none. */
function applicationNameOf(startup: Buffer): string {
  const fields = startup.subarray(8, startup.readInt32BE(0)).toString('utf8').split('\0')
  for (let i = 0; i + 1 < fields.length; i += 2) if (fields[i] === 'application_name') return fields[i + 1]!
  return ''
}

describe('connectClient (and Sequelize through it) takes the endpoint\'s settings', () => {
  it('with endpoints given as connection strings: the node\'s address, credentials, database and TLS; the client keeps its own keepalive', async () => {
    const { cert, key } = serverCertificate()
    const cluster = await res.cluster({ standbys: 1, settings: { ssl: 'on', ssl_cert_file: cert, ssl_key_file: key } })
    const [n0, n1] = cluster.nodes as [ClusterNode, ClusterNode]
    // pg's `no-verify`: TLS without checking the self-signed certificate.
    const pool = res.pool(cluster, { endpoints: cluster.nodes.map((n) => `${n.url}?sslmode=no-verify`) })

    // Everything the library put in the client is a placeholder, except its keepalive.
    const made = () => new pg.Client({ host: 'placeholder.invalid', port: 1, user: 'nobody', database: 'nowhere', password: 'wrong', keepAlive: true })
    const writer = made()
    writer.on('error', () => undefined)
    res.defer(() => writer.end().catch(() => undefined))
    await pool.connectClient(writer)
    const session = 'SELECT inet_server_port() AS port, current_user AS "user", current_database() AS db, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls'
    expect((await writer.query(session)).rows[0]).toEqual({ port: n0.port, user: 'postgres', db: 'postgres', tls: true })
    // pg fixes keepalive when it builds the client's connection; the one it gets here keeps the client's.
    expect((writer as unknown as { connection: { _keepAlive: boolean } }).connection._keepAlive).toBe(true)

    const reader = made()
    reader.on('error', () => undefined)
    res.defer(() => reader.end().catch(() => undefined))
    await pool.connectClient(reader, 'read')
    expect((await reader.query(session)).rows[0]).toEqual({ port: n1.port, user: 'postgres', db: 'postgres', tls: true })

    // Sequelize's sessions go through connectClient: the same node and settings, whatever Sequelize was told.
    const sequelize = new Sequelize({ dialect: 'postgres', dialectModule: sequelizeDialect(pool), host: 'placeholder.invalid', database: 'nowhere', username: 'nobody', logging: false })
    res.defer(() => sequelize.close())
    expect(await sequelize.query(session, { type: QueryTypes.SELECT })).toEqual([{ port: n0.port, user: 'postgres', db: 'postgres', tls: true }])
  })

  it('with endpoints given as config objects: the client keeps its own database and TLS where the endpoint names none', async () => {
    const cluster = await res.cluster({ standbys: 0 })
    const [n0] = cluster.nodes as [ClusterNode]
    await cluster.sql(n0, 'CREATE DATABASE app')
    const pool = res.pool(cluster, { endpoints: [{ host: n0.host, port: n0.port, user: 'postgres', password: cluster.password, name: n0.name }] })

    const client = new pg.Client({ host: 'placeholder.invalid', port: 1, database: 'app', ssl: false })
    client.on('error', () => undefined)
    res.defer(() => client.end().catch(() => undefined))
    await pool.connectClient(client)
    const row = (await client.query('SELECT inet_server_port() AS port, current_database() AS db, (SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()) AS tls')).rows[0]
    expect(row).toEqual({ port: n0.port, db: 'app', tls: false })
  })

  it('a Sequelize connection whose first attempt is cut is retried, and keeps the listeners Sequelize put on it', async () => {
    const cluster = await res.cluster({ standbys: 0 })
    const [n0] = cluster.nodes as [ClusterNode]
    // A loopback TCP proxy in front of the node. It reads each connection's startup message and
    // cuts the next `cut` connections of Sequelize's (told apart by their application_name, which
    // the pool's own sessions, health checks included, do not have) as they arrive; `arrived`
    // lists every connection, in order: its application_name and whether it was cut.
    let cut = 0
    const arrived: Array<{ app: string; cut: boolean }> = []
    const sockets = new Set<net.Socket>()
    const proxy = net.createServer((downstream) => {
      sockets.add(downstream)
      downstream.on('close', () => sockets.delete(downstream))
      downstream.on('error', () => undefined)
      let startup = Buffer.alloc(0)
      const onStartup = (chunk: Buffer): void => {
        startup = Buffer.concat([startup, chunk])
        if (startup.length < 4 || startup.length < startup.readInt32BE(0)) return
        downstream.removeListener('data', onStartup)
        downstream.pause()
        const app = applicationNameOf(startup)
        const cutThis = app === SEQUELIZE_APP && cut > 0
        arrived.push({ app, cut: cutThis })
        if (cutThis) {
          cut--
          downstream.destroy()
          return
        }
        const upstream = net.connect(n0.port, '127.0.0.1')
        sockets.add(upstream)
        upstream.on('close', () => sockets.delete(upstream))
        upstream.on('error', () => downstream.destroy())
        downstream.on('close', () => upstream.destroy())
        upstream.on('close', () => downstream.destroy())
        upstream.write(startup)
        downstream.pipe(upstream).pipe(downstream)
      }
      downstream.on('data', onStartup)
    })
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve))
    res.defer(async () => {
      for (const s of sockets) s.destroy()
      await new Promise((resolve) => proxy.close(resolve))
    })
    const port = (proxy.address() as net.AddressInfo).port
    const pool = res.pool(cluster, { endpoints: [`postgres://postgres:${cluster.password}@127.0.0.1:${port}/postgres`] })
    expect((await pool.query('SELECT inet_server_port() AS port')).rows).toEqual([{ port: n0.port }])

    const sequelize = new Sequelize({
      dialect: 'postgres',
      dialectModule: sequelizeDialect(pool),
      host: 'placeholder.invalid',
      dialectOptions: { application_name: SEQUELIZE_APP },
      logging: false,
    })
    res.defer(() => sequelize.close())
    const connected: Array<Record<string, unknown>> = []
    const errorListenersAtConnect: number[] = []
    sequelize.addHook('afterConnect', (connection) => {
      connected.push(connection as Record<string, unknown>)
      errorListenersAtConnect.push((connection as pg.Client).listenerCount('error'))
    })
    // The pool's own sessions came through the proxy untouched, and none was Sequelize's.
    expect(arrived.length).toBeGreaterThan(0)
    expect(arrived.filter((a) => a.app === SEQUELIZE_APP || a.cut)).toEqual([])
    cut = 1
    expect(await sequelize.query("SELECT inet_server_port() AS port, current_setting('application_name') AS app", { type: QueryTypes.SELECT })).toEqual([{ port: n0.port, app: SEQUELIZE_APP }])
    // Only Sequelize's first connection attempt was cut (Sequelize first connects once to read the
    // server version, then for the query); every other one of its attempts became a connection.
    expect(arrived.filter((a) => a.cut).map((a) => a.app)).toEqual([SEQUELIZE_APP])
    expect(arrived.filter((a) => a.app === SEQUELIZE_APP).map((a) => a.cut)).toEqual([true, ...connected.map(() => false)])
    // Sequelize learns standard_conforming_strings from a listener it put on the first attempt's
    // connection; had the retry dropped it, the connection would not know the server's value.
    expect(connected.length).toBeGreaterThan(0)
    expect(connected[0]!['standard_conforming_strings']).toBe('on')
    // The cut attempt left none of the pool's listeners behind: the retried client has as many as
    // a client whose first attempt went through.
    expect(errorListenersAtConnect).toHaveLength(connected.length)
    expect(new Set(errorListenersAtConnect).size, `'error' listeners at connect: ${errorListenersAtConnect.join(', ')}`).toBe(1)
  })
})
