import { describe, expect, it } from 'vitest'
import { isCertainlyReadOnly } from '../../src/surface/statement-kind.js'

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
