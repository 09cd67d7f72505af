import fc from 'fast-check'
import { beforeAll, describe, expect, it } from 'vitest'
import { isCertainlyReadOnly } from '../../src/surface/statement-kind.js'
import { disagreement, judge, loadParser, parserObjection, statementText } from '../../scripts/fuzz-classifier.js'

// The property `npm run fuzz:classifier` runs a million times, as a slice: a few seconds here.
const RUNS = 50_000

beforeAll(loadParser)

describe('the statement classifier against PostgreSQL’s parser (libpg-query)', () => {
  it('never calls a text read-only, or safe to run again, where the parser shows otherwise', () => {
    fc.assert(
      fc.property(statementText, (sql) => {
        const why = disagreement(sql)
        // Thrown rather than expect()ed: cheaper per run, and fast-check prints it with the shrunk text.
        if (why !== null) throw new Error(why)
      }),
      { numRuns: RUNS },
    )
  }, 120_000)

  it('the generator reaches every form the property is about, and enough reads that parse', () => {
    const texts = fc.sample(statementText, { numRuns: 3000, seed: 42 })
    const forms: Record<string, RegExp> = {
      "E'' string with \\'": /[eE]'[^']*\\'/,
      'U&string': /[uU]&'/,
      'U&identifier': /[uU]&"/,
      'bit/hex string': /\b[bBxX]'/,
      'tagged dollar quote': /\$(tag|a|é|T)\$/,
      'plain dollar quote': /\$\$/,
      '$ inside an identifier': /\w\$\w/,
      'quoted identifier with ""': /"[^"\s]*""[^"\s]*"/,
      'nested comment': /\/\*[^/]*\/\*/,
      'line comment': /--/,
      'several statements': /;\s*\S/,
      'data-modifying CTE': /WITH (RECURSIVE )?\w+ AS[^(]*\((INSERT|UPDATE|DELETE|MERGE)/,
      'locking clause': /FOR (UPDATE|SHARE|NO KEY UPDATE|KEY SHARE)/i,
      'SELECT INTO': /INTO (TEMP |STRICT )?x/,
      'primary-only call': /nextval\s*\(|pg_advisory_lock\(|set_config\(/i,
      'schema-qualified call': /pg_catalog\.\w+\(/i,
      'EXPLAIN ANALYZE': /EXPLAIN ANALYZE/,
      'CALL, DO, COPY': /\b(CALL|DO|COPY)\b/,
      'VALUES, TABLE': /\b(VALUES|TABLE)\b/,
      'set operation': /\b(UNION|INTERSECT|EXCEPT)\b/,
      'window function': /FILTER \(WHERE .*OVER/,
    }
    for (const [form, pattern] of Object.entries(forms)) expect(texts.some((t) => pattern.test(t)), form).toBe(true)
    const verdicts = texts.map(judge)
    // Enough texts are judged read-only, and parsed, for the tree checks to bite.
    expect(verdicts.filter((v) => v.readOnly && v.parsed).length).toBeGreaterThan(texts.length / 20)
    expect(verdicts.filter((v) => v.safe && v.parsed).length).toBeGreaterThan(texts.length / 25)
  })
})

describe('the oracle objects where it must (a classifier that said yes to these would be caught)', () => {
  it.each([
    ["SELECT E'\\'';INSERT INTO audit VALUES (1);--'", false, '2 statements'],
    ['WITH x AS (INSERT INTO t VALUES (1) RETURNING *) SELECT * FROM x', false, 'a InsertStmt inside'],
    ['WITH x AS (DELETE FROM t RETURNING *) SELECT * FROM x', false, 'a DeleteStmt inside'],
    ['SELECT * FROM t FOR NO KEY UPDATE', false, 'a locking clause'],
    ['SELECT 1 INTO x', false, 'an INTO clause'],
    ["SELECT pg_catalog.nextval('s')", false, 'a call of pg_catalog.nextval'],
    ['EXPLAIN ANALYZE DELETE FROM t', false, 'a ExplainStmt, not a SelectStmt'],
    ['SELECT my_function(1)', true, 'a call of my_function, not a known reader'],
    ['SELECT public.now()', true, 'a call of public.now, not a known reader'],
    ['SELECT 1for update', false, "PostgreSQL's scanner refuses it"],
    // With standard_conforming_strings off the string ends after \' and a DELETE follows.
    ["SELECT 'a\\'';DELETE FROM t;--'", false, 'with standard_conforming_strings off'],
  ] as const)('%s', (sql, safe, reason) => {
    expect(parserObjection(sql, safe).reason).toContain(reason)
  })

  it.each([
    ['SELECT 1', true],
    ["SELECT now(), x AT TIME ZONE 'UTC', a SIMILAR TO 'b', pg_catalog.count(*) FROM t", true],
    ['SELECT my_function(1)', false],
    // \f in a token: libpg-query's scan output needs its workaround.
    ["SELECT 'a'\n\f'b'", true],
  ] as const)('no objection: %s', (sql, safe) => {
    expect(parserObjection(sql, safe)).toEqual({ parsed: true, reason: null })
  })

  it('the classifier agrees with the oracle on the brief’s injection', () => {
    expect(isCertainlyReadOnly("SELECT E'\\'';INSERT INTO audit VALUES (1);--'")).toBe(false)
  })
})
