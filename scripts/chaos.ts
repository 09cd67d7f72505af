/**
 * `npm run chaos` — a seeded chaos run against a real synchronous cluster (primary + two standbys)
 * through one FailoverPool: steady writes and reads, faults injected one after another, the HA
 * tool's failovers, six checks. Prints a live line per second and a final table; writes
 * bench/CHAOS.md and bench/failover-timeline.svg. Exit code 0 only when every check passed.
 *
 *   npx tsx scripts/chaos.ts [--seed N] [--faults N] [--duration S] [--kinds k1,k2:primary,...]
 *                            [--order random|cycle] [--steady-ms MIN-MAX] [--no-write] [--quiet]
 *
 * The same seed (and options) replays the same schedule: fault kinds, targets and timings.
 */
import { writeFileSync } from 'node:fs'
import { fileURLToPath } from 'node:url'
import { type ChaosOptions, replayCommand, runChaos } from '../test/chaos/run.js'
import { renderMarkdown, renderTable } from '../test/chaos/report.js'
import { DEFAULT_FAULTS, FAULT_KINDS, parseKindSpec } from '../test/chaos/schedule.js'
import { renderTimelineSvg } from '../test/chaos/svg.js'

const USAGE = `usage: npx tsx scripts/chaos.ts [--seed N] [--faults N] [--duration SECONDS] [--kinds KIND[:primary|:standby],...]
                                [--order random|cycle] [--steady-ms MIN-MAX] [--no-write] [--quiet]
kinds: ${FAULT_KINDS.join(', ')}`

interface Cli {
  options: ChaosOptions
  write: boolean
  quiet: boolean
}

function parseArgs(argv: string[]): Cli {
  let seed: number | undefined
  let faults: number | undefined
  let durationMs: number | undefined
  let kinds: ChaosOptions['kinds']
  let order: ChaosOptions['order']
  let steadyMs: ChaosOptions['steadyMs']
  let write = true
  let quiet = false
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!
    const [flag, inline] = arg.includes('=') ? [arg.slice(0, arg.indexOf('=')), arg.slice(arg.indexOf('=') + 1)] : [arg, undefined]
    const value = (): string => {
      const v = inline ?? argv[++i]
      if (v === undefined) throw new Error(`${flag} needs a value`)
      return v
    }
    const int = (v: string, min: number): number => {
      const n = Number(v)
      if (!Number.isInteger(n) || n < min) throw new Error(`${flag} expects an integer >= ${min}, got ${JSON.stringify(v)}`)
      return n
    }
    switch (flag) {
      case '--seed':
        seed = int(value(), 0)
        break
      case '--faults':
        faults = int(value(), 1)
        break
      case '--duration':
        durationMs = int(value(), 1) * 1000
        break
      case '--kinds':
        kinds = value().split(',').filter(Boolean).map(parseKindSpec)
        break
      case '--order': {
        const v = value()
        if (v !== 'random' && v !== 'cycle') throw new Error(`--order expects random or cycle, got ${JSON.stringify(v)}`)
        order = v
        break
      }
      case '--steady-ms': {
        const m = /^(\d+)-(\d+)$/.exec(value())
        if (!m || Number(m[1]) > Number(m[2])) throw new Error('--steady-ms expects MIN-MAX, e.g. 1500-3000')
        steadyMs = [Number(m[1]), Number(m[2])]
        break
      }
      case '--no-write':
        write = false
        break
      case '--quiet':
        quiet = true
        break
      case '--help':
      case '-h':
        console.log(USAGE)
        process.exit(0)
        break
      default:
        throw new Error(`unknown argument ${JSON.stringify(arg)}`)
    }
  }
  // With --duration and no --faults, plan plenty: the duration decides how many run.
  if (durationMs !== undefined && faults === undefined) faults = 500
  seed ??= Math.floor(Math.random() * 2 ** 31)
  return { options: { seed, faults: faults ?? DEFAULT_FAULTS, durationMs, kinds, order, steadyMs }, write, quiet }
}

async function main(): Promise<number> {
  let cli: Cli
  try {
    cli = parseArgs(process.argv.slice(2))
  } catch (err) {
    console.error(`${(err as Error).message}\n${USAGE}`)
    return 2
  }
  const { options } = cli
  replayOnInterrupt = replayCommand(options)
  console.log(`chaos: seed ${options.seed} (replay: ${replayOnInterrupt})`)
  const result = await runChaos({ ...options, log: (line) => console.log(line), progress: !cli.quiet })
  console.log('')
  console.log(renderTable(result))
  if (cli.write) {
    const md = fileURLToPath(new URL('../bench/CHAOS.md', import.meta.url))
    const svg = fileURLToPath(new URL('../bench/failover-timeline.svg', import.meta.url))
    writeFileSync(svg, renderTimelineSvg(result))
    writeFileSync(md, renderMarkdown(result))
    console.log(`wrote ${md} and ${svg}`)
  }
  if (!result.pass) {
    console.log(`\nFAILED (seed ${result.seed}). Replay: ${result.replay}`)
    return 1
  }
  console.log(`\nall checks passed (seed ${result.seed})`)
  return 0
}

let replayOnInterrupt = ''
process.on('SIGINT', () => {
  // The cluster harness removes the servers and their data on exit.
  console.log(`\nSIGINT: removing the cluster and exiting.${replayOnInterrupt ? ` Replay: ${replayOnInterrupt}` : ''}`)
  process.exit(130)
})

main().then(
  (code) => {
    process.exitCode = code
    // The process must end by itself; if something of ours still holds it, say what and fail.
    setTimeout(() => {
      console.error(`chaos: still running 10 s after the end; active resources: ${process.getActiveResourcesInfo().join(', ')}`)
      process.exit(1)
    }, 10_000).unref()
  },
  (err: unknown) => {
    console.error('chaos: crashed:', err)
    process.exitCode = 1
  },
)
