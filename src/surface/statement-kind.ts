/**
 * Decides whether a SQL text is certainly read-only, for `routeReads: 'auto'`. Conservative: a
 * statement goes to a replica only when it is a single plain SELECT (or a WITH ... SELECT whose
 * CTEs are all SELECTs) with no locking clause, no SELECT INTO and no call to a built-in function
 * known to write or to need the primary. Anything else — and anything this cannot scan with
 * certainty — stays on the primary. (A user function that writes is caught by the replica itself:
 * it answers 25006, which means nothing was written, and the pool re-runs the statement on the
 * primary.)
 *
 * The text is cut into tokens the way PostgreSQL's scanner (scan.l) cuts it: standard, E'', U&'',
 * bit and dollar-quoted strings (tags included), string continuations across newlines, quoted and
 * U& identifiers, nested block comments, line comments ended by \n or \r, `$` inside identifiers,
 * `$1` parameters. Where PostgreSQL versions, settings or other readers of SQL would cut the same
 * text differently, or PostgreSQL refuses it, the text is refused rather than guessed at:
 * - a backslash right before a quote in a plain '...' string (its end depends on
 *   standard_conforming_strings);
 * - a number run into a letter, `_` or `$` (`0x1F`, `1_000`, `1for`: an error since PostgreSQL 15,
 *   `1` then `for` before it);
 * - a string continued across a -- comment line (the server does, libpg-query does not);
 * - E'' escapes whose value PostgreSQL checks (\0, non-ASCII bytes, bad \u escapes);
 * - characters the scanner does not know (`\`, `{`, a lone `$`, control characters, \v, NUL),
 *   and anything unterminated.
 * Proven against PostgreSQL's own parser (libpg-query) by test/unit/statement-kind-parser.test.ts
 * and `npm run fuzz:classifier`.
 */

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

// Token kinds.
const END = 0
/** Text PostgreSQL would refuse, or that versions or settings would read differently. */
const INVALID = 1
/** An unquoted identifier or keyword; the lexer's `flags` say which statement word it is (0: none). */
const WORD = 2
/** A quoted identifier, "..." or U&"...". */
const QUOTED = 3
const LPAREN = 4
const RPAREN = 5
const DOT = 6
const SEMICOLON = 7
/** Anything else that is certainly not a word: a literal, a parameter, an operator, a comma. */
const OTHER = 8
const NONE = 9

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_'
const DIGITS = '0123456789'

// ASCII character classes, from scan.l.
const C_IDENT_START = 1 // [A-Za-z_] (and every non-ASCII character)
const C_IDENT_CONT = 2 // [A-Za-z0-9_$]
const C_HEX = 4
const CLASS = asciiClasses()

// What a token's first character starts (ASCII; every other character starts a word).
const S_INVALID = 0
const S_SPACE = 1
const S_WORD = 2
const S_DIGIT = 3
const S_OPERATOR = 4 // self and op_chars that need no further look: , [ ] : + * % ^ < > = ~ ! @ # & | ` ?
const S_LPAREN = 5
const S_RPAREN = 6
const S_DOT = 7
const S_SEMICOLON = 8
const S_QUOTE = 9
const S_DQUOTE = 10
const S_DOLLAR = 11
const S_MINUS = 12
const S_SLASH = 13
const STARTS = tokenStarts()

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
  if (kind !== LPAREN && !(kind === WORD && (lexer.flags & W_START) !== 0)) return false
  let ended = false
  for (; kind !== END; kind = lexer.next()) {
    // After the one statement's ";" only whitespace and comments may follow.
    if (kind === INVALID || ended) return false
    if (kind === WORD && writes(lexer.flags, recent)) return false
    if (kind === LPAREN && !callMayRun(sql, recent, onlyReadFunctions)) return false
    if (kind === SEMICOLON) ended = true
    recent.push(kind, lexer.flags, lexer.start, lexer.end)
  }
  return true
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
    this.flags1 = kind === WORD ? flags : 0
    this.start1 = start
    this.end1 = end
  }
}

/** What {@link continuationQuote} answers for a continuation that readers of SQL disagree on. */
const AMBIGUOUS = -2

// String bodies: how backslashes and quotes behave inside them.
const XQ = 0 // '...' and N'...': a backslash before a quote is ambiguous (standard_conforming_strings)
const XE = 1 // E'...': backslash escapes
const XUS = 2 // U&'...': escapes are decoded later, quotes behave as in '...'
const XB = 3 // B'...' and X'...': no doubled quotes, no escapes

/**
 * PostgreSQL's scanner, reduced to what classification needs: token kinds, listed words, and the
 * certainty that every literal, identifier and comment ends where PostgreSQL ends it.
 */
class Lexer {
  /** The statement flags of the last WORD (0 for an unlisted word). */
  flags = 0
  /** Where the last token starts. */
  start = 0
  #pos = 0
  readonly #sql: string

  constructor(sql: string) {
    this.#sql = sql
  }

  /** Where the last token ends. */
  get end(): number {
    return this.#pos
  }

  /** The next token's kind, skipping whitespace and comments. */
  next(): number {
    const sql = this.#sql
    for (let i = this.#pos; ; ) {
      if (i >= sql.length) {
        this.start = this.#pos = i
        return END
      }
      const c = sql.charCodeAt(i)
      const start = c < 128 ? STARTS[c]! : S_WORD
      if (start === S_SPACE) {
        i++
        continue
      }
      // A comment starts at any -- or /* outside a literal, even inside an operator (scan.l cuts it there).
      if (start === S_MINUS && sql.charCodeAt(i + 1) === 45) {
        i = lineEnd(sql, i + 2)
        continue
      }
      if (start === S_SLASH && sql.charCodeAt(i + 1) === 42) {
        i = blockCommentEnd(sql, i + 2)
        if (i < 0) return INVALID
        continue
      }
      this.start = i
      this.#pos = i + 1
      switch (start) {
        case S_WORD: return this.#word(i)
        case S_DIGIT: return this.#number(i)
        case S_LPAREN: return LPAREN
        case S_RPAREN: return RPAREN
        case S_SEMICOLON: return SEMICOLON
        case S_DOT: return isDigit(sql.charCodeAt(i + 1)) ? this.#number(i) : DOT // .5 is a number
        case S_QUOTE: return this.#string(i + 1, XQ)
        case S_DQUOTE: return this.#quotedIdentifier(i + 1)
        case S_DOLLAR: return this.#dollar(i)
        case S_OPERATOR: case S_MINUS: case S_SLASH: return OTHER
        default: return INVALID // \ { } control characters, \v: PostgreSQL refuses them (or, for \v, versions differ)
      }
    }
  }

  /** An identifier or keyword, or a literal introduced by one (E'', B'', X'', N'', U&'', U&""). */
  #word(i: number): number {
    const sql = this.#sql
    const c = sql.charCodeAt(i) | 0x20
    const next = sql.charCodeAt(i + 1)
    if (next === 39 /* ' */) {
      if (c === 101 /* e */) return this.#string(i + 2, XE)
      if (c === 98 /* b */ || c === 120 /* x */) return this.#string(i + 2, XB)
      if (c === 110 /* n */) return this.#string(i + 2, XQ)
    }
    if (c === 117 /* u */ && next === 38 /* & */) {
      const quote = sql.charCodeAt(i + 2)
      if (quote === 39) return this.#string(i + 3, XUS)
      if (quote === 34) return this.#quotedIdentifier(i + 3)
    }
    let hash = 0
    let ascii = true
    let j = i
    // ident_cont includes "$": `a$b$c` is one identifier, never the start of a dollar quote.
    for (; j < sql.length; j++) {
      const d = sql.charCodeAt(j)
      if (d >= 128) ascii = false
      else if ((CLASS[d]! & C_IDENT_CONT) !== 0) hash = (Math.imul(hash, 31) + (d | 0x20)) | 0
      else break
    }
    this.#pos = j
    // PostgreSQL's keywords are ASCII, and only A-Z are folded: a word with any other character is no listed word.
    this.flags = ascii ? listedWordFlags(STATEMENT_WORDS, sql, i, j, hash) : 0
    return WORD
  }

  /**
   * A number: digits, an optional fraction and exponent. Refused when a letter, `_`, `$` or a
   * non-ASCII character follows: `0x1F` and `1_000` are numbers since PostgreSQL 16, `1for` an
   * error since 15, and before that `1` then `for`.
   */
  #number(i: number): number {
    const sql = this.#sql
    let j = digitsEnd(sql, i)
    // "1..2" is 1 then "..": only a single dot belongs to the number.
    if (sql.charCodeAt(j) === 46 && sql.charCodeAt(j + 1) !== 46) j = digitsEnd(sql, j + 1)
    if ((sql.charCodeAt(j) | 0x20) === 101 /* e */) {
      const sign = sql.charCodeAt(j + 1)
      const first = sign === 43 || sign === 45 ? j + 2 : j + 1
      if (isDigit(sql.charCodeAt(first))) j = digitsEnd(sql, first)
    }
    this.#pos = j
    return identCont(sql.charCodeAt(j)) ? INVALID : OTHER
  }

  /** A parameter ($1) or a dollar-quoted string ($$...$$, $tag$...$tag$); a lone "$" is refused. */
  #dollar(i: number): number {
    const sql = this.#sql
    let j = i + 1
    if (isDigit(sql.charCodeAt(j))) {
      j = digitsEnd(sql, j)
      this.#pos = j
      return identCont(sql.charCodeAt(j)) ? INVALID : OTHER
    }
    // A tag is an identifier without "$": identifier-start, then identifier characters or digits.
    if (identStart(sql.charCodeAt(j))) {
      j++
      while (sql.charCodeAt(j) !== 36 && identCont(sql.charCodeAt(j))) j++
    }
    if (sql.charCodeAt(j) !== 36) return INVALID
    const tag = sql.slice(i, j + 1)
    const end = sql.indexOf(tag, j + 1)
    if (end === -1) return INVALID
    this.#pos = end + tag.length
    return OTHER
  }

  /**
   * A quoted string whose body starts at `j`, with its continuations ('a'<newline>'b' is one
   * string, scanned on in the same mode: after E'' the continuation takes backslash escapes too).
   */
  #string(j: number, mode: number): number {
    const sql = this.#sql
    for (;;) {
      const close = mode === XE ? this.#escapedBodyEnd(j) : plainBodyEnd(sql, j, mode)
      if (close < 0) return INVALID
      const again = continuationQuote(sql, close + 1)
      if (again === AMBIGUOUS) return INVALID
      if (again < 0) {
        this.#pos = close + 1
        return OTHER
      }
      j = again + 1
    }
  }

  /** Where an E'' body that starts at `j` ends (its closing quote), or -1 when unterminated or an escape is refused. */
  #escapedBodyEnd(j: number): number {
    const sql = this.#sql
    while (j < sql.length) {
      const c = sql.charCodeAt(j)
      if (c === 39) {
        if (sql.charCodeAt(j + 1) !== 39) return j
        j += 2
      } else if (c === 92 /* \ */) {
        j = escapeEnd(sql, j)
        if (j < 0) return -1
      } else j++
    }
    return -1
  }

  /** A quoted identifier whose body starts at `j`; "" stands for one quote, and an empty name is an error. */
  #quotedIdentifier(j: number): number {
    const sql = this.#sql
    const start = j
    for (;;) {
      const k = sql.indexOf('"', j)
      if (k === -1) return INVALID
      if (sql.charCodeAt(k + 1) === 34) {
        j = k + 2
        continue
      }
      if (k === start) return INVALID
      this.#pos = k + 1
      return QUOTED
    }
  }
}

/**
 * Where a '...', U&'...', B'...' or X'...' body that starts at `j` ends (its closing quote), or -1
 * when unterminated. In a plain string a backslash right before a quote is refused: with
 * standard_conforming_strings off it escapes the quote, and the string ends elsewhere.
 */
function plainBodyEnd(sql: string, j: number, mode: number): number {
  if (mode === XB) return sql.indexOf("'", j)
  for (;;) {
    const k = sql.indexOf("'", j)
    if (k === -1) return -1
    if (mode === XQ && k > j && sql.charCodeAt(k - 1) === 92) return -1
    if (sql.charCodeAt(k + 1) !== 39) return k
    j = k + 2
  }
}

/**
 * Where a backslash escape in an E'' string ends, or -1 for one this will not vouch for: octal and
 * hex escapes that make a NUL or non-ASCII byte (PostgreSQL checks them against the encoding),
 * and \u / \U escapes that are malformed, zero, surrogates or beyond U+10FFFF.
 */
function escapeEnd(sql: string, j: number): number {
  const c = sql.charCodeAt(j + 1)
  if (Number.isNaN(c)) return -1
  if (c >= 48 && c <= 55) {
    let k = j + 1
    let value = 0
    while (k < j + 4 && sql.charCodeAt(k) >= 48 && sql.charCodeAt(k) <= 55) value = value * 8 + sql.charCodeAt(k++) - 48
    return isPlainAsciiByte(value & 0xff) ? k : -1
  }
  if (c === 120 /* x */) {
    let k = j + 2
    while (k < j + 4 && isHex(sql.charCodeAt(k))) k++
    if (k === j + 2) return k // "\x" without hex digits is just "x"
    return isPlainAsciiByte(Number.parseInt(sql.slice(j + 2, k), 16)) ? k : -1
  }
  if (c === 117 /* u */ || c === 85 /* U */) {
    const k = j + 2 + (c === 117 ? 4 : 8)
    for (let h = j + 2; h < k; h++) if (!isHex(sql.charCodeAt(h))) return -1
    const code = Number.parseInt(sql.slice(j + 2, k), 16)
    return code > 0 && code <= 0x10ffff && (code < 0xd800 || code > 0xdfff) ? k : -1
  }
  return j + 2 // any other character, a quote or a backslash included, stands for itself
}

/**
 * After a string's closing quote at `k - 1`: the index of the quote that continues it, -1 when
 * none does, or AMBIGUOUS. SQL continues a string across whitespace holding at least one newline,
 * never across a block comment. PostgreSQL's server continues it across -- comment lines too
 * (`'a' -- c<newline>'b'` is 'ab'), but other readers of SQL, libpg-query among them, end the
 * string at the comment: such a text is refused rather than read one way.
 */
function continuationQuote(sql: string, k: number): number {
  let newline = false
  let comment = false
  for (let j = k; ; ) {
    const c = sql.charCodeAt(j)
    if (c === 10 || c === 13) {
      newline = true
      j++
    } else if (c === 32 || c === 9 || c === 12) j++
    else if (c === 45 && sql.charCodeAt(j + 1) === 45) {
      comment = true
      j = lineEnd(sql, j + 2)
      if (j >= sql.length) return -1
    } else if (c === 39 && newline) return comment ? AMBIGUOUS : j
    else return -1
  }
}

/** The index of the newline (\n or \r) that ends a -- comment, or the text's length. */
function lineEnd(sql: string, j: number): number {
  for (; j < sql.length; j++) {
    const c = sql.charCodeAt(j)
    if (c === 10 || c === 13) return j
  }
  return j
}

/** Where a block comment whose body starts at `j` ends (past its closing star-slash), or -1 when unterminated. PostgreSQL nests them. */
function blockCommentEnd(sql: string, j: number): number {
  let depth = 0
  while (j < sql.length) {
    const c = sql.charCodeAt(j)
    const next = sql.charCodeAt(j + 1)
    if (c === 42 && next === 47) {
      j += 2
      if (depth-- === 0) return j
    } else if (c === 47 && next === 42) {
      depth++
      j += 2
    } else j++
  }
  return -1
}

function digitsEnd(sql: string, j: number): number {
  while (isDigit(sql.charCodeAt(j))) j++
  return j
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57
}

function isHex(c: number): boolean {
  return c < 128 && (CLASS[c]! & C_HEX) !== 0
}

/** ident_start: letters, `_` and every non-ASCII character. */
function identStart(c: number): boolean {
  return c >= 128 || (CLASS[c]! & C_IDENT_START) !== 0
}

/** ident_cont: letters, digits, `_`, `$` and every non-ASCII character. */
function identCont(c: number): boolean {
  return c >= 128 || (CLASS[c]! & C_IDENT_CONT) !== 0
}

function isPlainAsciiByte(value: number): boolean {
  return value > 0 && value < 0x80
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

/** The call flags of the word at sql[start, end) (0 for an unlisted word, or one with a non-ASCII character). */
function callWordFlags(sql: string, start: number, end: number): number {
  let hash = 0
  for (let k = start; k < end; k++) {
    const c = sql.charCodeAt(k)
    if (c >= 128) return 0
    hash = (Math.imul(hash, 31) + (c | 0x20)) | 0
  }
  return listedWordFlags(CALL_WORDS, sql, start, end, hash)
}

/** The flags of the listed word at sql[i, j) whose hash is `hash`, or 0. */
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

/**
 * The hash `#word` computes while it scans: the same for any spelling in upper or lower case
 * (`| 0x20` folds A-Z without a branch and keeps digits, `_` and `$` apart).
 */
function wordHash(text: string): number {
  let hash = 0
  for (let k = 0; k < text.length; k++) hash = (Math.imul(hash, 31) + (text.charCodeAt(k) | 0x20)) | 0
  return hash
}

function wordTable(lists: ReadonlyArray<readonly [Iterable<string>, number]>): WordTable {
  const byText = new Map<string, number>()
  for (const [words, flag] of lists) for (const w of words) byText.set(w, (byText.get(w) ?? 0) | flag)
  const slots = new Int32Array(WORD_SLOT_MASK + 1)
  const texts = [...byText.keys()]
  if (texts.length * 2 > slots.length) throw new Error('statement-kind: a word table must stay under half full')
  const hashes = texts.map(wordHash)
  texts.forEach((_, n) => {
    let slot = hashes[n]! & WORD_SLOT_MASK
    while (slots[slot] !== 0) slot = (slot + 1) & WORD_SLOT_MASK
    slots[slot] = n + 1
  })
  return { slots, texts, hashes, flags: [...byText.values()] }
}

function asciiClasses(): Uint8Array {
  const classes = new Uint8Array(128)
  const mark = (chars: string, flag: number): void => {
    for (let k = 0; k < chars.length; k++) classes[chars.charCodeAt(k)]! |= flag
  }
  mark(LETTERS, C_IDENT_START | C_IDENT_CONT)
  mark(DIGITS, C_IDENT_CONT | C_HEX)
  mark('$', C_IDENT_CONT)
  mark('abcdefABCDEF', C_HEX)
  return classes
}

function tokenStarts(): Uint8Array {
  const starts = new Uint8Array(128).fill(S_INVALID) // left so: \ { } control characters, \v
  const mark = (chars: string, start: number): void => {
    for (let k = 0; k < chars.length; k++) starts[chars.charCodeAt(k)] = start
  }
  mark(' \t\n\r\f', S_SPACE) // \v is whitespace only since PostgreSQL 16, so it is refused
  mark(LETTERS, S_WORD)
  mark(DIGITS, S_DIGIT)
  mark(',[]:+*%^<>=~!@#&|`?', S_OPERATOR)
  mark('(', S_LPAREN)
  mark(')', S_RPAREN)
  mark('.', S_DOT)
  mark(';', S_SEMICOLON)
  mark("'", S_QUOTE)
  mark('"', S_DQUOTE)
  mark('$', S_DOLLAR)
  mark('-', S_MINUS)
  mark('/', S_SLASH)
  return starts
}
