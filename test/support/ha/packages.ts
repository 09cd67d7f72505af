/**
 * Installs the Debian packages the HA harnesses need (Patroni, etcd, repmgr, PgBouncer, HAProxy)
 * on demand, so `vitest run` works on a fresh Debian/Ubuntu machine when run as root.
 *
 * - Fast path: one `dpkg-query` call (a few ms) when everything is already installed.
 * - Concurrency: vitest runs test files in parallel processes (and other checkouts may install
 *   too), so the install runs under `flock` on {@link APT_LOCK_FILE}; apt also waits for the
 *   dpkg lock (`DPkg::Lock::Timeout`) in case something else is using apt.
 * - No daemons: Debian's postinst scripts start services (etcd on 2379, pgbouncer on 6432,
 *   haproxy). During the install a `/usr/sbin/policy-rc.d` that exits 101 ("action forbidden")
 *   is in place (an existing one that already forbids is kept; another one is moved aside and
 *   restored), and any daemon that still appears with the packages' default configuration is
 *   killed afterwards. The harnesses never use default ports.
 */
import { spawn, spawnSync } from 'node:child_process'
import { readdirSync, readFileSync } from 'node:fs'
import { commandLine, IS_ROOT, signal, tail } from '../pg-binaries.js'

/** Every package the HA harnesses use. */
export const HA_PACKAGES = ['patroni', 'etcd-server', 'etcd-client', 'postgresql-15-repmgr', 'pgbouncer', 'haproxy'] as const

/** Lock file serialising installs between processes (flock). */
export const APT_LOCK_FILE = '/run/lock/pgfp-apt.lock'

/** Packages of `names` that dpkg does not report as installed ("ii"). */
export function missingDebianPackages(names: readonly string[]): string[] {
  if (names.length === 0) return []
  const r = spawnSync('dpkg-query', ['-W', '-f=${Package}\t${db:Status-Abbrev}\n', ...names], {
    encoding: 'utf8',
    stdio: ['ignore', 'pipe', 'pipe'],
  })
  if (r.error !== undefined) {
    throw new Error(`dpkg-query is not available (${r.error.message}); the HA harnesses need a Debian-based system`)
  }
  const installed = new Set<string>()
  for (const line of (r.stdout ?? '').split('\n')) {
    const [pkg, status] = line.split('\t')
    // Multi-arch packages are listed as name:arch.
    if (pkg !== undefined && status?.startsWith('ii')) installed.add(pkg.split(':')[0] ?? pkg)
  }
  return names.filter((n) => !installed.has(n))
}

// Run under flock. Makes sure invoke-rc.d refuses to start services while apt runs, then restores
// whatever policy-rc.d was there before. Packages are "$@". apt-get update only if install fails.
const INSTALL_SCRIPT = String.raw`
set -u
P=/usr/sbin/policy-rc.d
SAVED=/usr/sbin/policy-rc.d.pgfp-saved
restore() {
  if [ -n "$created" ]; then rm -f "$P"; fi
  if [ -e "$SAVED" ]; then mv -f "$SAVED" "$P"; fi
}
created=
if [ -e "$SAVED" ]; then mv -f "$SAVED" "$P"; fi   # a previous run died before restoring
forbids=0
if [ -x "$P" ]; then "$P" pgfp-probe start >/dev/null 2>&1; [ $? -eq 101 ] && forbids=1; fi
if [ $forbids -eq 0 ]; then
  if [ -e "$P" ]; then mv -f "$P" "$SAVED"; fi
  printf '#!/bin/sh\n# pg-failover-pool test harness: no services during apt-get install\nexit 101\n' > "$P"
  chmod 755 "$P"
  created=1
fi
trap restore EXIT
trap 'exit 130' INT TERM
export DEBIAN_FRONTEND=noninteractive
APT="apt-get -y -q -o DPkg::Lock::Timeout=300 -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold"
if ! $APT install "$@"; then
  echo "--- install failed; running apt-get update and retrying ---"
  apt-get -q -o DPkg::Lock::Timeout=300 update || exit 1
  $APT install "$@" || exit 1
fi
`

/** Markers of daemons that Debian packages would start with their default configuration. */
const DEFAULT_DAEMON_MARKERS = [
  '/etc/pgbouncer/pgbouncer.ini',
  '/etc/haproxy/haproxy.cfg',
  '/etc/patroni/',
  '/etc/default/etcd',
]

interface Proc {
  pid: number
  cmd: string
  uid: number
}

function processTable(): Proc[] {
  const out: Proc[] = []
  for (const ent of readdirSync('/proc')) {
    if (!/^\d+$/.test(ent)) continue
    try {
      const cmd = commandLine(Number(ent)) ?? ''
      const status = readFileSync(`/proc/${ent}/status`, 'utf8')
      const uid = Number(/^Uid:\s+(\d+)/m.exec(status)?.[1] ?? -1)
      out.push({ pid: Number(ent), cmd, uid })
    } catch {
      // vanished
    }
  }
  return out
}

function etcdUid(): number | undefined {
  const r = spawnSync('id', ['-u', 'etcd'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] })
  return r.status === 0 ? Number(r.stdout.trim()) : undefined
}

/** Packaged daemons (default config; etcd run as the `etcd` user) running now. */
function packagedDaemons(): Proc[] {
  const etcd = etcdUid()
  return processTable().filter(
    (p) =>
      DEFAULT_DAEMON_MARKERS.some((m) => p.cmd.includes(m)) ||
      (etcd !== undefined && p.uid === etcd && /(^|\/)etcd(\s|$)/.test(p.cmd)),
  )
}

function runInstall(missing: string[]): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    const child = spawn('flock', ['-w', '900', APT_LOCK_FILE, 'sh', '-c', INSTALL_SCRIPT, 'pgfp-install', ...missing], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, DEBIAN_FRONTEND: 'noninteractive' },
    })
    let output = ''
    const collect = (d: Buffer): void => {
      output = (output + d.toString('utf8')).slice(-65536)
    }
    child.stdout.on('data', collect)
    child.stderr.on('data', collect)
    child.on('error', (err) => resolve({ code: -1, output: `${output}\n${err.message}` }))
    child.on('close', (code) => resolve({ code, output }))
  })
}

/**
 * Make sure the Debian packages `names` are installed, and say which had to be installed.
 *
 * Resolves with `[]` at once (one dpkg-query) when they are. Otherwise, when root,
 * installs the missing ones with `apt-get install -y` (`apt-get update` first only if that
 * fails), under a `flock` on {@link APT_LOCK_FILE} so that parallel test processes queue up, with
 * service starts forbidden (policy-rc.d exit 101) and any packaged daemon that still came up
 * killed. When not root, rejects with an Error naming the `apt-get install` command to run.
 */
export async function ensureDebianPackages(names: readonly string[]): Promise<string[]> {
  const missing = missingDebianPackages(names)
  if (missing.length === 0) return []
  if (!IS_ROOT) {
    throw new Error(
      `Missing Debian packages for the HA test harnesses: ${missing.join(', ')}. ` +
        `Install them with \`sudo apt-get install -y ${missing.join(' ')}\` (and make sure no packaged ` +
        'service is left running, e.g. `sudo systemctl disable --now etcd pgbouncer haproxy patroni`), ' +
        'or run the tests as root.',
    )
  }
  const before = new Set(packagedDaemons().map((p) => p.pid))
  const r = await runInstall(missing)
  // Belt and braces: whatever a postinst may still have started despite policy-rc.d.
  for (const p of packagedDaemons()) if (!before.has(p.pid)) signal(p.pid, 'SIGKILL')
  if (r.code !== 0) {
    throw new Error(`\`apt-get install -y ${missing.join(' ')}\` failed (exit code ${String(r.code)}):\n${tail(r.output, 30)}`)
  }
  const still = missingDebianPackages(names)
  if (still.length > 0) {
    throw new Error(`Packages still missing after apt-get install: ${still.join(', ')}\n${tail(r.output, 30)}`)
  }
  return missing
}
