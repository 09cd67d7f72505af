/**
 * PostgreSQL's scanner (scan.l), reduced to what statement-kind.ts needs: token kinds, a hash of
 * each unquoted word, and the certainty that every token ends where PostgreSQL ends it. It knows
 * standard, E'', U&'', bit and dollar-quoted strings (tags included), string continuations across
 * newlines, quoted and U& identifiers, nested block comments, line comments ended by \n or \r, `$`
 * inside identifiers, `$1` parameters. Where PostgreSQL versions, settings or other readers of SQL
 * would cut the same text differently, or PostgreSQL refuses it, the token is INVALID:
 * - a backslash right before a quote in a plain '...' string (its end depends on
 *   standard_conforming_strings);
 * - a number run into a letter, `_` or `$` (`0x1F`, `1_000`, `1for`: an error since PostgreSQL 15,
 *   `1` then `for` before it);
 * - a string continued across a -- comment line (the server does, libpg-query does not);
 * - E'' escapes whose value PostgreSQL checks (\0, non-ASCII bytes, bad \u escapes);
 * - characters the scanner does not know (`\`, `{`, a lone `$`, control characters, \v, NUL),
 *   and anything unterminated.
 */

/** No more tokens: the text ends here. */
export const END = 0
/** Text PostgreSQL would refuse, or that versions or settings would read differently. */
export const INVALID = 1
/** An unquoted identifier or keyword; the lexer's `hash` is {@link wordHash} of its text. */
export const WORD = 2
/** A quoted identifier, "..." or U&"...". */
export const QUOTED = 3
/** "(" */
export const LPAREN = 4
/** ")" */
export const RPAREN = 5
/** "." on its own (".5" is a number). */
export const DOT = 6
/** ";" */
export const SEMICOLON = 7
/** Anything else that is certainly not a word: a literal, a parameter, an operator, a comma. */
export const OTHER = 8

const LETTERS = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz_'
const DIGITS = '0123456789'

// ASCII character classes, from scan.l.
const C_IDENT_START = 1 // [A-Za-z_] (and every non-ASCII character)
const C_IDENT_CONT = 2 // [A-Za-z0-9_$]
const C_HEX = 4
const CLASS = asciiTable([
  [LETTERS, C_IDENT_START | C_IDENT_CONT], [DIGITS, C_IDENT_CONT | C_HEX], ['$', C_IDENT_CONT], ['abcdefABCDEF', C_HEX],
])

// What a token's first character starts (ASCII; every other character starts a word). 0: none,
// PostgreSQL refuses the character: \ { } control characters, \v (whitespace only since PostgreSQL 16).
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
const STARTS = asciiTable([
  [' \t\n\r\f', S_SPACE], [LETTERS, S_WORD], [DIGITS, S_DIGIT], [',[]:+*%^<>=~!@#&|`?', S_OPERATOR],
  ['(', S_LPAREN], [')', S_RPAREN], ['.', S_DOT], [';', S_SEMICOLON], ["'", S_QUOTE], ['"', S_DQUOTE],
  ['$', S_DOLLAR], ['-', S_MINUS], ['/', S_SLASH],
])

/** What {@link continuationQuote} answers for a continuation that readers of SQL disagree on. */
const AMBIGUOUS = -2

// String bodies: how backslashes and quotes behave inside them.
const XQ = 0 // '...' and N'...': a backslash before a quote is ambiguous (standard_conforming_strings)
const XE = 1 // E'...': backslash escapes
const XUS = 2 // U&'...': escapes are decoded later, quotes behave as in '...'
const XB = 3 // B'...' and X'...': no doubled quotes, no escapes

/** Cuts a SQL text into tokens the way PostgreSQL's scanner does, one {@link Lexer.next} at a time. */
export class Lexer {
  /** For the last WORD: {@link wordHash} of its text, computed while scanning it. */
  hash = 0
  /** Where the last token starts. */
  start = 0
  #pos = 0
  readonly #sql: string

  /** A lexer at the start of `sql`. */
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
    let j = i
    // ident_cont includes "$": `a$b$c` is one identifier, never the start of a dollar quote.
    for (; j < sql.length; j++) {
      const d = sql.charCodeAt(j)
      if (d < 128 && (CLASS[d]! & C_IDENT_CONT) === 0) break
      hash = (Math.imul(hash, 31) + (d | 0x20)) | 0 // as wordHash
    }
    this.#pos = j
    this.hash = hash
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

/**
 * A hash of text[start, end), the same for any spelling in upper or lower case (`| 0x20` folds A-Z
 * without a branch and keeps digits, `_` and `$` apart), as the lexer computes it for a WORD while
 * it scans: a caller looks words up without making a substring, then compares the characters.
 */
export function wordHash(text: string, start: number, end: number): number {
  let hash = 0
  for (let k = start; k < end; k++) hash = (Math.imul(hash, 31) + (text.charCodeAt(k) | 0x20)) | 0
  return hash
}

/** A table of the ASCII characters: each character of a group gets the group's bits (0 for none). */
function asciiTable(groups: ReadonlyArray<readonly [string, number]>): Uint8Array {
  const table = new Uint8Array(128)
  for (const [chars, bits] of groups) for (let k = 0; k < chars.length; k++) table[chars.charCodeAt(k)]! |= bits
  return table
}
