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
