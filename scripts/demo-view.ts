/**
 * Terminal rendering for `npm run demo`: a live view redrawn in place about four times a second
 * when stdout is a terminal, one compact line per second otherwise (CI logs, pipes), plus the
 * final summary. Plain Node, no dependencies; colours only on a terminal and never with NO_COLOR.
 */
import type { EndpointStatus, FailoverPoolStatus } from '../src/index.js'

/** Everything one frame shows; the demo builds it on demand. */
export interface ViewSnapshot {
  /** Milliseconds since the traffic started. */
  elapsedMs: number
  phase: string
  /** Writes acknowledged / reads completed in the last second. */
  writesPerSec: number
  readsPerSec: number
  acked: number
  reads: number
  /** Failed requests (writes and reads together), by class. */
  errors: { outcomeUnknown: number; noPrimary: number; other: number }
  /** Requests in flight, and how many of them wait inside the pool (for a primary or a client). */
  inFlight: number
  waiting: number
  status: FailoverPoolStatus
}

type Style = 'bold' | 'dim' | 'red' | 'green' | 'yellow' | 'cyan' | 'magenta'
const SGR: Record<Style, [number, number]> = {
  bold: [1, 22],
  dim: [2, 22],
  red: [31, 39],
  green: [32, 39],
  yellow: [33, 39],
  cyan: [36, 39],
  magenta: [35, 39],
}

/** Colour helpers bound to one output; identity functions when colours are off. */
export class Painter {
  constructor(readonly enabled: boolean) {}
  paint(style: Style, text: string): string {
    if (!this.enabled || text === '') return text
    const [on, off] = SGR[style]
    return `\x1b[${on}m${text}\x1b[${off}m`
  }
}

/** Colours only on a terminal, and never when NO_COLOR is set to a non-empty value (no-color.org). */
export function colorsFor(stream: NodeJS.WriteStream): boolean {
  const noColor = process.env.NO_COLOR
  return stream.isTTY === true && (noColor === undefined || noColor === '')
}

const ANSI = /\x1b\[[0-9;?]*[A-Za-z]/g
const ANSI_AT = /\x1b\[[0-9;?]*[A-Za-z]/y
const SPARK = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█']

function visibleLength(text: string): number {
  return text.replace(ANSI, '').length
}

/** Cuts `text` to `width` visible characters, keeping escape sequences intact. */
function fit(text: string, width: number): string {
  if (visibleLength(text) <= width) return text
  let out = ''
  let visible = 0
  for (let i = 0; i < text.length; ) {
    ANSI_AT.lastIndex = i
    const m = text[i] === '\x1b' ? ANSI_AT.exec(text) : null
    if (m) {
      out += m[0]
      i += m[0].length
      continue
    }
    if (visible >= width - 1) {
      out += '…'
      break
    }
    out += text[i]
    visible++
    i++
  }
  return out.includes('\x1b') ? `${out}\x1b[0m` : out
}

function pad(text: string, width: number): string {
  const n = visibleLength(text)
  return n >= width ? text : text + ' '.repeat(width - n)
}

function padLeft(text: string, width: number): string {
  const n = visibleLength(text)
  return n >= width ? text : ' '.repeat(width - n) + text
}

export function seconds(ms: number): string {
  return `${(ms / 1000).toFixed(1)}s`
}

/**
 * The live view. `log()` prints a permanent line (an event) above the live block; `stop()` leaves
 * the last frame on screen and restores the cursor.
 */
export class DemoView {
  readonly tty: boolean
  readonly p: Painter
  private readonly out: NodeJS.WriteStream
  private timer: NodeJS.Timeout | null = null
  private drawn = 0
  private stopped = false
  private lastLineAt = -Infinity
  private lastAcked = 0
  private lastSampleAt = 0
  /** Writes acknowledged per frame, for the sparkline (newest last). */
  private readonly history: number[] = []
  private readonly restoreCursor = (): void => {
    if (this.tty) this.out.write('\x1b[?25h')
  }

  constructor(
    private readonly snapshot: () => ViewSnapshot,
    out: NodeJS.WriteStream = process.stdout,
  ) {
    this.out = out
    this.tty = out.isTTY === true
    this.p = new Painter(colorsFor(out))
  }

  start(): void {
    if (this.timer || this.stopped) return
    if (this.tty) {
      this.out.write('\x1b[?25l')
      process.once('exit', this.restoreCursor)
    }
    this.tick()
    this.timer = setInterval(() => this.tick(), this.tty ? 250 : 100)
  }

  /** A permanent line (event), shown above the live block on a terminal. */
  log(line: string): void {
    const stamp = this.p.paint('dim', `[${padLeft(seconds(this.snapshot().elapsedMs), 6)}]`)
    const text = `${stamp} ${line}`
    if (!this.tty) {
      this.out.write(`${text}\n`)
      return
    }
    // Permanent lines may wrap: only the live block below must fit the width to be redrawn in place.
    this.out.write(`${this.up()}\x1b[J${text}\n`)
    this.drawn = 0
    this.draw(this.snapshot(), false)
  }

  /** Final frame (or line), then stop refreshing. */
  stop(): void {
    if (this.stopped) return
    this.stopped = true
    if (this.timer) clearInterval(this.timer)
    this.timer = null
    if (this.tty) {
      this.draw(this.snapshot(), true)
      this.restoreCursor()
      process.off('exit', this.restoreCursor)
    } else {
      this.out.write(`${this.line(this.snapshot())}\n`)
    }
  }

  private tick(): void {
    const s = this.snapshot()
    if (this.tty) {
      this.draw(s, true)
    } else if (s.elapsedMs - this.lastLineAt >= 1000) {
      this.lastLineAt = s.elapsedMs
      this.out.write(`${this.line(s)}\n`)
    }
  }

  private width(): number {
    return Math.max(40, (this.out.columns || 100) - 1)
  }

  private up(): string {
    return this.drawn > 0 ? `\x1b[${this.drawn}A\r` : '\r'
  }

  private draw(s: ViewSnapshot, sample: boolean): void {
    if (sample) this.sample(s)
    const width = this.width()
    const lines = this.frame(s, width).map((l) => `\x1b[2K${fit(l, width)}`)
    this.out.write(`${this.up()}${lines.join('\n')}\n\x1b[J`)
    this.drawn = lines.length
  }

  private sample(s: ViewSnapshot): void {
    if (s.elapsedMs - this.lastSampleAt < 200 && this.history.length > 0) return
    this.history.push(Math.max(0, s.acked - this.lastAcked))
    this.lastAcked = s.acked
    this.lastSampleAt = s.elapsedMs
    if (this.history.length > 400) this.history.splice(0, this.history.length - 400)
  }

  private phase(s: ViewSnapshot): string {
    const text = s.phase.toUpperCase()
    if (s.phase === 'steady' || s.phase === 'recovered') return this.p.paint('green', text)
    if (s.phase === 'primary stopped') return this.p.paint('red', text)
    return this.p.paint('yellow', text)
  }

  private role(e: EndpointStatus): string {
    switch (e.role) {
      case 'primary':
        return this.p.paint('green', e.role)
      case 'standby':
        return this.p.paint('cyan', e.role)
      case 'unreachable':
        return this.p.paint('red', e.role)
      case 'unknown':
        return this.p.paint('dim', e.role)
      default:
        return this.p.paint('magenta', e.role)
    }
  }

  private errors(s: ViewSnapshot): string {
    const part = (label: string, n: number): string => (n > 0 ? this.p.paint('red', `${label} ${n}`) : `${label} ${n}`)
    return `${part('outcome-unknown', s.errors.outcomeUnknown)}  ${part('no-primary', s.errors.noPrimary)}  ${part('other', s.errors.other)}`
  }

  private frame(s: ViewSnapshot, width: number): string[] {
    const p = this.p
    const st = s.status
    const primary = st.primary !== null ? p.paint('green', p.paint('bold', st.primary)) : p.paint('red', '(none: writes wait)')
    const label = (t: string): string => p.paint('dim', pad(t, 13))
    const sparkWidth = Math.max(10, Math.min(this.history.length, width - 14))
    const recent = this.history.slice(-sparkWidth)
    const peak = Math.max(1, ...recent)
    const spark = recent.map((n) => (n === 0 ? p.paint('red', '·') : SPARK[Math.min(SPARK.length - 1, Math.floor((n / peak) * (SPARK.length - 1)))]!)).join('')

    const lines = [
      `${p.paint('bold', 'pg-failover-pool demo')}   ${padLeft(seconds(s.elapsedMs), 6)}   phase: ${this.phase(s)}`,
      `${label('primary')}${pad(primary, 22)} epoch ${st.epoch}   failovers ${st.failovers}${st.discovering ? p.paint('yellow', '   discovering…') : ''}`,
      `${label('last second')}writes ${padLeft(String(s.writesPerSec), 5)}/s   reads ${padLeft(String(s.readsPerSec), 5)}/s   in flight ${s.inFlight} (waiting in pool ${s.waiting})`,
      `${label('totals')}writes acknowledged ${s.acked}   reads ${s.reads}`,
      `${label('errors')}${this.errors(s)}`,
      `${label('writes')}${spark}`,
      '',
      p.paint('dim', `${pad('endpoint', 10)}${pad('role', 19)}${padLeft('lag', 7)}  ${padLeft('probed', 9)}  ${padLeft('busy/open', 9)}  last error`),
    ]
    for (const e of st.endpoints) {
      // Lag is only meaningful for a node that answers; an unreachable node keeps its last probe's value.
      const lag = e.lagMs === null || (e.role !== 'standby' && e.role !== 'primary') ? '-' : `${Math.round(e.lagMs)} ms`
      const age = e.lastProbeAt === null ? '-' : `${seconds(Math.max(0, Date.now() - Date.parse(e.lastProbeAt)))} ago`
      const clients = `${e.totalCount - e.idleCount}/${e.totalCount}`
      const err = e.lastError === null ? p.paint('dim', '-') : p.paint('red', e.lastError)
      lines.push(`${pad(e.name, 10)}${pad(this.role(e), 19)}${padLeft(lag, 7)}  ${padLeft(age, 9)}  ${padLeft(clients, 9)}  ${err}`)
    }
    lines.push(p.paint('dim', `election: ${st.lastElection}`))
    return lines
  }

  /** The compact once-a-second line for non-terminals. */
  private line(s: ViewSnapshot): string {
    const st = s.status
    const endpoints = st.endpoints
      .map((e) => `${e.name}=${e.role}${e.role === 'standby' && e.lagMs !== null ? `(lag ${Math.round(e.lagMs)}ms)` : ''}`)
      .join(' ')
    const errors = `${s.errors.outcomeUnknown}/${s.errors.noPrimary}/${s.errors.other}`
    return [
      `[${padLeft(seconds(s.elapsedMs), 6)}]`,
      pad(s.phase, 16),
      `w/s ${padLeft(String(s.writesPerSec), 5)}`,
      `r/s ${padLeft(String(s.readsPerSec), 5)}`,
      `acked ${padLeft(String(s.acked), 6)}`,
      `err(unknown/no-primary/other) ${errors}`,
      `waiting ${padLeft(String(s.waiting), 2)}`,
      `primary ${pad(st.primary ?? '-', 6)}`,
      `| ${endpoints}`,
    ].join('  ')
  }
}

// ------------------------------------------------------------------------------------ summary

export interface Summary {
  ok: boolean
  newPrimary: string
  acked: number
  ackedBy: ReadonlyArray<{ node: string; count: number }>
  /** Acknowledged ids found on the new primary, or null when it could not be queried. */
  found: number | null
  missing: readonly number[]
  verifyError: string | null
  failedWrites: { outcomeUnknown: number; noPrimary: number; other: number }
  /** Of the outcome-unknown writes, how many did commit after all (found on the new primary). */
  outcomeUnknownCommitted: number | null
  otherMessages: ReadonlyArray<[string, number]>
  reads: number
  failedReads: { outcomeUnknown: number; noPrimary: number; other: number }
  longestGap: { gapMs: number; fromMs: number; toMs: number } | null
  faultAtMs: number | null
  promotedAtMs: number | null
  repointedAtMs: number | null
  failover: { from: string | null; to: string; reason: string; durationMs: number; epoch: number } | null
  /** From `cluster.promote` resolving to the first acknowledged write after it. */
  promotionToFirstWriteMs: number | null
  unfinishedLoops: boolean
  problems: readonly string[]
  runtimeMs: number
}

export function renderSummary(s: Summary, out: NodeJS.WriteStream = process.stdout): void {
  const p = new Painter(colorsFor(out))
  const row = (label: string, value: string): string => `  ${p.paint('dim', pad(label, 30))}${value}`
  const at = (ms: number | null): string => (ms === null ? '-' : `+${seconds(ms)}`)
  const lines: string[] = ['', p.paint('bold', 'Summary')]

  const by = s.ackedBy.map((b) => `${b.node} ${b.count}`).join(', ')
  lines.push(row('writes acknowledged', `${s.acked}${by ? `  (${by})` : ''}`))
  if (s.found === null) {
    lines.push(row(`found on ${s.newPrimary}`, p.paint('red', `could not check: ${s.verifyError ?? 'unknown error'}`)))
  } else {
    const verdict = s.missing.length === 0 ? p.paint('green', 'none missing') : p.paint('red', `${s.missing.length} MISSING`)
    lines.push(row(`found on ${s.newPrimary} (new primary)`, `${s.found} of ${s.acked}  ${verdict}`))
    if (s.missing.length > 0) {
      const shown = s.missing.slice(0, 50).join(', ')
      lines.push(row('MISSING ids', p.paint('red', `${shown}${s.missing.length > 50 ? `, … (${s.missing.length - 50} more)` : ''}`)))
    }
  }
  const fw = s.failedWrites
  const committed = s.outcomeUnknownCommitted === null || fw.outcomeUnknown === 0 ? '' : ` (${s.outcomeUnknownCommitted} of them did commit)`
  lines.push(row('writes failed', `outcome-unknown ${fw.outcomeUnknown}${committed}, no-primary ${fw.noPrimary}, other ${fw.other}`))
  for (const [message, count] of s.otherMessages.slice(0, 5)) lines.push(row('', p.paint('red', `${count} x ${message}`)))
  const fr = s.failedReads
  lines.push(row('reads done', `${s.reads}  (failed: outcome-unknown ${fr.outcomeUnknown}, no-primary ${fr.noPrimary}, other ${fr.other})`))
  if (s.longestGap) {
    const g = s.longestGap
    lines.push(row('longest gap without a write', `${Math.round(g.gapMs)} ms  (from ${at(g.fromMs)} to ${at(g.toMs)})`))
  } else {
    lines.push(row('longest gap without a write', '-'))
  }
  lines.push(row('timeline', `primary stopped ${at(s.faultAtMs)}, promotion done ${at(s.promotedAtMs)}, standby re-pointed ${at(s.repointedAtMs)}`))
  if (s.failover) {
    const f = s.failover
    lines.push(row('failover (event)', `${f.from ?? '-'} -> ${f.to} in ${f.durationMs} ms, epoch ${f.epoch}`))
    lines.push(row('', p.paint('dim', `reason: ${f.reason}`)))
  } else {
    lines.push(row('failover (event)', p.paint('red', 'no failover event')))
  }
  lines.push(
    row(
      'promotion -> first write',
      s.promotionToFirstWriteMs === null ? p.paint('red', 'no write acknowledged after the promotion') : `${Math.round(s.promotionToFirstWriteMs)} ms`,
    ),
  )
  if (s.unfinishedLoops) lines.push(row('note', p.paint('yellow', 'some requests were still pending when the demo stopped')))
  for (const problem of s.problems) lines.push(row('problem', p.paint('red', problem)))
  lines.push(row('runtime', seconds(s.runtimeMs)))
  lines.push('')
  lines.push(
    s.ok
      ? p.paint('green', `OK: every acknowledged write (${s.acked}) is on the new primary ${s.newPrimary}.`)
      : p.paint(
          'red',
          `FAILED: ${
            s.found === null
              ? 'could not verify the acknowledged writes'
              : s.missing.length > 0
                ? `${s.missing.length} acknowledged write(s) missing on ${s.newPrimary}`
                : `the failover did not complete (${s.problems.length} problem(s) above)`
          }.`,
        ),
  )
  out.write(`${lines.join('\n')}\n`)
}

/** A one-off status line outside the live view (start-up notes, errors). */
export function note(text: string, out: NodeJS.WriteStream = process.stdout): void {
  out.write(`${text}\n`)
}
