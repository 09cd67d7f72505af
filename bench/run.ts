/**
 * `npm run bench`: measures on real PostgreSQL servers and writes bench/RESULTS.md.
 * Figures, not pass/fail: targets are printed next to them for comparison.
 */
import { execFileSync } from 'node:child_process'
import { writeFileSync } from 'node:fs'
import os from 'node:os'
import { fileURLToPath } from 'node:url'
import { startCluster } from '../test/support/cluster.js'
import { measureOverhead, median } from './overhead.js'
import { measurePromotionToWrite } from './promotion-to-write.js'
import { measureReads } from './reads.js'
import { measureLayerCost } from './layer-cost.js'
import { measureFrozenDetection, measureIdlePromotionNotice } from './detection.js'
import { measureRestartInPlace } from './restart-in-place.js'

const runs = Number(process.env.BENCH_PROMOTION_RUNS ?? 7)
const rounds = Number(process.env.BENCH_ROUNDS ?? 11)
const roundMs = Number(process.env.BENCH_ROUND_MS ?? 1000)

function pgVersion(): string {
  try {
    return execFileSync('pg_config', ['--version'], { encoding: 'utf8' }).trim()
  } catch {
    return 'unknown'
  }
}

async function main(): Promise<void> {
  console.log(`overhead: SELECT 1, ${rounds} interleaved rounds of ${roundMs} ms per subject`)
  const cluster = await startCluster({ standbys: 2 })
  let overhead
  let layer
  let reads
  try {
    overhead = await measureOverhead(cluster, [1, 16], rounds, roundMs)
    layer = await measureLayerCost(cluster)
    console.log('reads: pool.reader over two replicas against pg.Pool on one replica')
    reads = await measureReads(cluster, 16, rounds, roundMs)
  } finally {
    await cluster.destroy()
  }
  console.log(`  layer alone (no network): pg.Pool ${layer.pgPoolUs.toFixed(3)} µs/query, FailoverPool ${layer.failoverPoolUs.toFixed(3)} µs/query, pool.reader ${layer.readerUs.toFixed(3)} µs/read`)
  for (const r of overhead) {
    console.log(
      `  concurrency ${r.concurrency}: pg.Pool ${r.pgPoolQps.toFixed(0)} q/s, FailoverPool ${r.failoverPoolQps.toFixed(0)} q/s, ratio ${r.ratio.toFixed(3)}; client CPU ${r.pgPoolCpuUs.toFixed(1)} vs ${r.failoverPoolCpuUs.toFixed(1)} µs/query`,
    )
  }

  console.log(
    `  reader ${reads.readerTwoReplicasQps.toFixed(0)} q/s vs one replica ${reads.plainOneReplicaQps.toFixed(0)} q/s, ratio ${reads.ratio.toFixed(2)}; client CPU ${reads.readerCpuUs.toFixed(1)} vs ${reads.plainCpuUs.toFixed(1)} µs/read`,
  )
  console.log(`  read-your-writes read after a write: +${reads.readYourWritesExtraMs.toFixed(3)} ms (${reads.rywReadMs.toFixed(3)} vs ${reads.plainReadMs.toFixed(3)} ms)`)
  console.log(`promotion to first acknowledged write: ${runs} runs`)
  const samples = []
  for (let i = 0; i < runs; i++) {
    const s = await measurePromotionToWrite()
    samples.push(s)
    console.log(`  run ${i + 1}: ${s.promotionToWriteMs.toFixed(1)} ms (adopted after ${s.promotionToAdoptedMs.toFixed(1)} ms; a plain client's connect + INSERT ${s.plainClientWriteMs.toFixed(1)} ms; failover event ${s.failoverEventMs} ms)`)
  }
  const latencies = samples.map((s) => s.promotionToWriteMs)
  const med = median(latencies)
  console.log(`  median ${med.toFixed(1)} ms, min ${Math.min(...latencies).toFixed(1)}, max ${Math.max(...latencies).toFixed(1)}`)

  console.log(`restart in place: ${runs} restarts of the primary under two writers`)
  const restart = await measureRestartInPlace(runs)
  for (const [i, r] of restart.samples.entries()) console.log(`  run ${i + 1}: writable -> write ${r.writableToWriteMs.toFixed(1)} ms (database down ${r.databaseOutageMs.toFixed(0)} ms)`)
  const restartMedian = median(restart.samples.map((r) => r.writableToWriteMs))
  console.log(`  median ${restartMedian.toFixed(1)} ms; ledger: ${restart.acked} acked, ${restart.unknown} unknown, ${restart.failed} failed, ${restart.lost} acked lost, ${restart.duplicated} duplicated`)

  const probeTimeoutMs = 1000
  const healthCheckIntervalMs = 500
  console.log(`frozen primary detection: probeTimeoutMs ${probeTimeoutMs}, healthCheckIntervalMs ${healthCheckIntervalMs}, ${runs} runs`)
  const freezes = await measureFrozenDetection(runs, probeTimeoutMs, healthCheckIntervalMs)
  for (const f of freezes) console.log(`  detected in ${f.detectedMs.toFixed(0)} ms (worst case ${f.deadlineMs} ms)`)
  console.log(`idle promotion notice: ${runs} runs`)
  const notices: number[] = []
  for (let i = 0; i < runs; i++) {
    notices.push(await measureIdlePromotionNotice())
    console.log(`  run ${i + 1}: ${notices[i]!.toFixed(1)} ms`)
  }

  const cpu = os.cpus()[0]?.model ?? 'unknown CPU'
  const lines = [
    '# Benchmark results',
    '',
    `Measured ${new Date().toISOString().slice(0, 10)} by \`npm run bench\` on ${os.cpus().length} × ${cpu}, ${Math.round(os.totalmem() / 2 ** 30)} GiB,`,
    `Node ${process.version}, ${pgVersion()}, every server on loopback (fsync off, as in the tests).`,
    'Figures, not pass/fail tests; rerun to compare.',
    '',
    '## Per-query overhead against pg.Pool',
    '',
    `\`SELECT 1\` on the same primary; FailoverPool has all three nodes as endpoints (promotion watch on).`,
    `${rounds} rounds of ${roundMs} ms per subject, run back to back in alternating order; the ratio is the median of`,
    'the per-round ratios (throughput here drifts ±20% from second to second: two cores shared by client and servers).',
    'Client CPU per query is the overhead the library itself adds. Target: ratio ≥ 0.97.',
    '',
    '| concurrent callers | pg.Pool (q/s) | FailoverPool (q/s) | ratio | pg.Pool CPU (µs/query) | FailoverPool CPU (µs/query) |',
    '|---:|---:|---:|---:|---:|---:|',
    ...overhead.map(
      (r) => `| ${r.concurrency} | ${r.pgPoolQps.toFixed(0)} | ${r.failoverPoolQps.toFixed(0)} | ${r.ratio.toFixed(3)} | ${r.pgPoolCpuUs.toFixed(1)} | ${r.failoverPoolCpuUs.toFixed(1)} |`,
    ),
    '',
    'The pool layer alone, with the network taken out (every inner checkout gets a client that answers at once,',
    `so only queueing, routing, the request object, reporting and events remain), median of ${layer.rounds} interleaved rounds of`,
    '50 000 queries: this is the CPU the library adds per query, free of the servers\' noise.',
    '',
    '| pg.Pool layer (µs/query) | FailoverPool layer (µs/query) | added by the library (µs/query) | pool.reader layer (µs/read) | added by the library (µs/read) |',
    '|---:|---:|---:|---:|---:|',
    `| ${layer.pgPoolUs.toFixed(3)} | ${layer.failoverPoolUs.toFixed(3)} | ${(layer.failoverPoolUs - layer.pgPoolUs).toFixed(3)} | ${layer.readerUs.toFixed(3)} | ${(layer.readerUs - layer.pgPoolUs).toFixed(3)} |`,
    '',
    '## Reads through pool.reader',
    '',
    `\`${'SELECT count(*) FROM pg_class'}\`, 16 concurrent callers: \`pool.reader\` over two replicas against a plain pg.Pool`,
    'on one replica, interleaved rounds, median. On this 2-core machine all three servers and the client share',
    'the same cores, so the ratio shows routing overhead and spread, not the scale-out two real hosts would give.',
    '',
    '| pg.Pool on one replica (q/s) | pool.reader, two replicas (q/s) | ratio | pg.Pool CPU (µs/read) | reader CPU (µs/read) |',
    '|---:|---:|---:|---:|---:|',
    `| ${reads.plainOneReplicaQps.toFixed(0)} | ${reads.readerTwoReplicasQps.toFixed(0)} | ${reads.ratio.toFixed(2)} | ${reads.plainCpuUs.toFixed(1)} | ${reads.readerCpuUs.toFixed(1)} |`,
    '',
    'Read-your-writes: mean latency of a `SELECT 1` through the reader right after a write in the same',
    '`withReadYourWrites` context (the write\'s cost subtracted), against a plain reader read.',
    '',
    '| plain read (ms) | read-your-writes read (ms) | added per read (ms) |',
    '|---:|---:|---:|',
    `| ${reads.plainReadMs.toFixed(3)} | ${reads.rywReadMs.toFixed(3)} | ${reads.readYourWritesExtraMs.toFixed(3)} |`,
    '',
    '## Promotion to first acknowledged write',
    '',
    'Primary stopped (immediate), standby promoted while a writer keeps writing through the pool.',
    'Measured from the standby first answering `pg_is_in_recovery() = false` (polled every millisecond',
    `on its own session) to the first write the pool acknowledges. ${runs} runs, fresh cluster each. Target: median ≤ 25 ms.`,
    '"Adopted" is the pool\'s `failover` event; the write after it needs a new connection to the promoted node. The last column',
    'is a plain pg.Client started at the same moment (connect, then the same INSERT): what that connection and first write',
    'cost the node right after its promotion, on this machine, with no pool involved.',
    '',
    '| run | promotion → write (ms) | promotion → adopted (ms) | plain pg.Client: connect + INSERT (ms) | failover event durationMs |',
    '|---:|---:|---:|---:|---:|',
    ...samples.map((s, i) => `| ${i + 1} | ${s.promotionToWriteMs.toFixed(1)} | ${s.promotionToAdoptedMs.toFixed(1)} | ${s.plainClientWriteMs.toFixed(1)} | ${s.failoverEventMs} |`),
    `| **median** | **${med.toFixed(1)}** | ${median(samples.map((s) => s.promotionToAdoptedMs)).toFixed(1)} | ${median(samples.map((s) => s.plainClientWriteMs)).toFixed(1)} | ${median(samples.map((s) => s.failoverEventMs)).toFixed(0)} |`,
    '',
    '## Restart in place',
    '',
    'The primary is stopped immediately (`pg_ctl stop -m immediate`, as a crash) and started again in place while two',
    'writers keep writing through a FailoverPool with default options (discoveryIntervalMs 250). Measured from the node',
    'first answering writable (fresh connections polled every 2 ms) to the first write the pool acknowledges after that.',
    `${runs} restarts on one cluster. Target: median ≤ 500 ms. (Before the coordinator: 7.7–10.9 s, the breaker opened on`,
    'the one crash and discovery skipped the node until halfOpenAfterMs.)',
    '',
    '| run | writable → write (ms) | database down (ms) |',
    '|---:|---:|---:|',
    ...restart.samples.map((r, i) => `| ${i + 1} | ${r.writableToWriteMs.toFixed(1)} | ${r.databaseOutageMs.toFixed(0)} |`),
    `| **median** | **${restartMedian.toFixed(1)}** | ${median(restart.samples.map((r) => r.databaseOutageMs)).toFixed(0)} |`,
    '',
    `Write ledger: ${restart.acked} acknowledged, ${restart.unknown} outcome-unknown (in flight at the crash), ${restart.failed} failed otherwise;`,
    `${restart.lost} acknowledged writes missing afterwards, ${restart.duplicated} duplicated.`,
    '',
    '## Frozen primary detection',
    '',
    `The primary is frozen with SIGSTOP (its sockets stay open; nothing answers). The health monitor probes`,
    `every ${healthCheckIntervalMs} ms (±20% jitter) with a ${probeTimeoutMs} ms deadline, so the documented worst case is`,
    `probeTimeoutMs + 1.2 × healthCheckIntervalMs = ${probeTimeoutMs + healthCheckIntervalMs * 1.2} ms. Measured from SIGSTOP to the pool's \`endpointDown\`;`,
    'each run freezes the node right after the pool re-verified it, so the next probe round is almost a full interval away.',
    '',
    '| run | detected (ms) | deadline (ms) | share of deadline |',
    '|---:|---:|---:|---:|',
    ...freezes.map((f, i) => `| ${i + 1} | ${f.detectedMs.toFixed(0)} | ${f.deadlineMs} | ${(f.detectedMs / f.deadlineMs).toFixed(2)} |`),
    `| **median** | **${median(freezes.map((f) => f.detectedMs)).toFixed(0)}** | ${freezes[0]!.deadlineMs} | ${(median(freezes.map((f) => f.detectedMs)) / freezes[0]!.deadlineMs).toFixed(2)} |`,
    '',
    '## Idle promotion notice',
    '',
    'Primary stopped, the pool idle (polling slowed to every 10 s), a standby promoted. Measured from the standby',
    'first answering `pg_is_in_recovery() = false` (polled every millisecond) to the pool\'s `failover` event:',
    'the promotion watch (a server-side wait on each standby) is what notices. Fresh cluster per run. A value at or',
    'below 0 means the pool noticed before the 1 ms poller did (the poller sleeps 1 ms between round trips).',
    '',
    '| run | promotion → failover event (ms) |',
    '|---:|---:|',
    ...notices.map((n, i) => `| ${i + 1} | ${n.toFixed(1)} |`),
    `| **median** | **${median(notices).toFixed(1)}** |`,
    '',
  ]
  const out = fileURLToPath(new URL('./RESULTS.md', import.meta.url))
  writeFileSync(out, lines.join('\n'))
  console.log(`wrote ${out}`)
}

main().catch((err) => {
  console.error(err)
  process.exitCode = 1
})
