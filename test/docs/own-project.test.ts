/**
 * README's "In your own project", followed as written in a project that
 * `npm init -y` made (npm 11 writes `"type": "commonjs"` there; older npm
 * writes no type, which is CommonJS too). The shell lines of that section
 * that set the project up are run as they stand; the two the spec does its
 * own way are the installs (`npm i <tarball>`, `npm i -D typescript`: hyp
 * and typescript are linked from this repository, as examples.test.ts
 * links them) and the `npx` lines (tsc and `hyp run` are run by the spec,
 * on loopback ports). The app is README's "Your app" block.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, symlinkSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { linkModules, scratchDir } from '../helpers/consumer.js';
import { type Running, root, startSupervisor } from '../helpers/supervisor.js';

const readme = readFileSync(join(root, 'README.md'), 'utf8');

/** The body of the first fenced block of `lang` after the heading `heading`. */
function blockAfter(heading: string, lang: string): string {
  const start = readme.indexOf(`\n${heading}\n`);
  expect(start, heading).toBeGreaterThan(0);
  const open = readme.indexOf(`\n\`\`\`${lang}\n`, start);
  const body = open + lang.length + 5;
  return readme.slice(body, readme.indexOf('\n```\n', body) + 1);
}

/** A shell line without its trailing `# comment` (none of these lines quotes a #). */
const command = (line: string) => line.replace(/(^|\s)#.*$/, '').trim();

let work: string;
let project: string;
let initialType: unknown;
const ran: string[] = [];

beforeAll(() => {
  work = scratchDir('hyp-own-project-');
  project = join(work, 'my-service');
  mkdirSync(project);
  execFileSync('npm', ['init', '-y'], {
    cwd: project,
    env: { ...process.env, npm_config_loglevel: 'error', npm_config_update_notifier: 'false' },
    timeout: 60_000,
  });
  initialType = (JSON.parse(readFileSync(join(project, 'package.json'), 'utf8')) as { type?: unknown }).type;
  // `npm i /path/to/hyp-0.1.0.tgz` and `npm i -D typescript`, without the registry.
  mkdirSync(join(project, 'node_modules'), { recursive: true });
  symlinkSync(root, join(project, 'node_modules', 'hyp'), 'dir');
  linkModules(project, ['typescript']);
  const section = blockAfter('### In your own project', 'sh');
  for (const line of section.split('\n').map(command)) {
    if (line === '' || line.startsWith('npm ci') || line.startsWith('npm i ') || line.includes('npx '))
      continue;
    execFileSync('sh', ['-c', line], { cwd: project, timeout: 60_000 });
    ran.push(line);
  }
  mkdirSync(join(project, 'src'));
  const app = blockAfter('## Your app', 'ts');
  expect(app).toContain("from './db.js'");
  execFileSync('sh', ['-c', 'cat > src/app.ts'], { cwd: project, input: app });
  copyFileSync(join(import.meta.dirname, 'db.ts'), join(project, 'src', 'db.ts'));
  // `npx tsc`
  const tsc = spawnSync(
    process.execPath,
    [join(root, 'node_modules', 'typescript', 'bin', 'tsc'), '--pretty', 'false'],
    {
      cwd: project,
      encoding: 'utf8',
      timeout: 180_000,
    },
  );
  expect(`${tsc.stdout}${tsc.stderr}`).toBe('');
}, 240_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe("README's own-project steps in a project npm init -y made", () => {
  let sup: Running | undefined;
  afterEach(async () => {
    await sup?.stop();
    sup = undefined;
  });

  it('start from a CommonJS project and set it up with the tsconfig the README writes', () => {
    expect([undefined, 'commonjs']).toContain(initialType);
    expect(ran.some((l) => l.includes('> tsconfig.json'))).toBe(true);
  });

  it('`hyp run dist/app.js` serves the README app: /api/ping answers pong', async () => {
    sup = await startSupervisor({ app: join(project, 'dist', 'app.js'), workers: 1, ready: false });
    const running = sup;
    const fatal = () =>
      running.logs
        .filter((l) => l.level === 60 || l.level === 'fatal')
        .map((l) => String(l.msg))
        .join('\n');
    await Promise.race([
      running.waitLog((l) => l.msg === 'supervisor ready', 'supervisor ready', 60_000),
      running.exited.then(({ code }) => {
        throw new Error(`hyp run exited with ${code}: ${fatal()}${running.stderr.join('')}`);
      }),
    ]);
    const ping = await fetch(`http://127.0.0.1:${running.httpPort}/api/ping`);
    expect([ping.status, await ping.text()]).toEqual([200, 'pong']);
    const user = await fetch(`http://127.0.0.1:${running.httpPort}/api/users/42`);
    expect(await user.json()).toEqual({ id: '42' });
  }, 90_000);
});
