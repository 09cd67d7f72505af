/**
 * Decides whether a SQL text is certainly read-only, for `routeReads: 'auto'`. Conservative: a
 * statement goes to a replica only when it is a single plain SELECT (or a WITH ... SELECT whose
 * CTEs are all SELECTs) with no locking clause, no SELECT INTO and no call to a built-in function
 * known to write or to need the primary. Anything else — and anything this cannot scan with
 * certainty — stays on the primary. (A user function that writes is caught by the replica itself:
 * it answers 25006, which means nothing was written, and the pool re-runs the statement on the
 * primary.)
 *
 * The text is cut into tokens the way PostgreSQL's scanner (scan.l) cuts it, by sql-lexer.ts; a
 * text it refuses (one PostgreSQL refuses, or that versions, settings or other readers of SQL
 * would cut differently: see there) is never certainly read-only.
 * Proven against PostgreSQL's own parser (libpg-query) by test/unit/statement-kind-parser.test.ts
 * and `npm run fuzz:classifier`.
 */

import { DOT, END, INVALID, LPAREN, Lexer, QUOTED, RPAREN, SEMICOLON, WORD, wordHash } from './sql-lexer.js'

/** Built-in functions that write, take locks that only matter on the primary, or need a primary. */
export const PRIMARY_ONLY_FUNCTIONS: ReadonlySet<string> = new Set([
  'nextval', 'setval', 'currval', 'lastval',
  'pg_advisory_lock', 'pg_advisory_xact_lock', 'pg_try_advisory_lock', 'pg_try_advisory_xact_lock',
  'pg_advisory_lock_shared', 'pg_advisory_xact_lock_shared', 'pg_try_advisory_lock_shared', 'pg_try_advisory_xact_lock_shared',
  'pg_advisory_unlock', 'pg_advisory_unlock_all', 'pg_advisory_unlock_shared',
  'pg_notify', 'set_config', 'txid_current', 'pg_current_xact_id', 'pg_current_wal_lsn', 'pg_current_wal_insert_lsn',
  'pg_switch_wal', 'pg_create_restore_point', 'pg_create_physical_replication_slot', 'pg_create_logical_replication_slot',
  'pg_drop_replication_slot', 'pg_logical_slot_get_changes', 'pg_terminate_backend', 'pg_cancel_backend',
  'lo_create', 'lo_creat', 'lo_import', 'lo_unlink', 'lo_put', 'lo_from_bytea', 'lo_open', 'lowrite',
  'dblink', 'dblink_exec', 'pg_reload_conf', 'pg_rotate_logfile', 'pg_stat_reset', 'pg_promote',
])

/**
 * Built-in functions that read and compute only (aggregates, string, number, date and JSON
 * functions, and a few server facts): calling them twice changes nothing. Deliberately short:
 * a function missing here only means a lost statement calling it is reported as outcome-unknown
 * instead of being run again.
 */
export const READ_FUNCTIONS: ReadonlySet<string> = new Set([
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

/** Words that make a statement more than a plain read, wherever they stand outside literals. */
const WRITE_KEYWORDS = [
  'insert', 'update', 'delete', 'merge', 'truncate', 'copy', 'call', 'do', 'create', 'alter', 'drop', 'grant',
  'revoke', 'lock', 'vacuum', 'analyze', 'cluster', 'reindex', 'refresh', 'listen', 'notify', 'set', 'reset',
  'prepare', 'execute', 'begin', 'start', 'commit', 'rollback', 'savepoint', 'release',
]

/**
 * Words that may stand before "(" in a plain SELECT without calling anything: keywords that open a
 * subquery or list, and type names that take a modifier (`numeric(10, 2)`). Only words PostgreSQL
 * reserves or forbids as function names: a user may name a function `filter` or `by`.
 */
const PAREN_WORDS = [
  'select', 'from', 'on', 'where', 'and', 'or', 'not', 'in', 'exists', 'any', 'some', 'all', 'as', 'values',
  'when', 'then', 'else', 'case', 'group', 'order', 'having', 'using', 'lateral', 'union', 'intersect',
  'except', 'array', 'row', 'cast', 'distinct', 'between', 'limit', 'offset', 'fetch', 'with', 'numeric',
  'decimal', 'varchar', 'char', 'character', 'bit', 'timestamp', 'time', 'interval', 'float',
]

// What a listed word is (bits, so one word can be several things: `update` writes and locks).
// Words that decide a statement, looked up for every unquoted word:
const W_WRITE = 1 << 0
const W_START = 1 << 1 // may open a read: select, with, values, table
const W_INTO = 1 << 2
const W_FOR = 1 << 3
const W_LOCK_STRENGTH = 1 << 4 // after FOR: update, no (key update), key (share), share
const W_PRIMARY_ONLY = 1 << 5
// Words that decide a call, looked up only for a word before "(" (and the words just before it):
const W_READ_FUNCTION = 1 << 0
const W_PAREN = 1 << 1
const W_AFTER_RPAREN = 1 << 2 // over, filter: open a list only right after ")"
const W_BY = 1 << 3 // opens a list only after order, group, partition
const W_BY_OPENER = 1 << 4
const W_PG_CATALOG = 1 << 5

/** What {@link Recent} holds before the first tokens: no token kind of the lexer. */
const NONE = -1

/**
 * The listed words, found by a hash of their lower-cased characters so that no substring is made
 * per token. Two tables: the statement words are looked up for every word, so they are kept few
 * (`from`, `where`, `and` miss at once); the call words only where "(" follows.
 */
const WORD_SLOT_MASK = 511
const STATEMENT_WORDS = wordTable([
  [WRITE_KEYWORDS, W_WRITE],
  [['select', 'with', 'values', 'table'], W_START],
  [['into'], W_INTO],
  [['for'], W_FOR],
  [['update', 'no', 'key', 'share'], W_LOCK_STRENGTH],
  [PRIMARY_ONLY_FUNCTIONS, W_PRIMARY_ONLY],
])
const CALL_WORDS = wordTable([
  [READ_FUNCTIONS, W_READ_FUNCTION],
  [PAREN_WORDS, W_PAREN],
  [['over', 'filter'], W_AFTER_RPAREN],
  [['by'], W_BY],
  [['order', 'group', 'partition'], W_BY_OPENER],
  [['pg_catalog'], W_PG_CATALOG],
])

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
  return classify(sql, false)
}

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
  return classify(sql, true)
}

/** One pass over the tokens; false at the first one that rules the statement out. */
function classify(sql: string, onlyReadFunctions: boolean): boolean {
  // The protocol ends a query at NUL: the server would read another text than this one.
  if (sql.includes('\0')) return false
  const lexer = new Lexer(sql)
  const recent = new Recent()
  let kind = lexer.next()
  let flags = kind === WORD ? statementWordFlags(sql, lexer) : 0
  if (kind !== LPAREN && (flags & W_START) === 0) return false
  let ended = false
  while (kind !== END) {
    // After the one statement's ";" only whitespace and comments may follow.
    if (kind === INVALID || ended) return false
    if (kind === WORD && writes(flags, recent)) return false
    if (kind === LPAREN && !callMayRun(sql, recent, onlyReadFunctions)) return false
    if (kind === SEMICOLON) ended = true
    recent.push(kind, flags, lexer.start, lexer.end)
    kind = lexer.next()
    flags = kind === WORD ? statementWordFlags(sql, lexer) : 0
  }
  return true
}

/** The statement flags of the WORD the lexer just read (0 for an unlisted word). */
function statementWordFlags(sql: string, lexer: Lexer): number {
  return listedWordFlags(STATEMENT_WORDS, sql, lexer.start, lexer.end, lexer.hash)
}

/** A write keyword, INTO, or the strength word of a locking clause (FOR UPDATE/NO KEY UPDATE/SHARE/KEY SHARE). */
function writes(flags: number, recent: Recent): boolean {
  if ((flags & (W_WRITE | W_INTO)) !== 0) return true
  return (flags & W_LOCK_STRENGTH) !== 0 && recent.kind1 === WORD && (recent.flags1 & W_FOR) !== 0
}

/** Whether the "(" just read may follow the tokens before it: no primary-only call, and (when asked) no call but known readers. */
function callMayRun(sql: string, recent: Recent, onlyReadFunctions: boolean): boolean {
  if (recent.kind1 === QUOTED && quotedMayNamePrimaryOnly(sql, recent.start1, recent.end1)) return false
  if (recent.kind1 === WORD && (recent.flags1 & W_PRIMARY_ONLY) !== 0) return false
  return !onlyReadFunctions || callsOnlyReaders(sql, recent)
}

/** Whether the quoted identifier at sql[start, end) may name a primary-only function (U& names are not decoded: assume so). */
function quotedMayNamePrimaryOnly(sql: string, start: number, end: number): boolean {
  if (sql.charCodeAt(start) !== 34) return true
  return PRIMARY_ONLY_FUNCTIONS.has(sql.slice(start + 1, end - 1).replaceAll('""', '"'))
}

/**
 * Whether the word before "(" is a known reader (bare or `pg_catalog.`-qualified) or a word that
 * opens a list there. A quoted name, another schema or any other word may be a user's function.
 */
function callsOnlyReaders(sql: string, recent: Recent): boolean {
  if (recent.kind1 === QUOTED) return false
  if (recent.kind1 !== WORD) return true // "(" after an operator, a comma, "(" or ")": not a call
  const flags = callWordFlags(sql, recent.start1, recent.end1)
  if (recent.kind2 === DOT) {
    return (flags & W_READ_FUNCTION) !== 0 && recent.kind3 === WORD && recent.kind4 !== DOT &&
      (callWordFlags(sql, recent.start3, recent.end3) & W_PG_CATALOG) !== 0
  }
  if ((flags & (W_READ_FUNCTION | W_PAREN)) !== 0) return true
  if ((flags & W_AFTER_RPAREN) !== 0) return recent.kind2 === RPAREN
  if ((flags & W_BY) !== 0) return recent.kind2 === WORD && (callWordFlags(sql, recent.start2, recent.end2) & W_BY_OPENER) !== 0
  return false
}

/**
 * The last four tokens: kinds, the statement flags of the last, and where the last three stand
 * (enough for `pg_catalog . name (` and `order by (`).
 */
class Recent {
  kind1 = NONE
  flags1 = 0
  start1 = 0
  end1 = 0
  kind2 = NONE
  start2 = 0
  end2 = 0
  kind3 = NONE
  start3 = 0
  end3 = 0
  kind4 = NONE

  push(kind: number, flags: number, start: number, end: number): void {
    this.kind4 = this.kind3
    this.kind3 = this.kind2
    this.start3 = this.start2
    this.end3 = this.end2
    this.kind2 = this.kind1
    this.start2 = this.start1
    this.end2 = this.end1
    this.kind1 = kind
    this.flags1 = flags
    this.start1 = start
    this.end1 = end
  }
}

/** ASCII lower case, the only folding PostgreSQL applies to keywords. */
function lower(c: number): number {
  return c >= 65 && c <= 90 ? c + 32 : c
}

/**
 * The listed words in an open-addressing table (slot -> word number + 1, 0 for empty): a Map would
 * box the 32-bit hashes. Each table stays under half full.
 */
interface WordTable {
  readonly slots: Int32Array
  readonly texts: readonly string[]
  readonly hashes: readonly number[]
  readonly flags: readonly number[]
}

/** The call flags of the word at sql[start, end) (0 for an unlisted word). */
function callWordFlags(sql: string, start: number, end: number): number {
  return listedWordFlags(CALL_WORDS, sql, start, end, wordHash(sql, start, end))
}

/**
 * The flags of the listed word at sql[i, j) whose {@link wordHash} is `hash`, or 0. PostgreSQL's
 * keywords are ASCII, and only A-Z are folded: a word with any other character is no listed word.
 */
function listedWordFlags(table: WordTable, sql: string, i: number, j: number, hash: number): number {
  for (let slot = hash & WORD_SLOT_MASK; ; slot = (slot + 1) & WORD_SLOT_MASK) {
    const entry = table.slots[slot]!
    if (entry === 0) return 0
    // The hash only finds the candidate: the characters decide, so no crafted name can pass for a listed one.
    if (table.hashes[entry - 1] === hash && sameWord(sql, i, j, table.texts[entry - 1]!)) return table.flags[entry - 1]!
  }
}

/** Whether sql[i, j) spells `text` (lower case) in any ASCII case. */
function sameWord(sql: string, i: number, j: number, text: string): boolean {
  if (text.length !== j - i) return false
  for (let k = 0; k < text.length; k++) if (lower(sql.charCodeAt(i + k)) !== text.charCodeAt(k)) return false
  return true
}

function wordTable(lists: ReadonlyArray<readonly [Iterable<string>, number]>): WordTable {
  const byText = new Map<string, number>()
  for (const [words, flag] of lists) for (const w of words) byText.set(w, (byText.get(w) ?? 0) | flag)
  const slots = new Int32Array(WORD_SLOT_MASK + 1)
  const texts = [...byText.keys()]
  if (texts.length * 2 > slots.length) throw new Error('statement-kind: a word table must stay under half full')
  const hashes = texts.map((text) => wordHash(text, 0, text.length))
  texts.forEach((_, n) => {
    let slot = hashes[n]! & WORD_SLOT_MASK
    while (slots[slot] !== 0) slot = (slot + 1) & WORD_SLOT_MASK
    slots[slot] = n + 1
  })
  return { slots, texts, hashes, flags: [...byText.values()] }
}
