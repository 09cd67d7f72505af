/** pg-pool's promise-or-callback convention: with a callback, no promise; without, a promise. */
export function promisify<T>(callback: ((err: Error | undefined, value?: T) => void) | undefined): {
  result: Promise<T> | undefined
  cb: (err: Error | undefined, value?: T, ...rest: unknown[]) => void
} {
  if (callback) return { result: undefined, cb: callback as never }
  let resolve!: (value: T) => void
  let reject!: (err: Error) => void
  const result = new Promise<T>((res, rej) => {
    resolve = res
    reject = rej
  })
  return { result: result.catch(rethrowHere), cb: (err, value) => (err ? reject(err) : resolve(value as T)) }
}

/** As pg-pool does: give a rejected error a stack that leads back to the caller, not to the socket. */
function rethrowHere(err: Error): never {
  Error.captureStackTrace(err)
  throw err
}
