/**
 * Loopback ports for the test servers (clusters, HA tools): one registry for the whole process, so
 * two harnesses never hand out the same port.
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
