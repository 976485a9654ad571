/**
 * Every TypeScript (or JavaScript) example in README.md and docs/*.md is a
 * program a user can paste: each ```ts block is written to its own file of a
 * scratch project that depends on hyp (linked to this repository, whose
 * dist/ `npm run build` left), with the packages the examples import beside
 * it, and the lot is type-checked in one tsc run, strict, module nodenext.
 * An error is reported at the markdown file and line it comes from. (Linked,
 * not packed: what the tarball holds is package-consumer.test.ts's concern.)
 *
 * A block whose info string says `fragment` (```ts fragment) is left out;
 * each must be listed in `fragments` below with the reason it cannot be
 * whole. There are none today.
 */
import {
  cpSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { linkModules, scratchDir, typeCheck, writeConsumerPackage } from '../helpers/consumer.js';
import { root } from '../helpers/supervisor.js';

/** `file:line` of a deliberate fragment's opening fence → why it is not a whole program. */
const fragments: Record<string, string> = {};

/** Modules an example may import relative to itself ('./db.js'): the user's own, stood in for by test/docs/. */
const userModules = ['db.ts'];

const extensions: Record<string, string> = {
  ts: 'ts',
  typescript: 'ts',
  mts: 'mts',
  js: 'js',
  javascript: 'js',
  mjs: 'mjs',
};

interface Block {
  /** Markdown file, relative to the repository. */
  file: string;
  /** 1-based line of the opening fence. */
  line: number;
  /** Columns of indentation stripped from every line (a block inside a list). */
  indent: number;
  /** The info string's first word, lower-cased ('' for none). */
  lang: string;
  fragment: boolean;
  code: string;
}

function extract(file: string): Block[] {
  const lines = readFileSync(join(root, file), 'utf8').split('\n');
  const blocks: Block[] = [];
  let open: { fence: string; indent: number; line: number; info: string[]; body: string[] } | undefined;
  lines.forEach((text, i) => {
    if (open) {
      const close = /^(\s*)(`{3,}|~{3,})\s*$/.exec(text);
      if (close && close[2]![0] === open.fence[0] && close[2]!.length >= open.fence.length) {
        const [lang = '', ...words] = open.info;
        blocks.push({
          file,
          line: open.line,
          indent: open.indent,
          lang: lang.toLowerCase(),
          fragment: words.includes('fragment'),
          code: `${open.body.join('\n')}\n`,
        });
        open = undefined;
      } else open.body.push(text.slice(Math.min(open.indent, /^\s*/.exec(text)![0].length)));
      return;
    }
    const fence = /^(\s*)(`{3,}|~{3,})(.*)$/.exec(text);
    if (fence)
      open = {
        fence: fence[2]!,
        indent: fence[1]!.length,
        line: i + 1,
        info: fence[3]!.trim().split(/\s+/).filter(Boolean),
        body: [],
      };
  });
  if (open) throw new Error(`${file}:${open.line}: code block never closed`);
  return blocks;
}

const markdown = [
  'README.md',
  ...readdirSync(join(root, 'docs'))
    .filter((f) => f.endsWith('.md'))
    .sort()
    .map((f) => `docs/${f}`),
];
const blocks = markdown.flatMap(extract);
const examples = blocks.filter((b) => b.lang in extensions);
const checked = examples.filter((b) => !b.fragment);

/** The package a bare import specifier names ('@scope/pkg/sub' → '@scope/pkg'), or undefined for relative and node: ones. */
function packageOf(specifier: string): string | undefined {
  if (/^(\.|\/|node:)/.test(specifier)) return undefined;
  const parts = specifier.split('/');
  return specifier.startsWith('@') ? parts.slice(0, 2).join('/') : parts[0];
}

const installed = (name: string) => existsSync(join(root, 'node_modules', name, 'package.json'));

function importsOf(code: string): string[] {
  const found = new Set<string>();
  for (const m of code.matchAll(/(?:\bfrom\s*|\bimport\s*\(?\s*)['"]([^'"]+)['"]/g)) found.add(m[1]!);
  return [...found];
}

let project: string;
/** Generated file name → the block it holds. */
const sources = new Map<string, Block>();

beforeAll(() => {
  if (!existsSync(join(root, 'dist', 'apps', 'server', 'index.d.ts')))
    throw new Error('hyp has no dist/ types to check the examples against: run npm run build first');
  project = scratchDir('hyp-doc-examples-');
  writeConsumerPackage(project);
  const src = join(project, 'src');
  mkdirSync(src);
  // hyp as `npm i hyp` would give it: its exports map, its dist/ types, its dependencies.
  mkdirSync(join(project, 'node_modules'));
  symlinkSync(root, join(project, 'node_modules', 'hyp'), 'dir');
  const packages = new Set<string>();
  for (const b of checked) {
    const name = `${b.file.replaceAll('/', '_').replace(/\.md$/, '')}_${b.line}.${extensions[b.lang]}`;
    sources.set(`src/${name}`, b);
    writeFileSync(join(src, name), b.code);
    for (const s of importsOf(b.code)) {
      const p = packageOf(s);
      if (p && p !== 'hyp' && installed(p)) packages.add(p);
      const types = p && `@types/${p.replace(/^@(.*)\//, '$1__')}`;
      if (types && installed(types)) packages.add(types);
    }
  }
  // The other packages the examples import, as the user would have installed them.
  linkModules(project, packages);
  for (const m of userModules) cpSync(join(import.meta.dirname, m), join(src, m));
}, 60_000);

afterAll(() => {
  if (project) rmSync(project, { recursive: true, force: true });
});

describe('the code examples of README.md and docs/*.md', () => {
  it('are found: README.md has its app, and every ```ts block of docs/ is taken', () => {
    expect(checked.some((b) => b.file === 'README.md')).toBe(true);
    expect(checked.filter((b) => b.file.startsWith('docs/')).length).toBeGreaterThanOrEqual(5);
  });

  it('are all tagged: no block without a language holds code importing or defining an app', () => {
    const untagged = blocks
      .filter((b) => b.lang === '' && /^\s*(import|export)\s|\bdefineApp\(|\bapp\.\w+\(/m.test(b.code))
      .map((b) => `${b.file}:${b.line}`);
    expect(untagged).toEqual([]);
  });

  it('mark a block a fragment only where this spec says why', () => {
    const marked = examples.filter((b) => b.fragment).map((b) => `${b.file}:${b.line}`);
    expect(marked.filter((at) => !(at in fragments))).toEqual([]);
    expect(Object.keys(fragments).filter((at) => !marked.includes(at))).toEqual([]);
  });

  it('import only hyp, hyp/client, node: modules, the user’s own ./ modules and packages this repository installs', () => {
    const missing = checked.flatMap((b) =>
      importsOf(b.code)
        .filter((s) => {
          const p = packageOf(s);
          return p !== undefined && p !== 'hyp' && !installed(p);
        })
        .map((s) => `${b.file}:${b.line}: imports '${s}'`),
    );
    expect(missing).toEqual([]);
  });

  it('each type-check as a whole program: tsc --strict, module nodenext, one run over all of them', () => {
    const { status, output } = typeCheck(
      project,
      'docs',
      {
        module: 'nodenext',
        moduleResolution: 'nodenext',
        lib: ['ES2023'],
        allowJs: true,
        checkJs: true,
        skipLibCheck: true,
        noEmit: true,
      },
      ['src'],
    );
    // src/docs_tcp_147.ts(3,5): error TS2304: … → docs/tcp.md:150:5: error TS2304: …
    // (an error's further lines, indented, stay with it)
    const located = output
      .trimEnd()
      .split(/\n(?!\s)/)
      .filter(Boolean)
      .map((l) => {
        const m = /^(src\/[^(]+)\((\d+),(\d+)\): (.*)$/s.exec(l);
        const b = m && sources.get(m[1]!);
        return b ? `${b.file}:${b.line + Number(m![2])}:${b.indent + Number(m![3])}: ${m![4]}` : l;
      })
      .sort((a, b) => a.localeCompare(b, 'en', { numeric: true }));
    expect(located).toEqual([]);
    expect(status).toBe(0);
  });
});
