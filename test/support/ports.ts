/**
 * Loopback ports for the test servers (clusters, HA tools, Redis): one registry of handed-out
 * ports per process, so two harnesses of the same process never hand out the same port. The
 * registry is not shared between processes (vitest runs up to 2 worker processes), and any other
 * program may take a port between our pick and the server's bind: such clashes are handled by
 * the harnesses' start retries (a new port when the server's log says that its port was taken).
 */
import net from 'node:net'

const handedOutPorts = new Set<number>()

/** A currently free TCP port on 127.0.0.1 that this process has not handed out before. */
export async function freePort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = await new Promise<number>((resolve, reject) => {
      const srv = net.createServer()
      srv.unref()
      srv.on('error', reject)
      srv.listen(0, '127.0.0.1', () => {
        const addr = srv.address() as net.AddressInfo
        srv.close(() => resolve(addr.port))
      })
    })
    if (!handedOutPorts.has(port)) {
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
