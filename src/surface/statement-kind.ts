/**
 * Decides whether a SQL text is certainly read-only, for `routeReads: 'auto'`. Conservative: a
 * statement goes to a replica only when it is a single plain SELECT (or a WITH ... SELECT whose
 * CTEs are all SELECTs) with no locking clause, no SELECT INTO and no call to a built-in function
 * known to write or to need the primary. Anything else — and anything this cannot parse — stays on
 * the primary. (A user function that writes is caught by the replica itself: it answers 25006,
 * which means nothing was written, and the pool re-runs the statement on the primary.)
 */

/** Built-in functions that write, take locks that only matter on the primary, or need a primary. */
const PRIMARY_ONLY_FUNCTIONS = [
  'nextval', 'setval', 'currval', 'lastval',
  'pg_advisory_lock', 'pg_advisory_xact_lock', 'pg_try_advisory_lock', 'pg_try_advisory_xact_lock',
  'pg_advisory_lock_shared', 'pg_advisory_xact_lock_shared', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock_shared',
  'pg_advisory_unlock', 'pg_advisory_unlock_all', 'pg_advisory_unlock_shared',
  'pg_notify', 'set_config', 'txid_current', 'pg_current_xact_id', 'pg_current_wal_lsn', 'pg_current_wal_insert_lsn',
  'pg_switch_wal', 'pg_create_restore_point', 'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot',
  'pg_drop_replication_slot', 'pg_logical_slot_get_changes', 'pg_terminate_backend', 'pg_cancel_backend',
  'lo_create', 'lo_creat', 'lo_import', 'lo_unlink', 'lo_put', 'lo_from_bytea', 'lo_open', 'lowrite',
  'dblink', 'dblink_exec', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_stat_reset', 'pg_promote',
]

const FUNCTION_CALL = new RegExp(`\\b(${PRIMARY_ONLY_FUNCTIONS.join('|')})\\s*\\(`, 'i')
const WRITE_KEYWORDS = /\b(insert|update|delete|merge|truncate|copy|call|do|create|alter|drop|grant|revoke|lock|vacuum|analyze|cluster|reindex|refresh|listen|notify|set|reset|prepare|execute|begin|start|commit|rollback|savepoint|release)\b/i
const LOCKING_CLAUSE = /\bfor\s+(update|no\s+key\s+update|share|key\s+share)\b/i

/**
 * The SQL of what a caller passed to `query()`: the string itself, or a query config's `text`.
 * Null for anything else — a submittable (pg-cursor, pg-query-stream) included, since it runs
 * itself and can be neither routed by its text nor run again.
 */
export function sqlOf(text: unknown): string | null {
  if (typeof text === 'string') return text
  if (text === null || typeof text !== 'object') return null
  const config = text as { text?: unknown; submit?: unknown }
  return typeof config.text === 'string' && typeof config.submit !== 'function' ? config.text : null
}

/** True only for statements that certainly neither write nor need the primary. */
export function isCertainlyReadOnly(sql: string): boolean {
  const code = stripLiteralsAndComments(sql)
  if (code === null) return false
  const trimmed = code.trim().replace(/;\s*$/, '')
  if (trimmed.includes(';')) return false
  if (!/^(select|with|values|table|\()/i.test(trimmed)) return false
  if (WRITE_KEYWORDS.test(trimmed)) return false
  if (LOCKING_CLAUSE.test(trimmed)) return false
  if (/\binto\b/i.test(trimmed)) return false
  if (FUNCTION_CALL.test(trimmed)) return false
  return true
}

/**
 * Replaces string literals, quoted identifiers, dollar-quoted bodies and comments with spaces, so
 * keywords inside them are not seen. Returns null for text it cannot scan safely (unterminated).
 */
function stripLiteralsAndComments(sql: string): string | null {
  let out = ''
  let i = 0
  while (i < sql.length) {
    const ch = sql[i]!
    const next = sql[i + 1]
    if (ch === '-' && next === '-') {
      const end = sql.indexOf('\n', i)
      i = end === -1 ? sql.length : end
      out += ' '
    } else if (ch === '/' && next === '*') {
      const end = sql.indexOf('*/', i + 2)
      if (end === -1) return null
      i = end + 2
      out += ' '
    } else if (ch === "'" || ch === '"') {
      let j = i + 1
      for (;;) {
        const k = sql.indexOf(ch, j)
        if (k === -1) return null
        if (sql[k + 1] === ch) j = k + 2
        else {
          j = k + 1
          break
        }
      }
      // A quoted identifier may legitimately name a table "update"; either way it is not a keyword.
      out += ch === '"' ? ' ident ' : ' lit '
      i = j
    } else if (ch === '$') {
      const tag = /^\$([A-Za-z_][A-Za-z0-9_]*)?\$/.exec(sql.slice(i))
      if (tag) {
        const end = sql.indexOf(tag[0], i + tag[0].length)
        if (end === -1) return null
        out += ' lit '
        i = end + tag[0].length
      } else {
        out += ch
        i++
      }
    } else {
      out += ch
      i++
    }
  }
  return out
}
