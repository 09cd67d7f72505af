import { describe, expect, it } from 'vitest'
import { isCertainlyReadOnly, isSafeToRunAgain } from '../../src/surface/statement-kind.js'

describe('isCertainlyReadOnly (routeReads: auto)', () => {
  it.each([
    'SELECT 1',
    'select * from orders where id = $1',
    '  -- a comment\n SELECT count(*) FROM t;',
    "SELECT 'update t set x = 1' AS s",
    'SELECT "update" FROM t',
    'WITH a AS (SELECT 1) SELECT * FROM a',
    'SELECT $$insert$$',
    'VALUES (1), (2)',
    'SELECT now(), lower(name) FROM users',
  ])('read-only: %s', (sql) => {
    expect(isCertainlyReadOnly(sql)).toBe(true)
  })

  it.each([
    'INSERT INTO t VALUES (1)',
    'UPDATE t SET x = 1',
    'WITH d AS (DELETE FROM t RETURNING *) SELECT * FROM d',
    'WITH i AS (INSERT INTO t VALUES (1) RETURNING id) SELECT id FROM i',
    'SELECT * FROM t FOR UPDATE',
    'SELECT * FROM t FOR NO KEY UPDATE',
    'SELECT * FROM t FOR SHARE',
    'select * from t for key share skip locked',
    'SELECT nextval(\'s\')',
    'SELECT pg_advisory_lock(1)',
    "SELECT set_config('a.b', '1', false)",
    'SELECT * INTO new_table FROM t',
    'SELECT 1; DELETE FROM t',
    'BEGIN',
    'SET search_path = x',
    "SELECT 'unterminated",
    '/* unterminated comment SELECT 1',
    'CALL p()',
    'select pg_notify(\'c\', \'x\')',
  ])('primary: %s', (sql) => {
    expect(isCertainlyReadOnly(sql)).toBe(false)
  })
})

describe('isSafeToRunAgain (a lost statement on the primary, a success from a node the pool left)', () => {
  it.each([
    'SELECT 1',
    'SELECT count(*) FROM t WHERE id IN ($1, $2)',
    'SELECT now(), lower(name), coalesce(x, 0) FROM users',
    'SELECT pg_catalog.now()',
    'SELECT inet_server_port() AS port',
    'WITH a AS (SELECT 1) SELECT * FROM a WHERE EXISTS (SELECT 1)',
    'SELECT CAST(x AS numeric(10, 2)) FROM t',
    'SELECT row_number() OVER (PARTITION BY a ORDER BY b) FROM t',
    "SELECT 'my_function(1)' AS s",
    'SELECT x FROM t WHERE x = ANY($1) AND (a, b) = ($2, $3)',
    'SELECT count(*) FILTER (WHERE x > 1) FROM t GROUP BY (a)',
  ])('safe: %s', (sql) => {
    expect(isSafeToRunAgain(sql)).toBe(true)
  })

  it.each([
    // Read-only enough to route to a replica (which would refuse a write), not to run twice on the primary.
    'SELECT my_function(1)',
    'SELECT * FROM my_function()',
    'SELECT public.now()',
    'SELECT "MyFunction"(1)',
    'SELECT app.enqueue($1)',
    'SELECT count(*) FROM t, LATERAL my_function(t.id) f',
    'SELECT public.my_function(1)',
    'SELECT a.b.my_function(1)',
    'SELECT ñcount(x) FROM t',
    // Unreserved words a user may name a function after.
    'SELECT filter(1)',
    'SELECT by(1)',
    'SELECT partition(1)',
    'SELECT escape(1)',
    'SELECT cube(1)',
    'SELECT timestamptz(1)',
    // Not read-only at all.
    'INSERT INTO t VALUES (1)',
    'SELECT nextval(\'s\')',
    'SELECT 1; DELETE FROM t',
  ])('may write: %s', (sql) => {
    expect(isSafeToRunAgain(sql)).toBe(false)
  })
})

describe('the scanner follows PostgreSQL (scan.l): literals, identifiers and comments end where the server ends them', () => {
  it.each([
    // E'' strings take backslash escapes: \' is a quote inside, the next ' ends the string, and the
    // INSERT is a second statement (a scanner without escapes reads it all as one literal).
    ["SELECT E'\\'';INSERT INTO audit VALUES (1);--'", 'E\'\' escape hides a second statement'],
    ["SELECT e'\\\\\\'';DELETE FROM t;--'", 'E\'\' with \\\\ then \\\''],
    ["SELECT E'a'\n'\\'';DELETE FROM t;--'", 'a continuation of an E\'\' string takes escapes too'],
    // Where the meaning depends on standard_conforming_strings: off, this string ends after \' and a DELETE follows.
    ["SELECT 'a\\'';DELETE FROM t;--'", "backslash before a quote in a plain string"],
    ["SELECT 'C:\\'", 'a plain string ending in a backslash'],
    ["SELECT N'\\''", 'N\'\' is a plain string'],
    // $ belongs to identifiers: a$b$ is no dollar quote, so the DELETE is a statement.
    ['SELECT a$b$ FROM t; DELETE FROM t; SELECT 1 AS x$b$', '$ inside identifiers'],
    // Block comments nest: the quote is inside the comment, the DELETE after it.
    ["SELECT 1 /* /* */ ' */ ; DELETE FROM t; --'", 'nested comment'],
    // A line comment ends at \r as well as \n.
    ['SELECT 1 -- c\r; DELETE FROM t', 'line comment ended by \\r'],
    // Numbers run into letters: an error since PostgreSQL 15, `1 for update` / `1 into x` before.
    ['SELECT * FROM t LIMIT 1for update', 'number run into FOR'],
    ['SELECT 1into x', 'number run into INTO'],
    ['SELECT 0x1F', 'hex integer (PostgreSQL 16+), 0 AS x1F before'],
    ['SELECT 1_000', 'underscore in a number (PostgreSQL 16+)'],
    ['SELECT 1e FROM t', 'exponent without digits'],
    ['SELECT $1a', 'parameter run into a letter'],
    ['SELECT $ FROM t', 'a lone $'],
    ['SELECT $a$ unterminated', 'unterminated dollar quote'],
    ['SELECT 1\v', '\\v: whitespace only since PostgreSQL 16'],
    ['SELECT 1 \\ 2', 'a backslash outside literals'],
    ["SELECT 'a\0'", 'NUL (the protocol ends the query there)'],
    ['SELECT ""', 'zero-length quoted identifier'],
    ['SELECT "unterminated', 'unterminated quoted identifier'],
    ["SELECT E'\\u0000'", 'escape of U+0000'],
    ["SELECT E'\\377'", 'escape of a byte that is no UTF-8'],
    ["SELECT E'\\uD800'", 'escape of a lone surrogate'],
    ["SELECT E'\\u12'", 'malformed unicode escape'],
    // The server continues a string across a -- comment line, libpg-query (and others) end it there.
    ["SELECT E'a' -- c\n'\\'';DELETE FROM t;--'", 'continuation across a comment'],
    ["SELECT 'a' -- c\n'b'", 'continuation across a comment (harmless one)'],
    // Calls of primary-only functions through quoted names.
    ["SELECT \"nextval\"('s')", 'quoted primary-only name'],
    ["SELECT pg_catalog.\"nextval\"('s')", 'quoted, qualified primary-only name'],
    ["SELECT U&\"\\006Eextval\"('s')", 'U& name (not decoded: assumed primary-only)'],
    ['SELECT nextval /* c */ (1)', 'a comment between name and ('],
    ['SELECT * FROM t FOR -- c\n UPDATE', 'a comment inside the locking clause'],
  ])('primary: %s (%s)', (sql) => {
    expect(isCertainlyReadOnly(sql)).toBe(false)
    expect(isSafeToRunAgain(sql)).toBe(false)
  })

  it.each([
    'SELECT a$b$c, x$1, "a$b" FROM t WHERE id = $1 AND x = $2',
    "SELECT $tag$ insert into t; $$ $ta$ $tag$ AS body",
    'SELECT $é$ DELETE FROM t $é$ AS body',
    'SELECT $$ $a$ ; DROP TABLE t $$',
    'SELECT 1 /* outer /* inner */ DELETE FROM t; */ AS one',
    "SELECT E'it\\'s', E'\\\\', E'\\n\\t\\x41\\101\\u00e9\\U0001F600' FROM t",
    "SELECT U&'d\\0061t\\+000061', U&\"a\"\"b\" FROM t",
    "SELECT U&'\\0041!0042' UESCAPE '!'",
    "SELECT B'0101', X'1F', N'abc', b'1'",
    'SELECT "a""; DELETE FROM t; --" FROM t',
    "SELECT 'a'\n'b' AS s",
    "SELECT 'a'\r\n  'b' AS s",
    "SELECT 'it''s; DELETE FROM t'",
    "SELECT 'back\\slash' AS s",
    'SELECT 1 -- DELETE FROM t',
    'SELECT 1; -- done',
    'SELECT 1.5, .5, 1e5, 1.e3, 1e-3',
    'SELECT * FROM t FOR READ ONLY',
    'SELECT é, ñcount FROM t',
  ])('read-only: %s', (sql) => {
    expect(isCertainlyReadOnly(sql)).toBe(true)
  })

  it.each([
    ['SELECT pg_catalog.count(*), PG_CATALOG.NOW() FROM t', true],
    ['SELECT count(*) over(partition by(a) order by(b)) FROM t', true],
    ["SELECT extract(day from now()), trim(both ' ' from a) FROM t", true],
    ['SELECT "count"(x) FROM t', false],
    ['SELECT x.pg_catalog.count(*) FROM t', false],
    ['SELECT "pg_catalog".count(*) FROM t', false],
    ['SELECT pg_catalog."count"(*) FROM t', false],
    ['SELECT U&"count"(x) FROM t', false],
    ["SELECT E'\\'';SELECT my_function()--'", false],
    ['SELECT rank\u212A() FROM t', false], // a Kelvin sign folds to k in JavaScript, never in PostgreSQL
  ] as const)('safe to run again: %s -> %s', (sql, safe) => {
    expect(isSafeToRunAgain(sql)).toBe(safe)
  })
})
