/** The live lines of a run: one per second while it runs, one per fault once it is over. */
import type { FailoverPoolStatus } from '../../src/index.js'
import type { CheckResult, FaultFigures } from './checks.js'
import type { FaultRecord } from './faults.js'
import type { ReadLedger, WriteLedger } from './ledger.js'
import type { Workload } from './workload.js'

export function ms(v: number | null | undefined): string {
  return v === null || v === undefined ? '-' : `${Math.round(v)}`
}

/** `[  23s] F4/12 promote-live node2 | primary node2 (pool node2, epoch 4) | 612 w/s 790 r/s | ...` */
export function formatProgress(elapsedMs: number, phase: string, ledger: WriteLedger, reads: ReadLedger, status: FailoverPoolStatus, haPrimary: string, w: Workload): string {
  const t = ledger.acks
  const since = performance.timeOrigin + performance.now() - 1_000
  const writesPerSec = t.length - t.firstAtOrAfter(since)
  const readsPerSec = reads.ok.length - reads.ok.firstAtOrAfter(since)
  const x = ledger.totals
  return (
    `[${(elapsedMs / 1000).toFixed(0).padStart(4)}s] ${phase.padEnd(34)} | primary ${haPrimary} (pool ${status.primary ?? 'none'}, epoch ${status.epoch}) | ` +
    `${String(writesPerSec).padStart(4)} w/s ${String(readsPerSec).padStart(4)} r/s | acked ${x.acked} clean ${x.clean} unknown ${x.unknown} other ${x.other} | in flight ${w.inFlightWrites}w ${w.inFlightReads}r`
  )
}

/** `F4 promote-live node1 (node0 -> node1): detect 5, promoted 180, pool +3, first write +12, gap 210 ms | 1✓ 2✓ ...` */
export function formatFaultLine(rec: FaultRecord, fig: FaultFigures, checks: readonly CheckResult[]): string {
  const move = rec.promotion ? ` (${rec.promotion.from} -> ${rec.promotion.node})` : ''
  const figures = rec.promotion
    ? `detect ${ms(fig.detectMs)}, promoted ${ms(fig.promotedMs)}, pool follows ${ms(fig.followMs)} / first write ${ms(fig.firstWriteMs)} after promote began, gap ${ms(fig.gapMs)} ms`
    : `detect ${ms(fig.detectMs)}, gap ${ms(fig.gapMs)} ms`
  const marks = checks.map((c) => `${c.id}${c.pass ? '✓' : '✗'}`).join(' ')
  const c = fig.counts
  return `F${rec.plan.index} ${rec.plan.kind} ${rec.target}${move}: ${figures} | ${marks} | acked ${c.acked} clean ${c.clean} unknown ${c.unknown} other ${c.other}`
}
