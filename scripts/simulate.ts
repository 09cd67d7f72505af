/**
 * The deterministic simulator's command line: `npm run simulate -- --seed N --runs M`.
 * Runs schedules N .. N+M-1 (test/sim/run.ts; `--long` for longer, busier ones) and prints, per invariant broken, the first seeds
 * that broke it; `--seed N --runs 1 --trace` prints one schedule's configuration and trace, which
 * replay exactly (with the same flags). `--faults a,b` draws only those fault kinds, in 4-second
 * schedules; `--duration MS` sets the traffic phase; `--lag-commits N` sets a byte lag limit of N commits; `--members` adds an operator calling `setEndpoints` in every schedule. `--soak N` runs one pool through N failovers and checks that what it retains
 * (inner pools, connections, timers, listeners, waiters) does not grow. Exits 1 when any schedule
 * broke an invariant.
 */
import { FAULT_KINDS, type FaultKind } from '../test/sim/faults.js'
import { type ScheduleConfig, runSchedule } from '../test/sim/run.js'
import { runSoak } from '../test/sim/soak.js'

function arg(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`)
  return i === -1 ? fallback : Number(process.argv[i + 1])
}

const soak = arg('soak', 0)
if (soak > 0) {
  const started = performance.now()
  const result = await runSoak(arg('seed', 1), soak)
  console.log(`soak: ${result.failovers} failovers in ${((performance.now() - started) / 1000).toFixed(1)} s`)
  console.log(`  retained after 20 failovers: ${JSON.stringify(result.first)}`)
  console.log(`  retained at the end:         ${JSON.stringify(result.last)}`)
  console.log(`  peak:                        ${JSON.stringify(result.peak)}`)
  console.log(result.violation ? `  ${result.violation.message}` : '  no invariant broken')
  process.exit(result.violation ? 1 : 0)
}
const first = arg('seed', 1)
const runs = arg('runs', 100)
const showTrace = process.argv.includes('--trace')
// --faults a,b: only these fault kinds (and schedules long enough for them to matter); --duration ms.
const faultsArg = process.argv.indexOf('--faults')
const overrides: Partial<ScheduleConfig> = {}
if (faultsArg !== -1) {
  const kinds = (process.argv[faultsArg + 1] ?? '').split(',')
  const unknown = kinds.filter((k) => !(FAULT_KINDS as readonly string[]).includes(k))
  // A misspelt kind would silently run schedules without the fault the caller meant to explore.
  if (unknown.length > 0) {
    console.error(`--faults: unknown kind ${unknown.join(', ')} (known: ${FAULT_KINDS.join(', ')})`)
    process.exit(2)
  }
  Object.assign(overrides, { faults: kinds as FaultKind[], durationMs: 4_000, endEarlyAt: null })
}
if (process.argv.includes('--duration')) Object.assign(overrides, { durationMs: arg('duration', 4_000) })
// --lag-commits N: every schedule sets maxReplicaLagBytes to N commits of simulated WAL.
// --members: every schedule has an operator changing the endpoints at runtime (setEndpoints).
if (process.argv.includes('--members')) Object.assign(overrides, { members: true })
if (process.argv.includes('--lag-commits')) Object.assign(overrides, { maxReplicaLagCommits: arg('lag-commits', 2) })
const profile = process.argv.includes('--long') ? 'long' : 'short'
const quiet = process.argv.includes('--quiet')
const started = performance.now()
const broken = new Map<string, number[]>()
let steps = 0
let simulated = 0
for (let seed = first; seed < first + runs; seed++) {
  const result = await runSchedule(seed, profile, overrides)
  steps += result.steps
  simulated += result.simulatedMs
  if (result.violation) {
    const seeds = broken.get(result.violation.invariant) ?? []
    seeds.push(seed)
    broken.set(result.violation.invariant, seeds)
    if (!quiet && seeds.length === 1) console.log(`seed ${seed}: ${result.violation.message}`)
  }
  if (showTrace) {
    console.log(JSON.stringify(result.config))
    console.log(result.trace)
    console.log(`steps ${result.steps}, simulated ${result.simulatedMs.toFixed(0)} ms, requests ${JSON.stringify(result.counts)}, listener errors ${result.listenerErrors}`)
  }
}
const seconds = (performance.now() - started) / 1000
console.log(`${runs} schedules (seeds ${first}..${first + runs - 1}) in ${seconds.toFixed(1)} s: ${steps} steps, ${(simulated / 1000).toFixed(0)} simulated s`)
for (const [invariant, seeds] of broken) console.log(`  ${invariant}: ${seeds.length} schedule(s), first seeds ${seeds.slice(0, 8).join(', ')}`)
if (broken.size === 0) console.log('  no invariant broken')
process.exit(broken.size === 0 ? 0 : 1)
