/**
 * Calls `handle` with each line of `stream` parsed as JSON (a child's stdout, a process's stdin,
 * one message per line); a line that is not JSON is skipped.
 */
export function onJsonLines(stream: NodeJS.ReadableStream, handle: (message: Record<string, unknown>) => void): void {
  let buffer = ''
  stream.setEncoding('utf8')
  stream.on('data', (chunk: string) => {
    buffer += chunk
    let newline: number
    while ((newline = buffer.indexOf('\n')) >= 0) {
      const line = buffer.slice(0, newline)
      buffer = buffer.slice(newline + 1)
      if (line.trim() === '') continue
      let message: Record<string, unknown>
      try {
        message = JSON.parse(line) as Record<string, unknown>
      } catch {
        continue
      }
      handle(message)
    }
  })
}
