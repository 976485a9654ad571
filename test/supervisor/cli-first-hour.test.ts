/**
 * What a first-time user types at the `hyp` CLI, from the README and the
 * verbs' --help texts (first-hour audit): each mistake answers with one line,
 * a stable code and the way out.
 */
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { cli } from '../helpers/supervisor.js';

function hyp(args: string[], cwd = mkdtempSync(join(tmpdir(), 'hyp-cwd-'))) {
  const r = spawnSync(process.execPath, [cli, ...args], { cwd, encoding: 'utf8', timeout: 30_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

describe('hyp help', () => {
  it.each([[['help', '--help']], [['help', '-h']]])(
    '`hyp %j` prints the command list, as `hyp help` does (README: every verb has --help)',
    (args) => {
      const r = hyp(args);
      expect([r.code, r.stderr, r.stdout]).toEqual([0, '', hyp(['help']).stdout]);
      expect(r.stdout).toMatch(/^hyp — /);
    },
  );
});

describe('an unknown option', () => {
  it.each([
    [['run', 'app.js', '--nope'], '"--nope"', 'run'],
    [['status', '--josn'], '"--josn"', 'status'],
    [['drain', '-x'], '"-x"', 'drain'],
  ])('`hyp %j`: one readable line naming it, exit 64', (args, option, verb) => {
    const r = hyp(args);
    // Not node:util's parseArgs text (an unbalanced quote and advice about positionals after --).
    expect(r.stderr).toBe(
      `hyp: HYP_E_USAGE: unknown option ${option} for hyp ${verb}; see hyp ${verb} --help\n`,
    );
    expect([r.code, r.stdout]).toEqual([64, '']);
  });
});

describe.skipIf(Boolean((process.features as { typescript?: unknown }).typescript))(
  'a .ts app without a compiled copy, on a Node that cannot load TypeScript',
  () => {
    it('says to compile it with tsc (the README project has no `npm run build`)', () => {
      const cwd = mkdtempSync(join(tmpdir(), 'hyp-cwd-'));
      writeFileSync(join(cwd, 'package.json'), '{ "type": "module" }\n');
      writeFileSync(join(cwd, 'app.ts'), 'export default 1;\n');
      const r = hyp(['run', 'app.ts', '--set', 'server.addr=127.0.0.1:0'], cwd);
      expect(r.code).toBe(2);
      expect(r.stderr).toContain('HYP_E_APP_NOT_FOUND');
      expect(r.stderr).toContain('compile it first (npx tsc, or your build script)');
      expect(r.stderr).not.toContain('npm run build');
    });
  },
);
