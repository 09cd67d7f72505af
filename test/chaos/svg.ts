/**
 * bench/failover-timeline.svg, written by hand (no dependencies): acknowledged writes/s and
 * reads/s per 250 ms bucket over the whole run, write and read errors per bucket below, every
 * fault (dashed red line, shaded while it lasts, labelled) and every promotion (purple line,
 * labelled) marked, and the pool's own failover events as ticks.
 */
import type { Series } from './ledger.js'
import { OUTCOME } from './ledger.js'
import type { ChaosResult } from './run.js'

const BUCKET_MS = 250
const W = 1400
const H = 620
const LEFT = 70
const RIGHT = 30
const LABEL_TOP = 44
const P1_TOP = 128
const P1_H = 270
const P2_TOP = 430
const P2_H = 100
const AXIS_Y = P2_TOP + P2_H

const COLORS = {
  writes: '#1f77b4',
  reads: '#2ca02c',
  clean: '#ff7f0e',
  unknown: '#d62728',
  other: '#8c564b',
  readErr: '#9467bd',
  fault: '#d62728',
  promotion: '#7b3fa0',
  poolFailover: '#17becf',
  grid: '#e6e6e6',
  text: '#222',
  muted: '#666',
}

function buckets(series: Series, t0: number, n: number, filter?: (value: number) => boolean): Float64Array {
  const out = new Float64Array(n)
  for (let i = series.firstAtOrAfter(t0); i < series.length; i++) {
    const b = Math.floor((series.time(i) - t0) / BUCKET_MS)
    if (b >= n) break
    if (!filter || filter(series.value(i))) out[b]! += 1000 / BUCKET_MS
  }
  return out
}

function niceMax(v: number): number {
  if (v <= 0) return 1
  const p = 10 ** Math.floor(Math.log10(v))
  for (const m of [1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10]) if (m * p >= v) return m * p
  return 10 * p
}

function esc(s: string): string {
  return s.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;').replace(/"/g, '&quot;')
}

export function renderTimelineSvg(r: ChaosResult): string {
  const t0 = r.t0
  const t1 = Math.max(r.t1, t0 + 1_000)
  const n = Math.ceil((t1 - t0) / BUCKET_MS)
  const plotW = W - LEFT - RIGHT
  const x = (t: number): number => LEFT + ((t - t0) / (t1 - t0)) * plotW
  const bx = (b: number): number => x(t0 + (b + 0.5) * BUCKET_MS)

  const writes = buckets(r.ledger.acks, t0, n)
  const reads = buckets(r.reads.ok, t0, n)
  const clean = buckets(r.ledger.failures, t0, n, (v) => v === OUTCOME.clean)
  const unknown = buckets(r.ledger.failures, t0, n, (v) => v === OUTCOME.unknown)
  const other = buckets(r.ledger.failures, t0, n, (v) => v === OUTCOME.other)
  const readErr = buckets(r.reads.failed, t0, n)

  const y1max = niceMax(Math.max(...writes, ...reads, 1))
  const y2max = niceMax(Math.max(...clean, ...unknown, ...other, ...readErr, 1))
  const y1 = (v: number): number => P1_TOP + P1_H - (v / y1max) * P1_H
  const y2 = (v: number): number => P2_TOP + P2_H - (v / y2max) * P2_H
  const line = (data: Float64Array, y: (v: number) => number, color: string, width = 1.4): string => {
    const pts: string[] = []
    data.forEach((v, b) => pts.push(`${bx(b).toFixed(1)},${y(v).toFixed(1)}`))
    return `<polyline fill="none" stroke="${color}" stroke-width="${width}" stroke-linejoin="round" points="${pts.join(' ')}"/>`
  }

  const o: string[] = []
  o.push(`<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" viewBox="0 0 ${W} ${H}" font-family="DejaVu Sans, Helvetica, Arial, sans-serif" font-size="11">`)
  o.push(`<rect width="${W}" height="${H}" fill="#fff"/>`)
  const t = r.ledger.totals
  o.push(`<text x="${LEFT}" y="22" font-size="15" font-weight="bold" fill="${COLORS.text}">pg-failover-pool chaos run — seed ${r.seed}, ${r.faults.length} faults, ${r.pass ? 'all checks passed' : 'CHECKS FAILED'}</text>`)
  o.push(`<text x="${LEFT}" y="38" fill="${COLORS.muted}">writes acked ${t.acked}, clean ${t.clean}, outcome-unknown ${t.unknown}, other ${t.other}; reads ok ${r.reads.ok.length}, failed ${r.reads.failed.length}; ${BUCKET_MS} ms buckets, rates per second</text>`)

  // Fault durations (shaded) first, so everything else draws over them.
  for (const f of r.faults) {
    const end = f.end > 0 ? f.end : t1
    o.push(`<rect x="${x(f.start).toFixed(1)}" y="${P1_TOP}" width="${Math.max(1, x(end) - x(f.start)).toFixed(1)}" height="${AXIS_Y - P1_TOP}" fill="${COLORS.fault}" fill-opacity="0.06"/>`)
  }

  // Grids and axes.
  for (let i = 0; i <= 5; i++) {
    const v = (y1max / 5) * i
    o.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y1(v).toFixed(1)}" y2="${y1(v).toFixed(1)}" stroke="${COLORS.grid}"/>`)
    o.push(`<text x="${LEFT - 6}" y="${(y1(v) + 4).toFixed(1)}" text-anchor="end" fill="${COLORS.muted}">${Math.round(v)}</text>`)
  }
  for (let i = 0; i <= 2; i++) {
    const v = (y2max / 2) * i
    o.push(`<line x1="${LEFT}" x2="${W - RIGHT}" y1="${y2(v).toFixed(1)}" y2="${y2(v).toFixed(1)}" stroke="${COLORS.grid}"/>`)
    o.push(`<text x="${LEFT - 6}" y="${(y2(v) + 4).toFixed(1)}" text-anchor="end" fill="${COLORS.muted}">${Number.isInteger(v) ? v : v.toFixed(1)}</text>`)
  }
  o.push(`<text transform="rotate(-90 18 ${P1_TOP + P1_H / 2})" x="18" y="${P1_TOP + P1_H / 2}" text-anchor="middle" fill="${COLORS.text}">requests/s (ok)</text>`)
  o.push(`<text transform="rotate(-90 18 ${P2_TOP + P2_H / 2})" x="18" y="${P2_TOP + P2_H / 2}" text-anchor="middle" fill="${COLORS.text}">errors/s</text>`)
  const seconds = (t1 - t0) / 1000
  const step = [1, 2, 5, 10, 15, 20, 30, 60, 120].find((s) => seconds / s <= 16) ?? 300
  for (let s = 0; s <= seconds; s += step) {
    const xs = x(t0 + s * 1000)
    o.push(`<line x1="${xs.toFixed(1)}" x2="${xs.toFixed(1)}" y1="${AXIS_Y}" y2="${AXIS_Y + 4}" stroke="${COLORS.muted}"/>`)
    o.push(`<text x="${xs.toFixed(1)}" y="${AXIS_Y + 16}" text-anchor="middle" fill="${COLORS.muted}">${s} s</text>`)
  }
  o.push(`<rect x="${LEFT}" y="${P1_TOP}" width="${plotW}" height="${P1_H}" fill="none" stroke="#999"/>`)
  o.push(`<rect x="${LEFT}" y="${P2_TOP}" width="${plotW}" height="${P2_H}" fill="none" stroke="#999"/>`)

  // Faults: dashed line at the start, label in one of three staggered rows above the plot.
  r.faults.forEach((f, i) => {
    const xf = x(f.start)
    const row = i % 3
    const ly = LABEL_TOP + 14 + row * 22
    const label = `F${f.plan.index} ${f.plan.kind} ${f.target}`
    // Labels near the right edge end at their line instead of starting there.
    const anchorEnd = xf + label.length * 6.4 > W - 4
    o.push(`<line x1="${xf.toFixed(1)}" x2="${xf.toFixed(1)}" y1="${ly + 4}" y2="${AXIS_Y}" stroke="${COLORS.fault}" stroke-width="1.2" stroke-dasharray="5,3"/>`)
    o.push(`<text x="${(anchorEnd ? xf - 3 : xf + 3).toFixed(1)}" y="${ly}"${anchorEnd ? ' text-anchor="end"' : ''} fill="${COLORS.fault}">${esc(label)}</text>`)
  })
  // Promotions: solid purple line, label along it.
  for (const p of r.ha?.promotions ?? []) {
    const xp = x(p.end)
    o.push(`<line x1="${xp.toFixed(1)}" x2="${xp.toFixed(1)}" y1="${P1_TOP}" y2="${AXIS_Y}" stroke="${COLORS.promotion}" stroke-width="1.6"/>`)
    const ly = P1_TOP + 6
    o.push(`<text transform="rotate(90 ${(xp + 4).toFixed(1)} ${ly})" x="${(xp + 4).toFixed(1)}" y="${ly}" fill="${COLORS.promotion}">${esc(`${p.node} promoted${p.live ? ' (old primary live)' : ''}`)}</text>`)
  }
  // The pool's failover events: ticks under the throughput panel.
  for (const f of r.observer?.failovers ?? []) {
    const xf = x(f.at)
    o.push(`<path d="M${xf.toFixed(1)},${P1_TOP + P1_H} l-4,9 h8 z" fill="${COLORS.poolFailover}"><title>${esc(`pool failover ${f.event.from} -> ${f.event.to} (${f.event.durationMs} ms)`)}</title></path>`)
  }

  // Each fault's longest window without an acknowledged write, as a bracket near the bottom of the panel.
  for (const fig of r.figures) {
    if (fig.gapMs < 250) continue
    const xa = x(fig.gapAt)
    const xb = x(fig.gapAt + fig.gapMs)
    const yg = P1_TOP + P1_H - 22
    o.push(`<path d="M${xa.toFixed(1)},${yg - 4} v8 M${xa.toFixed(1)},${yg} H${xb.toFixed(1)} M${xb.toFixed(1)},${yg - 4} v8" stroke="${COLORS.text}" fill="none" stroke-width="1"/>`)
    o.push(`<text x="${((xa + xb) / 2).toFixed(1)}" y="${yg - 6}" text-anchor="middle" font-size="9" fill="${COLORS.text}">${Math.round(fig.gapMs)} ms</text>`)
  }

  o.push(line(reads, y1, COLORS.reads))
  o.push(line(writes, y1, COLORS.writes, 1.6))
  o.push(line(readErr, y2, COLORS.readErr))
  o.push(line(clean, y2, COLORS.clean))
  o.push(line(other, y2, COLORS.other))
  o.push(line(unknown, y2, COLORS.unknown))

  // Legend.
  const legend: Array<[string, string, string]> = [
    ['line', COLORS.writes, 'acknowledged writes/s'],
    ['line', COLORS.reads, 'reads/s (pool.reader)'],
    ['line', COLORS.unknown, 'outcome-unknown writes/s'],
    ['line', COLORS.clean, 'clean write failures/s'],
    ['line', COLORS.other, 'other write errors/s'],
    ['line', COLORS.readErr, 'read errors/s'],
    ['dash', COLORS.fault, 'fault injected (shaded while it lasts)'],
    ['line', COLORS.promotion, 'promotion (HA tool)'],
    ['tri', COLORS.poolFailover, "pool's failover event"],
    ['gap', COLORS.text, 'longest window without an acknowledged write, per fault'],
  ]
  let lx = LEFT
  let ly = H - 50
  for (const [kind, color, text] of legend) {
    const width = 30 + text.length * 6.2
    if (lx + width > W - RIGHT) {
      lx = LEFT
      ly += 18
    }
    if (kind === 'tri') o.push(`<path d="M${lx + 9},${ly - 8} l-5,9 h10 z" fill="${color}"/>`)
    else if (kind === 'gap') o.push(`<path d="M${lx},${ly - 8} v8 M${lx},${ly - 4} h18 M${lx + 18},${ly - 8} v8" stroke="${color}" fill="none"/>`)
    else o.push(`<line x1="${lx}" x2="${lx + 18}" y1="${ly - 4}" y2="${ly - 4}" stroke="${color}" stroke-width="2"${kind === 'dash' ? ' stroke-dasharray="5,3"' : ''}/>`)
    o.push(`<text x="${lx + 23}" y="${ly}" fill="${COLORS.text}">${esc(text)}</text>`)
    lx += width
  }
  o.push(`<text x="${W - RIGHT}" y="${H - 8}" text-anchor="end" fill="${COLORS.muted}">replay: ${esc(r.replay)}</text>`)
  o.push('</svg>')
  return `${o.join('\n')}\n`
}
