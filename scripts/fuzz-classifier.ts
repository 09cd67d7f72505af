/**
 * `npm run fuzz:classifier` — the statement classifier (src/surface/statement-kind.ts) against
 * PostgreSQL's own parser (libpg-query, PostgreSQL 18's scanner and grammar compiled to WASM).
 * Generates SQL texts that mix every string, identifier and comment form PostgreSQL knows with
 * statements that write, and counts the texts where the classifier says "read-only" (or "safe to
 * run again") while the parser shows otherwise. Exit code 0 only when there are none.
 *
 *   node --import tsx scripts/fuzz-classifier.ts [--runs N] [--seed N] [--show N]
 *
 * The same seed replays the same texts. test/unit/statement-kind-parser.test.ts runs a slice of
 * the same property (same generator, same oracle) in `npm test`.
 */
import { performance } from 'node:perf_hooks'
import { pathToFileURL } from 'node:url'
import fc from 'fast-check'
import { loadModule, parseSync, scanSync } from 'libpg-query'
import { isCertainlyReadOnly, isSafeToRunAgain, PRIMARY_ONLY_FUNCTIONS, READ_FUNCTIONS } from '../src/surface/statement-kind.js'

// ---------------------------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------------------------

/** Loads the parser's WASM module; call once before {@link disagreement}. */
export async function loadParser(): Promise<void> {
  await loadModule()
}

/** What the classifier said about one text, and whether the parser contradicted it. */
export interface Verdict {
  readonly readOnly: boolean
  readonly safe: boolean
  /** Whether libpg-query parsed the text (checked only when the classifier said read-only). */
  readonly parsed: boolean
  /** Why the parser contradicts the classifier, or null when it does not. */
  readonly disagreement: string | null
}

/**
 * Classifies `sql` and checks every "yes" against the parser:
 * - read-only or safe: PostgreSQL's scanner must accept the text (a scanner error is where
 *   versions differ: `1for update` is an error since PostgreSQL 15, a locking clause before);
 *   if the grammar accepts it too, the tree must be exactly one SelectStmt with no other statement
 *   anywhere (data-modifying CTEs), no locking clause, no INTO and no call of a primary-only
 *   function; for safe, every FuncCall must be a known reader, bare or `pg_catalog.`-qualified.
 *   A grammar error alone is no disagreement: the classifier is a scanner, not a grammar (it says
 *   "read-only" for `SELECT 1 FROM`), and a statement PostgreSQL refuses runs nothing, on a
 *   replica or anywhere. What could make a refused text dangerous is a version that accepts it
 *   with another meaning — and that needs other tokens, which the scanner check and the
 *   classifier's own refusals (numbers run into letters) cover.
 * - with standard_conforming_strings off (libpg-query parses with it on), a plain '...' string
 *   is scanned like E'...': the same text with `E` before every plain string that holds a
 *   backslash must satisfy the same tree checks whenever it parses.
 * - safe implies read-only.
 */
export function judge(sql: string): Verdict {
  const readOnly = isCertainlyReadOnly(sql)
  const safe = isSafeToRunAgain(sql)
  if (safe && !readOnly) return { readOnly, safe, parsed: false, disagreement: 'safe to run again but not read-only' }
  if (!readOnly) return { readOnly, safe, parsed: false, disagreement: null }
  const objection = parserObjection(sql, safe)
  return { readOnly, safe, parsed: objection.parsed, disagreement: objection.reason }
}

/**
 * What PostgreSQL's parser holds against calling `sql` read-only (and, with `safe`, safe to run
 * again): the checks {@link judge} describes. `parsed` says whether the grammar accepted it.
 */
export function parserObjection(sql: string, safe: boolean): { parsed: boolean; reason: string | null } {
  if (!scans(sql)) return { parsed: false, reason: "PostgreSQL's scanner refuses it" }
  const tree = parseOrNull(sql)
  const problem = tree === null ? null : treeProblem(tree, safe)
  if (problem !== null) return { parsed: true, reason: problem }
  const twin = withEscapeStrings(sql)
  const twinTree = twin === null ? null : parseOrNull(twin)
  const twinProblem = twinTree === null ? null : treeProblem(twinTree, safe)
  const reason = twinProblem === null ? null : `with standard_conforming_strings off (as ${JSON.stringify(twin)}): ${twinProblem}`
  return { parsed: tree !== null, reason }
}

/** The reason the parser contradicts the classifier on `sql`, or null. */
export function disagreement(sql: string): string | null {
  return judge(sql).disagreement
}

function scans(sql: string): boolean {
  try {
    scanSync(sql)
    return true
  } catch (error) {
    // libpg-query 18.1.5 puts \f and \v into its JSON unescaped: JSON.parse then fails on what was a
    // successful scan (a scanner error comes back as plain text, which fails at its first letter).
    return error instanceof SyntaxError && error.message.startsWith('Bad control character')
  }
}

/** The scanner's tokens (byte offsets), or null when it refuses the text. */
function tokensOf(sql: string): ReturnType<typeof scanSync>['tokens'] | null {
  try {
    // \f and \v as spaces (see scans()): the same bytes, the same token boundaries.
    return scanSync(sql.replace(/[\f\v]/g, ' ')).tokens
  } catch {
    return null
  }
}

type ParseResult = ReturnType<typeof parseSync>

function parseOrNull(sql: string): ParseResult | null {
  try {
    return parseSync(sql)
  } catch {
    return null
  }
}

/** Why a parse tree is not one plain read (for `safe`: one calling only known readers), or null. */
function treeProblem(tree: ParseResult, safe: boolean): string | null {
  const statements = tree.stmts ?? []
  if (statements.length !== 1) return `${statements.length} statements`
  const statement = statements[0]!.stmt as Record<string, unknown> | undefined
  const kind = statement === undefined ? 'nothing' : Object.keys(statement)[0]
  if (kind !== 'SelectStmt') return `a ${kind}, not a SelectStmt`
  return nodeProblem(statement, safe)
}

/** Walks every object and array of the JSON tree, so no node kind is missed. */
function nodeProblem(node: unknown, safe: boolean): string | null {
  if (Array.isArray(node)) {
    for (const item of node) {
      const problem = nodeProblem(item, safe)
      if (problem !== null) return problem
    }
    return null
  }
  if (node === null || typeof node !== 'object') return null
  for (const [key, value] of Object.entries(node)) {
    const problem = keyProblem(key, value, safe) ?? nodeProblem(value, safe)
    if (problem !== null) return problem
  }
  return null
}

function keyProblem(key: string, value: unknown, safe: boolean): string | null {
  if (key.endsWith('Stmt') && key !== 'SelectStmt') return `a ${key} inside`
  if (key === 'lockingClause') return 'a locking clause'
  if (key === 'intoClause') return 'an INTO clause'
  if (key === 'FuncCall') return callProblem(value as { funcname?: Array<{ String?: { sval?: string } }>; funcformat?: string }, safe)
  return null
}

/**
 * A call of a primary-only function (any schema, as the classifier matches names), or for safe a
 * call of anything but a known reader. Calls PostgreSQL makes up for SQL syntax (`x AT TIME ZONE
 * y`, `IS NORMALIZED`, `OVERLAPS`, `SIMILAR TO`'s similar_to_escape) are pg_catalog built-ins that
 * only compute: the text shows no name to classify.
 */
function callProblem(call: { funcname?: Array<{ String?: { sval?: string } }>; funcformat?: string }, safe: boolean): string | null {
  const names = (call.funcname ?? []).map((part) => part.String?.sval ?? '?')
  const name = names[names.length - 1] ?? '?'
  if (PRIMARY_ONLY_FUNCTIONS.has(name)) return `a call of ${names.join('.')}`
  if (!safe) return null
  if (names.length === 1 && READ_FUNCTIONS.has(name)) return null
  const builtIn = names.length === 2 && names[0] === 'pg_catalog'
  if (builtIn && (READ_FUNCTIONS.has(name) || call.funcformat === 'COERCE_SQL_SYNTAX' || name === 'similar_to_escape')) return null
  return `a call of ${names.join('.')}, not a known reader`
}

/**
 * `sql` as a server with standard_conforming_strings off reads it, spelled for a parser with it
 * on: `E` before each plain string that holds a backslash, found by scanning again after each
 * change (once one string ends elsewhere, the next strings are not where the first scan saw them).
 * Null when no plain string holds a backslash, or when the changed text no longer scans (an error:
 * nothing runs).
 */
function withEscapeStrings(sql: string): string | null {
  let bytes = Buffer.from(sql)
  let from = 0
  for (;;) {
    const tokens = tokensOf(bytes.toString())
    if (tokens === null) return null
    // Scan offsets are in bytes.
    const plain = tokens.find((t) => t.start >= from && t.tokenName === 'SCONST' && t.text.startsWith("'") && t.text.includes('\\'))
    if (plain === undefined) return from === 0 ? null : bytes.toString()
    bytes = Buffer.concat([bytes.subarray(0, plain.start), Buffer.from(' E'), bytes.subarray(plain.start)])
    from = plain.start + 2
  }
}

// ---------------------------------------------------------------------------------------------
// The generator
// ---------------------------------------------------------------------------------------------

const anyCase = (word: string): fc.Arbitrary<string> => fc.mixedCase(fc.constant(word))
const join = (parts: readonly string[]): string => parts.join('')
/** `piece` one time in six, else nothing. */
const rarely = (piece: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof({ weight: 5, arbitrary: fc.constant('') }, { weight: 1, arbitrary: piece })
/**
 * Mostly what PostgreSQL accepts, sometimes what it refuses or reads by version: a statement with
 * one odd piece in it is what finds a scanner's mistakes, one with five only gets refused.
 */
const mostly = (clean: fc.Arbitrary<string>, odd: fc.Arbitrary<string>): fc.Arbitrary<string> =>
  fc.oneof({ weight: 5, arbitrary: clean }, { weight: 1, arbitrary: odd })

/** Whitespace PostgreSQL knows, \v (whitespace only since 16), a no-break space (an identifier character) and none at all. */
const space = fc.oneof(
  { weight: 8, arbitrary: fc.constant(' ') },
  { weight: 2, arbitrary: fc.constantFrom('\n', '\t', '\r', '\r\n', '\f', '  ') },
  { weight: 1, arbitrary: fc.constantFrom('', '\v', '\u00a0') },
)

/** Pieces of literal bodies: quotes, backslashes, escapes valid and not, comment and dollar marks, statements. */
const bodyPiece = mostly(
  fc.constantFrom('x', 'abc', ' ', "''", '\\\\', '\\n', ';', '\n', '\r', '--', '/*', '*/', '$', '$$', '$a$', '$1', '"', 'é', '😀',
    ' INSERT INTO t VALUES (1)', ';DELETE FROM t;--', ' FOR UPDATE', ' INTO x', 'nextval(1)', ' select ', '\\x41', '\\101', '\\u0041', '\\U0001F600', '\\0061', '\\+000061'),
  fc.constantFrom('\\', "\\'", "E'", "'", '\\x', '\\0', '\\377', '\\x80', '\\u12', '\\uD800', '\\U00110000'),
)
const body = fc.array(bodyPiece, { maxLength: 4 }).map(join)

const dollarTag = fc.constantFrom('', 'a', 'tag', '_', 'é', 'a1', 'T')
const dollarBody = fc.array(fc.oneof(bodyPiece, fc.constantFrom('$tag', '$ta$', '$tag$x', '$T$', '$é$', '$$x')), { maxLength: 4 }).map(join)

/** A continuation: whitespace holding a newline (or not), a -- comment, or a block comment (never a continuation). */
const continuation = fc.constantFrom('\n', ' \n ', '\r', ' -- c\n', '\n-- c\n', ' ', '/* c */\n', '\n/* c */', '\t\n\f')

/** Every string form: standard, E'' with escapes, U&'' (with UESCAPE), B'', X'', N'', dollar quotes, continued strings. */
const stringLiteral: fc.Arbitrary<string> = fc.oneof(
  { weight: 2, arbitrary: body.map((b) => `'${b}'`) },
  { weight: 2, arbitrary: fc.tuple(fc.constantFrom('E', 'e'), body).map(([p, b]) => `${p}'${b}'`) },
  fc.tuple(fc.constantFrom('U&', 'u&'), body, rarely(fc.constantFrom(" UESCAPE '!'", " UESCAPE '\\'"))).map(([p, b, u]) => `${p}'${b}'${u}`),
  fc.tuple(fc.constantFrom('B', 'b', 'X', 'x', 'N', 'n'), mostly(fc.constantFrom('0101', '1F', '', 'abc'), fc.constantFrom("''", "1'2", '\\'))).map(([p, b]) => `${p}'${b}'`),
  { weight: 2, arbitrary: fc.tuple(dollarTag, dollarBody, mostly(fc.constant(''), fc.constant('x'))).map(([tag, b, open]) => `$${tag}$${b}${open === '' ? `$${tag}$` : ''}`) },
  fc.tuple(fc.constantFrom('', 'E', 'U&', 'B', 'N'), body, continuation, body, rarely(fc.constant('E'))).map(([p, a, ws, b, q]) => `${p}'${a}'${ws}${q}'${b}'`),
)

/** Identifiers: plain, with `$` inside, keyword-like, prefix letters, non-ASCII; quoted with doubled quotes; U&"...". */
const identifier: fc.Arbitrary<string> = mostly(
  fc.constantFrom('t', 'users', 'a$b', 'x$1', 'a$b$c', 'é', '_x', 'update_at', 'insert$', 'selectx', 'e', 'b', 'x', 'n', 'u', 'U', 'E', 'ñcount', 'id',
    '"update"', '"a""b"', '"; DELETE FROM t; --"', '"select"', '"nextval"', '"count"', '"t"', '"$$"', "\"'\"", 'U&"\\0061"', 'U&"a""b"', 'u&"t"', 'U&"\\006Eextval"'),
  fc.constantFrom('""', 'U&""', 'U&"nextval"', '"unterminated', 'K'),
)

/** Numbers and parameters, including the forms versions read differently (0x1F, 1_000, 1for, $1a). */
const number = mostly(
  fc.constantFrom('1', '42', '1.5', '.5', '1e5', '1.e3', '$1', '$12', '0', '1e-3'),
  fc.constantFrom('1e', '0x1F', '1_000', '1for', '1into', '$1a', '1..2', '1$', '0b1', '1.5e'),
)

/** Comments: line comments ended by \n, \r or the end; block comments, nested, odd, unterminated. */
const comment: fc.Arbitrary<string> = fc.oneof(
  fc.tuple(body, fc.constantFrom('\n', '\r', '')).map(([b, end]) => `--${b.replace(/[\n\r]/g, ' ')}${end}`),
  body.map((b) => `/*${b.replaceAll('*/', '')}*/`),
  fc.constantFrom('/* /* nested */ still comment */', '/* /* */ */', '/*/ x */', '/**/', '/*+*/', '/* a /* b */', '/* unterminated', '**/'),
  fc.tuple(body, body).map(([a, b]) => `/* ${a.replaceAll('*/', '')} /* ${b.replaceAll('*/', '')} */ */`),
)

const readFunction = fc.constantFrom(...READ_FUNCTIONS)
const primaryFunction = fc.constantFrom('nextval', 'setval', 'pg_advisory_lock', 'pg_notify', 'set_config', 'txid_current', 'pg_try_advisory_xact_lock', 'lo_import')
/** User functions, and words the classifier lets stand before "(" (PostgreSQL must not read them as calls). */
const userFunction = fc.constantFrom('my_function', 'enqueue', 'filter', 'by', 'over', 'partition', 'cube', 'overlay', 'treat', 'normalize',
  'join', 'current_timestamp', 'grouping', 'xmlconcat', 'json_object', 'first', 'any', 'all', 'some', 'exists', 'array', 'row', 'values',
  'timestamp', 'numeric', 'float', 'char', 'decimal', 'varchar', 'character', 'bit', 'time', 'interval', 'cast', 'between', 'in', 'as',
  'lateral', 'using', 'on', 'distinct', 'limit', 'offset', 'fetch', 'with', 'group', 'order', 'case', 'when', 'then', 'else', 'not')
/** Function names: known readers, primary-only built-ins and user functions, bare, schema-qualified or quoted. */
const functionName = fc.oneof(
  { weight: 3, arbitrary: readFunction.chain((name) => fc.oneof(anyCase(name), fc.constant(name))) },
  fc.oneof(primaryFunction, userFunction).chain((name) => fc.oneof(anyCase(name), fc.constant(name))),
  fc.tuple(fc.constantFrom('pg_catalog', 'PG_CATALOG', 'public', 'app', '"pg_catalog"', 'a.b'), fc.oneof(readFunction, primaryFunction, userFunction)).map(([s, n]) => `${s}.${n}`),
  fc.constantFrom('"count"', '"nextval"', 'U&"nextval"', 'U&"count"', '"my function"', 'pg_catalog . count', 'pg_catalog./**/nextval', 'nextval /* c */',
    'x.pg_catalog.count', '"pg_catalog".count', 'pg_catalog."count"', 'PG_CATALOG.NOW', 'pg_catalog.nextval'),
)

/** Statements that write, in every form the classifier must see through. */
const writeStatement = fc.constantFrom(
  'INSERT INTO t VALUES (1)', 'INSERT INTO t SELECT 1 RETURNING *', 'UPDATE t SET a = 1', 'DELETE FROM t', 'DELETE FROM t RETURNING id',
  'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE', 'TRUNCATE t', 'CALL p()', 'DO $$BEGIN PERFORM 1; END$$',
  'COPY t TO STDOUT', 'COPY t FROM STDIN', 'EXPLAIN ANALYZE INSERT INTO t VALUES (1)', 'EXPLAIN ANALYZE DELETE FROM t',
  'SELECT * INTO new_t FROM t', 'CREATE TABLE x AS SELECT 1', 'LOCK TABLE t', 'SET search_path = x', 'BEGIN', 'NOTIFY c',
  'PREPARE q AS SELECT 1', 'EXECUTE q', 'VACUUM t', 'REFRESH MATERIALIZED VIEW v', 'GRANT SELECT ON t TO u',
)
const dataModifying = fc.constantFrom('INSERT INTO t VALUES (1) RETURNING *', 'UPDATE t SET a = 1 RETURNING a', 'DELETE FROM t RETURNING *',
  'MERGE INTO t USING s ON t.id = s.id WHEN MATCHED THEN DELETE RETURNING *')

const locking = fc.constantFrom(' FOR UPDATE', ' FOR NO KEY UPDATE', ' FOR SHARE', ' FOR KEY SHARE', ' for update of t nowait', ' FOR SHARE SKIP LOCKED',
  ' FOR READ ONLY', ' FOR/**/UPDATE', '\nFOR\nUPDATE', ' FOR -- c\nSHARE')

interface Grammar {
  expr: string
  select: string
  statement: string
}

/** SQL built recursively (valid but for the odd pieces): expressions, subqueries, CTEs, set operations, windows. */
const grammar = fc.letrec<Grammar>((looseTie) => {
  const tie = (key: keyof Grammar): fc.Arbitrary<string> => looseTie(key) as fc.Arbitrary<string>
  const expr = fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: fc.oneof(identifier, number, stringLiteral, fc.constantFrom('t.a', 'a', 'NULL', 'true', 'CURRENT_DATE', 'system_user')) },
    { weight: 2, arbitrary: fc.tuple(functionName, fc.array(tie('expr'), { maxLength: 2 })).map(([f, args]) => `${f}(${args.join(', ')})`) },
    fc.tuple(tie('expr'), fc.constantFrom(' + ', ' = ', ' || ', ' AND ', ' < ', '::text', ' IN ', ' LIKE ', ' SIMILAR TO ', ' AT TIME ZONE ', '-', '/', '@'), tie('expr'))
      .map(([a, op, b]) => (op === '::text' ? `${a}::text` : op === ' IN ' ? `${a} IN (${b})` : `${a}${op}${b}`)),
    tie('select').map((s) => `(${s})`),
    tie('select').map((s) => `EXISTS (${s})`),
    fc.tuple(tie('expr'), tie('expr')).map(([a, b]) => `CASE WHEN ${a} THEN ${b} ELSE NULL END`),
    fc.constantFrom(
      'count(*) FILTER (WHERE a > 1) OVER (PARTITION BY b ORDER BY c)', 'row_number() OVER (ORDER BY a)', 'sum(a) OVER w',
      'extract(day from now())', "trim(both ' ' from a)", "position('a' in b)", 'substring(a from 1 for 2)', 'a IS NORMALIZED',
      '(1, 2) OVERLAPS (3, 4)', 'ARRAY(SELECT 1)', 'ROW(1, 2)', 'CAST(a AS numeric(10, 2))', 'collation for (a)', 'overlay(a placing b from 1)',
      "x AT TIME ZONE 'UTC'", 'a = ANY($1)', "interval '1 day'", "timestamp(3) '2020-01-01'", "interval(2) '1 day'", 'a::numeric(10, 2)',
      'max(a) FILTER(WHERE a) OVER(w)', '(SELECT 1) filter(a)', '(a) over(b)', 'count(*) over(partition by(a) order by(b))',
      'a BETWEEN (1) AND (2)', 'a IN (1, 2)', 'NOT (a)', 'a LIKE ANY (ARRAY[1])', 'f() over (w)',
    ),
  )
  const plainSelect = fc
    .record({
      targets: fc.array(tie('expr'), { minLength: 1, maxLength: 2 }),
      from: fc.option(fc.oneof(identifier, tie('select').map((s) => `(${s}) AS sub`),
        fc.constantFrom('t JOIN u USING (id)', 't, LATERAL my_function(t.id) f', 'generate_series(1, 3) g(x)', 't LEFT JOIN u ON t.id = u.id',
          'generate_series(1, 2) over(x)', 'unnest($1) filter(x)', 't AS x(a, b)', 't JOIN (u) ON (true)', 'LATERAL (SELECT 1) s'))),
      where: fc.option(tie('expr')),
      tail: fc.constantFrom('', '', ' GROUP BY a', ' ORDER BY a DESC', ' LIMIT 10', ' OFFSET $1', ' GROUP BY (a) HAVING count(*) > 1', ' WINDOW w AS (PARTITION BY a)', ' ORDER BY (a)'),
      lock: rarely(locking),
      into: rarely(fc.constantFrom(' INTO x', ' INTO TEMP x', ' INTO STRICT x')),
    })
    .map(({ targets, from, where, tail, lock, into }) =>
      `SELECT ${targets.join(', ')}${into}${from === null ? '' : ` FROM ${from}`}${where === null ? '' : ` WHERE ${where}`}${tail}${lock}`)
  const select = fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 4, arbitrary: plainSelect },
    fc.tuple(tie('select'), fc.constantFrom(' UNION ', ' UNION ALL ', ' INTERSECT ', ' EXCEPT '), tie('select')).map(([a, op, b]) => `${a}${op}${b}`),
    fc.tuple(tie('expr'), tie('expr')).map(([a, b]) => `VALUES (${a}), (${b})`),
    identifier.map((t) => `TABLE ${t}`),
    tie('select').map((s) => `(${s})`),
  )
  const statement = fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    { weight: 6, arbitrary: tie('select') },
    fc.tuple(mostly(tie('select'), dataModifying), fc.constantFrom('', ' MATERIALIZED', ' NOT MATERIALIZED'), tie('select'))
      .map(([cte, m, s]) => `WITH x AS${m} (${cte}) ${s}`),
    fc.tuple(dataModifying, tie('expr')).map(([w, e]) => `WITH RECURSIVE r AS (${w}) SELECT ${e} FROM r`),
    writeStatement,
  )
  return { expr, select, statement }
})

/** Raw fragments, including ones that open a literal or comment and never close it. */
const fragment: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom('SELECT', 'select', 'WITH', 'VALUES', 'TABLE', '(', ')', ';', ',', '.', '*', 'FROM', 't', 'WHERE', 'a', '=', '1', 'INTO', 'FOR', 'UPDATE', 'SHARE', 'KEY', 'NO', 'INSERT', 'DELETE', 'RETURNING', 'AS') },
  { weight: 2, arbitrary: fc.constantFrom("'", '"', "E'", "E'\\'", "'\\'", '$$', '$a$', '/*', '*/', '--', "U&'", 'U&"', '\\', '$', '{', '\0', "''", "'\n'") },
  stringLiteral, identifier, number, comment, functionName.map((f) => `${f}(`), writeStatement,
)

/** Text made of fragments and whitespace: where keywords and quote marks meet at random. */
const soup = fc.array(fc.tuple(fragment, space), { minLength: 1, maxLength: 12 }).map((parts) => parts.map(([f, s]) => f + s).join(''))

/**
 * A statement with a hostile piece put between two of its parts: a literal, comment, fragment or
 * second statement where a token boundary (or a space inside a literal) was.
 */
const spliced = fc
  .tuple(grammar.statement, fc.nat(), fc.oneof(fragment, comment, stringLiteral, grammar.statement.map((s) => `; ${s}`)), fc.boolean())
  .map(([statement, at, piece, spaced]) => {
    const parts = statement.split(' ')
    const k = at % (parts.length + 1)
    const glue = spaced ? ' ' : ''
    return [...parts.slice(0, k), `${glue}${piece}${glue}`, ...parts.slice(k)].join(' ')
  })

/** Statements joined by ";" with comments and whitespace around them, and an optional final ";". */
const script = fc
  .tuple(
    fc.option(comment, { freq: 3 }),
    fc.array(grammar.statement, { minLength: 1, maxLength: 3 }),
    fc.constantFrom(';', ';\n', '; ', ';;', ' ; -- end', ';/* end */'),
    fc.constantFrom('', ';', '; -- done', '\n', ' -- trailing', ' /* c */', ';;'),
  )
  .map(([lead, statements, separator, end]) => `${lead ?? ''}${lead?.startsWith('--') ? '\n' : ' '}${statements.join(separator)}${end}`)

/**
 * A read that hides a write behind a literal, identifier or comment PostgreSQL ends elsewhere than
 * a naive scanner would: `SELECT E'\'';INSERT INTO t VALUES (1);--'` and its relatives.
 */
const injection = fc
  .tuple(
    grammar.select,
    fc.constantFrom("E'\\'", "'\\'", "E'\\\\\\'", "U&'\\'", "N'\\'", "B'\\'", "E'a'\n'\\'", "'a'\n'\\'", "E'a' '\\'", "E'a'--c\n'\\'",
      '$a', 'a$b$', '$é$', 'x$1$$', '$1$$', '/* /* */', '-- \r', '"a""', "E'\\\\'", "'\\\\'", "e'\\x27", "E'\\047", "E'\\u0027"),
    fc.oneof(writeStatement.map((w) => `;${w};`), writeStatement.map((w) => ` ${w} `),
      fc.constantFrom(' FOR UPDATE ', ' INTO x ', ') UNION SELECT nextval(1) --', ';', ' SELECT 1; DELETE FROM t; ')),
    fc.constantFrom("--'", "'", '--$a$', '*/', "/*'*/", '$é$', '$$', "''", '"', "'--\n'"),
  )
  .map(([select, opener, payload, closer]) => `${select.replace(/ (WHERE|FROM) /, ` $1 ${opener}`)}${payload}${closer}`)

/** The generator the property runs over. */
export const statementText: fc.Arbitrary<string> = fc.oneof(
  { weight: 5, arbitrary: grammar.statement },
  { weight: 3, arbitrary: spliced },
  { weight: 2, arbitrary: script },
  { weight: 2, arbitrary: soup },
  { weight: 2, arbitrary: injection },
)

// ---------------------------------------------------------------------------------------------
// The command
// ---------------------------------------------------------------------------------------------

interface Cli {
  runs: number
  seed: number
  show: number
}

function parseArgs(argv: readonly string[]): Cli {
  const cli: Cli = { runs: 1_000_000, seed: Date.now() % 2 ** 31, show: 10 }
  for (let k = 0; k < argv.length; k += 2) {
    const [flag, value] = [argv[k], Number(argv[k + 1])]
    if (!Number.isSafeInteger(value) || value < 0) throw new Error(`${flag} needs a whole number`)
    if (flag === '--runs') cli.runs = value
    else if (flag === '--seed') cli.seed = value
    else if (flag === '--show') cli.show = value
    else throw new Error(`unknown option ${flag}; usage: fuzz-classifier [--runs N] [--seed N] [--show N]`)
  }
  return cli
}

async function main(): Promise<void> {
  const cli = parseArgs(process.argv.slice(2))
  await loadParser()
  const counts = { runs: 0, readOnly: 0, parsed: 0, safe: 0, disagreements: 0 }
  const shown: Array<{ sql: string; why: string }> = []
  const started = performance.now()
  // Every text is judged and counted: the property never fails, so fast-check neither stops nor shrinks.
  fc.assert(
    fc.property(statementText, (sql) => {
      const verdict = judge(sql)
      // The run is synchronous (no timer fires): progress is told from inside it.
      if (++counts.runs % 100_000 === 0) console.error(`  ${counts.runs} texts, ${counts.disagreements} disagreements`)
      if (verdict.readOnly) counts.readOnly++
      if (verdict.safe) counts.safe++
      if (verdict.parsed) counts.parsed++
      if (verdict.disagreement !== null) {
        counts.disagreements++
        if (shown.length < cli.show) shown.push({ sql, why: verdict.disagreement })
      }
    }),
    { numRuns: cli.runs, seed: cli.seed },
  )
  const seconds = (performance.now() - started) / 1000
  for (const { sql, why } of shown) console.log(`DISAGREEMENT ${JSON.stringify(sql)}\n  ${why}`)
  console.log(
    `${counts.runs} texts in ${seconds.toFixed(1)} s, seed ${cli.seed}: ${counts.readOnly} judged read-only ` +
      `(${counts.parsed} of them parsed by PostgreSQL's grammar), ${counts.safe} safe to run again; ` +
      `${counts.disagreements} disagreements`,
  )
  if (counts.disagreements > 0) process.exitCode = 1
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) await main()
