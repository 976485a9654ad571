/**
 * A scratch project that depends on hyp the way a user's project does, and
 * tsc run over it: the package-consumer spec installs the packed tarball into
 * one, the docs spec links the repository into one to type-check every
 * example of README.md and docs/*.md.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { root } from './supervisor.js';

/**
 * A scratch directory none of whose ancestors holds a node_modules: one
 * there (this machine has /tmp/node_modules) would let the consumer resolve
 * what the package fails to ship or declare.
 */
export function scratchDir(prefix = 'hyp-consumer-'): string {
  const clean = (dir: string) => {
    for (let d = dir; ; d = dirname(d)) {
      if (existsSync(join(d, 'node_modules'))) return false;
      if (dirname(d) === d) return true;
    }
  };
  const base = [tmpdir(), '/var/tmp'].find((d) => existsSync(d) && clean(d)) ?? tmpdir();
  return mkdtempSync(join(base, prefix));
}

/** What `npm i <names>` would put in the project: the repository's installed copies, linked. */
export function linkModules(project: string, names: Iterable<string>): void {
  for (const name of names) {
    const link = join(project, 'node_modules', name);
    if (existsSync(link)) continue;
    mkdirSync(dirname(link), { recursive: true });
    symlinkSync(join(root, 'node_modules', name), link, 'dir');
  }
}

/** The package.json of a user's ESM project. */
export function writeConsumerPackage(project: string): void {
  mkdirSync(project, { recursive: true });
  writeFileSync(
    join(project, 'package.json'),
    '{ "name": "my-service", "private": true, "type": "module" }\n',
  );
}

/**
 * Writes tsconfig.<name>.json (strict, Node's types from this repository)
 * with these options over the defaults and runs this repository's tsc on it
 * once; `output` is what tsc printed, empty when the project type-checks.
 */
export function typeCheck(
  project: string,
  name: string,
  compilerOptions: Record<string, unknown>,
  include: string[],
): { status: number | null; output: string } {
  const config = join(project, `tsconfig.${name}.json`);
  writeFileSync(
    config,
    JSON.stringify({
      compilerOptions: {
        target: 'ES2022',
        strict: true,
        types: ['node'],
        typeRoots: [join(root, 'node_modules', '@types')],
        ...compilerOptions,
      },
      include,
    }),
  );
  const tsc = join(root, 'node_modules', 'typescript', 'bin', 'tsc');
  const r = spawnSync(process.execPath, [tsc, '-p', config, '--pretty', 'false'], {
    cwd: project,
    encoding: 'utf8',
    timeout: 180_000,
  });
  return { status: r.status, output: `${r.stdout}${r.stderr}` };
}
