/**
 * Loopback ports for the test servers (clusters, HA tools, Redis). Inside a vitest worker each
 * worker takes ports from a range of its own below the kernel's ephemeral range (32768-60999 on
 * Linux), which no bind(0) and no outgoing connection ever gets: a port picked now and bound by a
 * Patroni member half a minute later cannot meanwhile be handed to the other worker or to a
 * client socket. Elsewhere (scripts, benches) the kernel picks. One registry of handed-out ports
 * per process, so two harnesses of a process never share one; a port some other program holds is
 * skipped (and the harnesses retry a start whose log says its port was taken).
 */
import net from 'node:net'

const handedOutPorts = new Set<number>()

/** Ports per vitest worker, from {@link WORKER_PORTS_FROM}: worker N (1-based) has the Nth block. */
const WORKER_PORTS = 1_500
const WORKER_PORTS_FROM = 17_000
/** This process's vitest worker number (1-based, unique among the workers running at once), or 0. */
const worker = Number(process.env.VITEST_POOL_ID ?? 0)
let nextInRange = 0

/** A currently free TCP port on 127.0.0.1 that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50 || (worker > 0 && i < WORKER_PORTS); i++) {
    const wanted = worker > 0 && worker <= 10 ? WORKER_PORTS_FROM + (worker - 1) * WORKER_PORTS + (nextInRange++ % WORKER_PORTS) : 0
    if (handedOutPorts.has(wanted)) continue
    const port = await new Promise<number | null>((resolve, reject) => {
      const srv = net.createServer()
      srv.unref()
      srv.on('error', (err: NodeJS.ErrnoException) => (err.code === 'EADDRINUSE' || err.code === 'EACCES' ? resolve(null) : reject(err)))
      srv.listen(wanted, '127.0.0.1', () => {
        const addr = srv.address() as net.AddressInfo
        srv.close(() => resolve(addr.port))
      })
    })
    if (port !== null && !handedOutPorts.has(port)) {
      handedOutPorts.add(port)
      return port
    }
  }
  throw new Error('could not find a free TCP port on 127.0.0.1')
}

/** Try a TCP connect to 127.0.0.1:`port`: 'open', 'refused', 'timeout' or 'error'. */
export function probePort(port: number, timeoutMs = 500): Promise<'refused' | 'open' | 'timeout' | 'error'> {
  return new Promise((resolve) => {
    const sock = net.connect({ host: '127.0.0.1', port })
    const done = (r: 'refused' | 'open' | 'timeout' | 'error'): void => {
      clearTimeout(timer)
      sock.destroy()
      resolve(r)
    }
    const timer = setTimeout(() => done('timeout'), timeoutMs)
    sock.on('connect', () => done('open'))
    sock.on('error', (err: NodeJS.ErrnoException) => done(err.code === 'ECONNREFUSED' ? 'refused' : 'error'))
  })
}
