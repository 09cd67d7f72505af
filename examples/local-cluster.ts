/**
 * A throw-away local cluster to run the examples against (the same harness `npm run demo` uses).
 *
 * Usage:
 *   npx tsx examples/local-cluster.ts [standbys]     # default 1 standby
 *
 * It prints an `export PGFP_ENDPOINTS=...` line to paste into another terminal, then waits. Press
 * Enter to fail over (stop the primary, promote the first standby, re-point the others) and watch
 * the example in the other terminal carry on; Ctrl-C removes every server and data directory.
 * Needs the PostgreSQL server binaries (`apt-get install -y postgresql`).
 */
import readline from 'node:readline'
import { type ClusterNode, startCluster } from '../test/support/cluster.js'

const standbys = Number(process.argv[2] ?? 1)
console.log(`starting a primary and ${standbys} standby(s) on 127.0.0.1 ...`)
const cluster = await startCluster({ standbys })
console.log(`\nexport PGFP_ENDPOINTS='${cluster.nodes.map((n) => n.url).join(',')}'\n`)
for (const n of cluster.nodes) console.log(`  ${n.name}  port ${n.port}`)
console.log('\nEnter: fail over   Ctrl-C: stop and clean up')

let primary: ClusterNode = cluster.nodes[0]!
const stopped = new Set<ClusterNode>()
let busy = false
const rl = readline.createInterface({ input: process.stdin })
rl.on('line', () => {
  if (busy) return
  const next = cluster.nodes.find((n) => n !== primary && !stopped.has(n))
  if (!next) return console.log('no standby left to promote')
  busy = true
  void (async () => {
    // The old primary stays down: bringing it back as a standby is another operation (pg_rewind).
    console.log(`stopping ${primary.name}, promoting ${next.name} ...`)
    await cluster.stop(primary, 'fast')
    stopped.add(primary)
    await cluster.promote(next)
    primary = next
    for (const n of cluster.nodes) if (n !== primary && !stopped.has(n)) await cluster.repoint(n, primary)
    console.log(`${primary.name} (port ${primary.port}) is the primary now`)
  })()
    .catch((err: unknown) => console.error('failover script failed:', err instanceof Error ? err.message : err))
    .finally(() => {
      busy = false
    })
})

// The harness tears the cluster down on SIGINT/SIGTERM by itself; this only keeps the output tidy.
rl.on('close', () => void cluster.destroy().then(() => process.exit(0)))
