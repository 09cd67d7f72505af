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
  return readOnlyCode(sql) !== null
}

/** The statement with literals and comments blanked out, when it is certainly read-only; else null. */
function readOnlyCode(sql: string): string | null {
  const code = stripLiteralsAndComments(sql)
  if (code === null) return null
  const trimmed = code.trim().replace(/;\s*$/, '')
  if (trimmed.includes(';')) return null
  if (!/^(select|with|values|table|\()/i.test(trimmed)) return null
  if (WRITE_KEYWORDS.test(trimmed)) return null
  if (LOCKING_CLAUSE.test(trimmed)) return null
  if (/\binto\b/i.test(trimmed)) return null
  if (FUNCTION_CALL.test(trimmed)) return null
  return code
}

/**
 * Words that may stand before "(" in a plain SELECT without calling anything: keywords that open a
 * subquery or list, and type names that take a modifier (`numeric(10, 2)`). Only words PostgreSQL
 * reserves or forbids as function names: a user may name a function `filter` or `by`.
 */
const PAREN_WORDS = new Set([
  'select', 'from', 'on', 'where', 'and', 'or', 'not', 'in', 'exists', 'any', 'some', 'all', 'as', 'values',
  'when', 'then', 'else', 'case', 'group', 'order', 'having', 'using', 'lateral', 'union', 'intersect',
  'except', 'array', 'row', 'cast', 'distinct', 'between', 'limit', 'offset', 'fetch', 'with', 'numeric',
  'decimal', 'varchar', 'char', 'character', 'bit', 'timestamp', 'time', 'interval', 'float',
])

/**
 * Unreserved words that open a list only right after a given token (`count(*) FILTER (`, `OVER (`,
 * `ORDER BY (`): elsewhere they may name a user's function.
 */
const PAREN_WORDS_AFTER: ReadonlyMap<string, (previous: string) => boolean> = new Map<string, (previous: string) => boolean>([
  ['over', (previous: string) => previous === ')'],
  ['filter', (previous: string) => previous === ')'],
  ['by', (previous: string) => previous === 'order' || previous === 'group' || previous === 'partition'],
])

/**
 * Built-in functions that read and compute only (aggregates, string, number, date and JSON
 * functions, and a few server facts): calling them twice changes nothing. Deliberately short:
 * a function missing here only means a lost statement calling it is reported as outcome-unknown
 * instead of being run again.
 */
const READ_FUNCTIONS = new Set([
  'count', 'sum', 'avg', 'min', 'max', 'array_agg', 'string_agg', 'json_agg', 'jsonb_agg', 'json_object_agg',
  'jsonb_object_agg', 'bool_and', 'bool_or', 'every', 'coalesce', 'nullif', 'greatest', 'least', 'lower',
  'upper', 'length', 'char_length', 'octet_length', 'substring', 'substr', 'position', 'strpos', 'trim', 'btrim',
  'ltrim', 'rtrim', 'replace', 'concat', 'concat_ws', 'format', 'left', 'right', 'split_part', 'regexp_replace',
  'regexp_match', 'regexp_matches', 'starts_with', 'to_char', 'to_date', 'to_timestamp', 'to_number',
  'date_trunc', 'date_part', 'extract', 'age', 'now', 'clock_timestamp', 'statement_timestamp',
  'transaction_timestamp', 'timezone', 'make_date', 'make_interval', 'abs', 'round', 'trunc', 'floor', 'ceil',
  'ceiling', 'mod', 'power', 'sqrt', 'random', 'gen_random_uuid', 'md5', 'encode', 'decode', 'array_length',
  'array_position', 'array_to_string', 'string_to_array', 'unnest', 'cardinality', 'generate_series',
  'json_build_object', 'jsonb_build_object', 'json_build_array', 'jsonb_build_array', 'to_json', 'to_jsonb',
  'row_to_json', 'json_array_elements', 'jsonb_array_elements', 'jsonb_array_elements_text', 'json_each',
  'jsonb_each', 'jsonb_extract_path_text', 'jsonb_set', 'jsonb_typeof', 'row_number', 'rank', 'dense_rank',
  'lag', 'lead', 'first_value', 'last_value', 'version', 'current_setting', 'current_database',
  'current_schema', 'pg_is_in_recovery', 'inet_server_port', 'inet_server_addr', 'pg_backend_pid',
  'pg_last_wal_replay_lsn', 'pg_last_wal_receive_lsn', 'pg_wal_lsn_diff', 'pg_last_xact_replay_timestamp',
  'pg_postmaster_start_time', 'pg_size_pretty', 'pg_database_size', 'pg_relation_size',
  'pg_total_relation_size', 'pg_sleep',
])

/**
 * Every word before "(", with the schema it is qualified by. Identifiers may hold any letter
 * (`ñcount(` is not `count(`), hence the lookbehinds rather than `\b`.
 */
const CALLED = /(?<![\p{L}\p{N}_$])(?:([\p{L}_][\p{L}\p{N}_$]*)\s*\.\s*)?([\p{L}_][\p{L}\p{N}_$]*)\s*\(/gu

/**
 * True only for a statement that is {@link isCertainlyReadOnly} and calls no function but the
 * built-ins known to only read: safe to run again on the primary after its connection was lost,
 * or to acknowledge from a node the pool left while it ran. `isCertainlyReadOnly` alone is not
 * enough there: `SELECT my_function()` may write (a replica refuses that, the primary does not).
 * What the text does not show is beyond it: a view, an operator or a domain check that calls a
 * function that writes, attribute notation (`t.my_function`), or a user overload of a built-in's
 * name that wins on its argument types.
 */
export function isSafeToRunAgain(sql: string): boolean {
  const code = readOnlyCode(sql)
  if (code === null) return false
  // (A quoted name before "(" reads `ident (` after the scan: a call this cannot vouch for.)
  for (const call of code.matchAll(CALLED)) {
    const [, schema, name] = call
    const word = name!.toLowerCase()
    if (schema !== undefined) {
      if (schema.toLowerCase() !== 'pg_catalog' || !READ_FUNCTIONS.has(word)) return false
      continue
    }
    if (READ_FUNCTIONS.has(word) || PAREN_WORDS.has(word)) continue
    const after = PAREN_WORDS_AFTER.get(word)
    if (after === undefined || !after(previousToken(code, call.index))) return false
  }
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

/** The token that ends before `index` in `code` (lower case): a word, or one other character ('' at the start). */
function previousToken(code: string, index: number): string {
  let end = index
  while (end > 0 && /\s/.test(code[end - 1]!)) end--
  let start = end
  while (start > 0 && /[\p{L}\p{N}_$]/u.test(code[start - 1]!)) start--
  return start === end ? code.slice(Math.max(0, end - 1), end) : code.slice(start, end).toLowerCase()
}
