import os from 'node:os'

/**
 * Servers started by the test harnesses (PostgreSQL, Redis) must never outlive the process, even
 * when a test fails or the run is interrupted. Each harness registers a synchronous teardown here;
 * the process handlers are installed only while something is registered.
 */
const live = new Map<object, () => void>()
let installed = false

function destroyAllSync(): void {
  for (const destroySync of [...live.values()]) {
    try {
      destroySync()
    } catch {
      // best effort while exiting
    }
  }
}

function onSignal(sig: NodeJS.Signals): void {
  destroyAllSync()
  live.clear()
  update()
  // If someone else also listens for this signal, let them decide what happens next;
  // otherwise behave like the default action would (exit 128 + signal number).
  if (process.listenerCount(sig) === 0) process.exit(128 + (os.constants.signals[sig] ?? 0))
}
const onExit = (): void => destroyAllSync()
const onSigint = (): void => onSignal('SIGINT')
const onSigterm = (): void => onSignal('SIGTERM')

function update(): void {
  if (live.size > 0 && !installed) {
    process.on('exit', onExit)
    process.on('SIGINT', onSigint)
    process.on('SIGTERM', onSigterm)
    installed = true
  } else if (live.size === 0 && installed) {
    process.off('exit', onExit)
    process.off('SIGINT', onSigint)
    process.off('SIGTERM', onSigterm)
    installed = false
  }
}

/** Registers `owner`'s synchronous teardown to run on exit, SIGINT or SIGTERM. */
export function registerCleanup(owner: object, destroySync: () => void): void {
  live.set(owner, destroySync)
  update()
}

/** Forgets `owner` (it was torn down normally). */
export function unregisterCleanup(owner: object): void {
  live.delete(owner)
  update()
}
