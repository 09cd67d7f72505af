/**
 * The docs cannot rot: every code block in README.md, docs/ and examples/README.md is checked
 * against what ships. TypeScript and JavaScript blocks are compiled, each as its own module,
 * against the built package (`pg-failover-pool` resolves to dist/ through the package's own
 * exports, as it does for a user) and the frameworks' real type declarations; shell blocks must
 * parse for bash, JSON blocks for JSON.parse, SQL blocks for PostgreSQL's own parser. A block
 * must say its language, and one that is not checked must say so by its language (text, yaml,
 * ini, prisma). Relative links must reach a file and, with an anchor, a heading in it.
 */
import { spawnSync } from 'node:child_process'
import { existsSync, mkdirSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { loadModule, parseSync } from 'libpg-query'
import ts from 'typescript'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'

const root = fileURLToPath(new URL('../../', import.meta.url))
/** Inside the package, so `import 'pg-failover-pool'` resolves as the package's self-reference. */
const workDir = join(root, '.docs-check')

/** Languages whose blocks are only text to a reader (configuration of other tools, output). */
const UNCHECKED = new Set(['text', 'yaml', 'ini', 'prisma', 'conf'])
const COMPILED: Record<string, string> = { ts: '.ts', typescript: '.ts', js: '.js', javascript: '.js' }

interface Block {
  readonly file: string
  /** 1-based line of the opening fence. */
  readonly line: number
  readonly lang: string
  readonly code: string
}

function markdownFiles(): string[] {
  const docs = existsSync(join(root, 'docs')) ? readdirSync(join(root, 'docs')).filter((f) => f.endsWith('.md')).map((f) => join(root, 'docs', f)) : []
  return [join(root, 'README.md'), ...docs, join(root, 'examples', 'README.md')].filter((f) => existsSync(f))
}

function blocksOf(file: string): Block[] {
  const lines = readFileSync(file, 'utf8').split('\n')
  const blocks: Block[] = []
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i]!)
    if (!open) continue
    const [, indent, fence, lang] = open
    const body: string[] = []
    let j = i + 1
    while (j < lines.length && !lines[j]!.trimStart().startsWith(fence!)) body.push(lines[j++]!.slice(indent!.length))
    blocks.push({ file: relative(root, file), line: i + 1, lang: lang!.toLowerCase(), code: body.join('\n') })
    i = j
  }
  return blocks
}

/** GitHub's anchor for a heading. */
function slug(heading: string): string {
  return heading
    .trim()
    .toLowerCase()
    .replace(/[^\p{L}\p{N}\s_-]/gu, '')
    .replace(/\s/g, '-')
}

function anchorsOf(file: string): Set<string> {
  const anchors = new Set<string>()
  const seen = new Map<string, number>()
  let inFence = false
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (/^\s*(`{3,}|~{3,})/.test(line)) inFence = !inFence
    const heading = !inFence && /^#{1,6}\s+(.*)$/.exec(line)
    if (!heading) continue
    const base = slug(heading[1]!.replace(/`/g, ''))
    const n = seen.get(base) ?? 0
    seen.set(base, n + 1)
    anchors.add(n === 0 ? base : `${base}-${n}`)
  }
  return anchors
}

const files = markdownFiles()
const blocks = files.flatMap(blocksOf)
const where = (b: Block): string => `${b.file}:${b.line}`

describe('docs', () => {
  beforeAll(() => {
    rmSync(workDir, { recursive: true, force: true })
    mkdirSync(workDir, { recursive: true })
  })
  afterAll(() => rmSync(workDir, { recursive: true, force: true }))

  it('the README is a quick start of at most 300 lines; the guides are under docs/', () => {
    const lines = readFileSync(join(root, 'README.md'), 'utf8').trimEnd().split('\n').length
    expect(lines).toBeLessThanOrEqual(300)
    expect(files.some((f) => f.includes(`${join('docs', '')}`))).toBe(true)
  })

  it('every code block names its language', () => {
    const known = (lang: string): boolean => lang in COMPILED || UNCHECKED.has(lang) || ['sh', 'bash', 'json', 'sql'].includes(lang)
    expect(blocks.filter((b) => !known(b.lang)).map((b) => `${where(b)} '${b.lang}'`)).toEqual([])
  })

  it('every TypeScript and JavaScript block compiles against the built package', () => {
    const compiled = blocks.filter((b) => b.lang in COMPILED)
    expect(compiled.length).toBeGreaterThan(10)
    const origin = new Map<string, Block>()
    compiled.forEach((b, i) => {
      const name = join(workDir, `${b.file.replace(/[^\w]/g, '_')}_${b.line}_${i}${COMPILED[b.lang]}`)
      // Each block is a module of its own (so top-level await works and names do not collide).
      writeFileSync(name, `${b.code}\nexport {}\n`)
      origin.set(resolve(name), b)
    })
    const program = ts.createProgram([...origin.keys()], {
      strict: true,
      target: ts.ScriptTarget.ES2022,
      lib: ['lib.es2022.d.ts'],
      module: ts.ModuleKind.NodeNext,
      moduleResolution: ts.ModuleResolutionKind.NodeNext,
      types: ['node'],
      esModuleInterop: true,
      skipLibCheck: true,
      allowJs: true,
      checkJs: true,
      noEmit: true,
      // NestJS and TypeORM examples use legacy decorators with metadata, as those frameworks do.
      experimentalDecorators: true,
      emitDecoratorMetadata: true,
    })
    const problems = ts.getPreEmitDiagnostics(program).map((d) => {
      const text = ts.flattenDiagnosticMessageText(d.messageText, '\n')
      const block = d.file ? origin.get(resolve(d.file.fileName)) : undefined
      if (!block || d.start === undefined) return `${d.file?.fileName ?? '(program)'}: ${text}`
      const { line } = d.file!.getLineAndCharacterOfPosition(d.start)
      return `${block.file}:${block.line + 1 + line}: ${text}`
    })
    expect(problems).toEqual([])
  }, 120_000)

  it('every shell block parses for bash', () => {
    const broken = blocks
      .filter((b) => b.lang === 'sh' || b.lang === 'bash')
      .flatMap((b) => {
        const result = spawnSync('bash', ['-n'], { input: b.code, encoding: 'utf8' })
        return result.status === 0 ? [] : [`${where(b)}: ${result.stderr.trim()}`]
      })
    expect(broken).toEqual([])
  })

  it('every JSON block parses', () => {
    const broken = blocks
      .filter((b) => b.lang === 'json')
      .flatMap((b) => {
        try {
          JSON.parse(b.code)
          return []
        } catch (err) {
          return [`${where(b)}: ${(err as Error).message}`]
        }
      })
    expect(broken).toEqual([])
  })

  it('every SQL block parses with PostgreSQL\'s parser', async () => {
    await loadModule()
    const broken = blocks
      .filter((b) => b.lang === 'sql')
      .flatMap((b) => {
        try {
          parseSync(b.code)
          return []
        } catch (err) {
          return [`${where(b)}: ${(err as Error).message}`]
        }
      })
    expect(broken).toEqual([])
  })

  it('every relative link reaches a file, and its anchor a heading there', () => {
    const broken: string[] = []
    for (const file of files) {
      let inFence = false
      readFileSync(file, 'utf8')
        .split('\n')
        .forEach((line, i) => {
          if (/^\s*(`{3,}|~{3,})/.test(line)) inFence = !inFence
          if (inFence) return
          for (const match of line.matchAll(/\]\(([^)\s]+)\)/g)) {
            const target = match[1]!
            if (/^[a-z]+:/i.test(target)) continue
            const [path, anchor] = target.split('#') as [string, string | undefined]
            const linked = path === '' ? file : resolve(dirname(file), path)
            const at = `${relative(root, file)}:${i + 1} -> ${target}`
            if (!existsSync(linked)) broken.push(`${at}: no such file`)
            else if (anchor && linked.endsWith('.md') && !anchorsOf(linked).has(anchor)) broken.push(`${at}: no such heading`)
          }
        })
    }
    expect(broken).toEqual([])
  })
})
