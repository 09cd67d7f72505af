import http from 'node:http'
import https from 'node:https'
import type { Clock } from '../clock.js'
import { maskPassword } from '../errors.js'

/**
 * GET `url` and resolve with the body of a 2xx answer, within `timeoutMs` on `clock`. A fresh
 * connection each time (no agent), so nothing lingers to keep a process alive.
 * @throws on a non-2xx status, a network error or the deadline.
 */
export function httpGet(url: string, timeoutMs: number, clock: Clock): Promise<string> {
  return new Promise((resolve, reject) => {
    const client = url.startsWith('https:') ? https : http
    let settled = false
    const finish = (err: Error | null, body?: string): void => {
      if (settled) return
      settled = true
      clock.clearTimeout(timer)
      if (err) {
        request.destroy()
        reject(err)
      } else resolve(body!)
    }
    const request = client.get(url, { agent: false, headers: { accept: 'application/json' } }, (res) => {
      const chunks: Buffer[] = []
      res.on('data', (chunk: Buffer) => chunks.push(chunk))
      res.on('error', (err) => finish(err))
      res.on('end', () => {
        const status = res.statusCode ?? 0
        if (status < 200 || status >= 300) return finish(new Error(`GET ${maskPassword(url)} answered HTTP ${status}`))
        finish(null, Buffer.concat(chunks).toString('utf8'))
      })
    })
    request.on('error', (err) => finish(err))
    const timer = clock.setTimeout(() => finish(new Error(`GET ${maskPassword(url)} took longer than ${timeoutMs} ms`)), timeoutMs)
  })
}
